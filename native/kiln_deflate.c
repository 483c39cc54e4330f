/*
 * kiln_deflate: gzip compression with libdeflate, as a small Node-API addon.
 *
 * Why: kiln compresses layers as concatenated gzip members of a fixed chunk size (src/store/layer-store.ts,
 * parallelGzip). libdeflate compresses a whole buffer at once, about twice as fast as zlib at the same level
 * and slightly smaller, which is what a push or an export waits for. The addon is optional: without it
 * (no libdeflate headers at build time, or KILN_NATIVE=0) src/native/deflate.ts reports it absent and
 * kiln uses node:zlib.
 *
 * One function, asynchronous on the libuv threadpool:
 *   gzip(input: Buffer, level: number, done: (err: Error | null, output?: Buffer) => void): void
 * compresses `input` into ONE complete gzip member. libdeflate's gzip header is fixed (no mtime, no name,
 * OS byte 255 "unknown", XFL from the level), so the output depends only on the input, the level and the
 * libdeflate version. The caller must leave `input` unchanged until `done` is called.
 *
 * Kept out of native/kiln_sys.c so that kiln_sys.node builds without libdeflate (scripts/build-native.mjs).
 */
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>
#include <node_api.h>

/*
 * One compressor per threadpool thread, for the last level used there: allocating one for each call costs
 * a few hundred KiB of zeroed tables. libuv's pool threads live as long as the process, so these are never
 * freed.
 */
static __thread struct libdeflate_compressor *thread_compressor;
static __thread int thread_level = -1;

typedef struct {
  napi_async_work work;
  napi_ref input_ref; /* keeps the input Buffer alive while a pool thread reads it */
  napi_ref done_ref;
  const void *input;
  size_t input_size;
  int level;
  void *output;
  size_t output_size;
  const char *error; /* static message, or NULL */
} gzip_job;

static void gzip_execute(napi_env env, void *data) {
  (void)env;
  gzip_job *job = data;
  if (thread_compressor == NULL || thread_level != job->level) {
    if (thread_compressor != NULL) libdeflate_free_compressor(thread_compressor);
    thread_compressor = libdeflate_alloc_compressor(job->level);
    thread_level = thread_compressor == NULL ? -1 : job->level;
    if (thread_compressor == NULL) {
      job->error = "libdeflate_alloc_compressor failed";
      return;
    }
  }
  size_t bound = libdeflate_gzip_compress_bound(thread_compressor, job->input_size);
  job->output = malloc(bound);
  if (job->output == NULL) {
    job->error = "out of memory";
    return;
  }
  job->output_size = libdeflate_gzip_compress(thread_compressor, job->input, job->input_size, job->output, bound);
  if (job->output_size == 0) {
    job->error = "libdeflate_gzip_compress failed";
    return;
  }
  /* The bound is larger than the output (about twice here, for text): give the rest back. */
  void *shrunk = realloc(job->output, job->output_size);
  if (shrunk != NULL) job->output = shrunk;
}

static void free_output(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void gzip_complete(napi_env env, napi_status status, void *data) {
  gzip_job *job = data;
  napi_value argv[2];
  napi_value done, global;
  napi_get_undefined(env, &argv[1]);
  const char *message = job->error;
  if (message == NULL && status != napi_ok) message = status == napi_cancelled ? "gzip cancelled" : "gzip failed";
  if (message == NULL) {
    if (napi_create_external_buffer(env, job->output_size, job->output, free_output, NULL, &argv[1]) == napi_ok) {
      job->output = NULL; /* owned by the Buffer now */
      napi_get_null(env, &argv[0]);
    } else {
      /* External buffers may be disallowed (V8 sandbox): copy instead. */
      void *copy;
      if (napi_create_buffer_copy(env, job->output_size, job->output, &copy, &argv[1]) == napi_ok) napi_get_null(env, &argv[0]);
      else message = "cannot create the output Buffer";
    }
  }
  if (message != NULL) {
    napi_value text;
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
    napi_create_error(env, NULL, text, &argv[0]);
    napi_get_undefined(env, &argv[1]);
  }
  free(job->output);
  napi_get_reference_value(env, job->done_ref, &done);
  napi_get_global(env, &global);
  napi_delete_reference(env, job->input_ref);
  napi_delete_reference(env, job->done_ref);
  napi_delete_async_work(env, job->work);
  free(job);
  napi_call_function(env, global, done, 2, argv, NULL);
}

static napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

static napi_value gzip_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 3) return throw_type_error(env, "gzip(input, level, done) takes 3 arguments");
  bool is_buffer;
  if (napi_is_buffer(env, argv[0], &is_buffer) != napi_ok || !is_buffer) return throw_type_error(env, "input must be a Buffer");
  int32_t level;
  if (napi_get_value_int32(env, argv[1], &level) != napi_ok || level < 0 || level > 12)
    return throw_type_error(env, "level must be an integer from 0 to 12");
  napi_valuetype type;
  if (napi_typeof(env, argv[2], &type) != napi_ok || type != napi_function) return throw_type_error(env, "done must be a function");

  gzip_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  void *input;
  napi_value name;
  job->level = level;
  if (napi_get_buffer_info(env, argv[0], &input, &job->input_size) != napi_ok ||
      napi_create_reference(env, argv[0], 1, &job->input_ref) != napi_ok) {
    free(job);
    return NULL;
  }
  job->input = input;
  if (napi_create_reference(env, argv[2], 1, &job->done_ref) != napi_ok) {
    napi_delete_reference(env, job->input_ref);
    free(job);
    return NULL;
  }
  if (napi_create_string_utf8(env, "kiln_deflate.gzip", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, gzip_execute, gzip_complete, job, &job->work) != napi_ok) {
    napi_delete_reference(env, job->input_ref);
    napi_delete_reference(env, job->done_ref);
    free(job);
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    napi_delete_reference(env, job->input_ref);
    napi_delete_reference(env, job->done_ref);
    free(job);
    return NULL;
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "gzip", NAPI_AUTO_LENGTH, gzip_start, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "gzip", fn) != napi_ok) return NULL;
  return exports;
}
