/*
 * kiln_sha256: SHA-256 through the system's libcrypto (OpenSSL 3), on libuv threadpool threads, as a small
 * Node-API addon.
 *
 * Why: a step's diffID is the SHA-256 of its whole layer tar, and the next step waits for it. Node's own
 * OpenSSL hashes at ~0.58 GB/s on these machines where the system's, which uses the CPU's SHA extensions,
 * does ~1.6 GB/s (`openssl speed -evp sha256`, 8 KiB blocks): a 170 MB layer's hash goes from ~0.3 s to ~0.1 s,
 * and it runs off the main thread. The addon is optional: without it (no libssl-dev at build time,
 * KILN_NATIVE=0 or KILN_NATIVE_SHA256=0) src/native/sha256.ts hashes with node:crypto; the digests are the same.
 *
 *   create(): External                       a fresh hash state
 *   update(state, data: Uint8Array, done: (err: Error | null) => void): void
 *                                            hashes `data` on a threadpool thread; the caller leaves `data`
 *                                            unchanged and calls nothing else on `state` until `done`
 *   updateSync(state, data: Uint8Array)      the same on the calling thread (small chunks)
 *   digest(state): string                    the lowercase hex digest; the state cannot be used after it
 *
 * Kept out of native/kiln_sys.c so that kiln_sys.node builds without libcrypto's headers (scripts/build-native.mjs).
 */
#include <stdbool.h>
#include <stdlib.h>

#include <node_api.h>
#include <openssl/evp.h>

typedef struct {
  EVP_MD_CTX *ctx;
  bool busy;  /* an update is on a pool thread */
  bool ended; /* digest() was called */
} hash_state;

typedef struct {
  napi_async_work work;
  napi_ref state_ref; /* keeps the state alive while a pool thread uses it */
  napi_ref data_ref;  /* keeps the data alive while a pool thread reads it */
  napi_ref done_ref;
  hash_state *state;
  const void *data;
  size_t size;
  int ok;
} update_job;

static void state_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  hash_state *s = data;
  EVP_MD_CTX_free(s->ctx);
  free(s);
}

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

static hash_state *state_arg(napi_env env, napi_value value) {
  void *data = NULL;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external || napi_get_value_external(env, value, &data) != napi_ok) return NULL;
  return data;
}

static napi_value js_create(napi_env env, napi_callback_info info) {
  (void)info;
  hash_state *s = calloc(1, sizeof *s);
  if (s == NULL) return throw_error(env, "sha256: out of memory");
  s->ctx = EVP_MD_CTX_new();
  if (s->ctx == NULL || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(s->ctx);
    free(s);
    return throw_error(env, "sha256: libcrypto cannot start a SHA-256");
  }
  napi_value external;
  if (napi_create_external(env, s, state_finalize, NULL, &external) != napi_ok) {
    state_finalize(env, s, NULL);
    return throw_error(env, "sha256: cannot wrap the state");
  }
  return external;
}

static void update_execute(napi_env env, void *arg) {
  (void)env;
  update_job *j = arg;
  j->ok = EVP_DigestUpdate(j->state->ctx, j->data, j->size) == 1;
}

/* Releases a job and whatever of it was made (references, async work). */
static void job_free(napi_env env, update_job *j) {
  if (j->state_ref) napi_delete_reference(env, j->state_ref);
  if (j->data_ref) napi_delete_reference(env, j->data_ref);
  if (j->done_ref) napi_delete_reference(env, j->done_ref);
  if (j->work) napi_delete_async_work(env, j->work);
  free(j);
}

static void update_complete(napi_env env, napi_status status, void *arg) {
  update_job *j = arg;
  j->state->busy = false;
  napi_value done, global, error, message, result;
  if (napi_get_reference_value(env, j->done_ref, &done) == napi_ok && napi_get_global(env, &global) == napi_ok) {
    if (status == napi_ok && j->ok) {
      napi_get_null(env, &error);
    } else {
      napi_create_string_utf8(env, "sha256: update failed", NAPI_AUTO_LENGTH, &message);
      napi_create_error(env, NULL, message, &error);
    }
    napi_call_function(env, global, done, 1, &error, &result);
  }
  job_free(env, j);
}

/*
 * The arguments both updates share: argv[0] a usable state, argv[1] a Uint8Array. Throws (and returns NULL) with
 * `usage`, or with why the state cannot take an update.
 */
static hash_state *update_args(napi_env env, napi_value *argv, const char *usage, void **data, size_t *length) {
  hash_state *s = state_arg(env, argv[0]);
  napi_typedarray_type type;
  if (s == NULL || napi_get_typedarray_info(env, argv[1], &type, length, data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    throw_error(env, usage);
    return NULL;
  }
  if (s->busy || s->ended) {
    throw_error(env, s->ended ? "sha256: update after digest" : "sha256: update while another runs");
    return NULL;
  }
  return s;
}

static napi_value undefined_value(napi_env env) {
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static napi_value js_update(napi_env env, napi_callback_info info) {
  static const char usage[] = "update(state, data: Uint8Array, done)";
  size_t argc = 3;
  napi_value argv[3];
  napi_valuetype done_type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || napi_typeof(env, argv[2], &done_type) != napi_ok ||
      done_type != napi_function) {
    return throw_error(env, usage);
  }
  void *data = NULL;
  size_t length = 0;
  hash_state *s = update_args(env, argv, usage, &data, &length);
  if (s == NULL) return NULL;
  update_job *j = calloc(1, sizeof *j);
  if (j == NULL) return throw_error(env, "sha256: out of memory");
  j->state = s;
  j->data = data;
  j->size = length;
  napi_value name;
  if (napi_create_reference(env, argv[0], 1, &j->state_ref) != napi_ok || napi_create_reference(env, argv[1], 1, &j->data_ref) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &j->done_ref) != napi_ok || napi_create_string_utf8(env, "kiln:sha256", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, update_execute, update_complete, j, &j->work) != napi_ok || napi_queue_async_work(env, j->work) != napi_ok) {
    job_free(env, j);
    return throw_error(env, "sha256: cannot queue the update");
  }
  s->busy = true;
  return undefined_value(env);
}

/* The same on the calling thread, for chunks too small to be worth a threadpool round trip. */
static napi_value js_update_sync(napi_env env, napi_callback_info info) {
  static const char usage[] = "updateSync(state, data: Uint8Array)";
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return throw_error(env, usage);
  void *data = NULL;
  size_t length = 0;
  hash_state *s = update_args(env, argv, usage, &data, &length);
  if (s == NULL) return NULL;
  if (EVP_DigestUpdate(s->ctx, data, length) != 1) return throw_error(env, "sha256: update failed");
  return undefined_value(env);
}

static napi_value js_digest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return throw_error(env, "digest(state)");
  hash_state *s = state_arg(env, argv[0]);
  if (s == NULL) return throw_error(env, "digest(state)");
  if (s->busy || s->ended) return throw_error(env, s->ended ? "sha256: digest twice" : "sha256: digest while an update runs");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  s->ended = true;
  if (EVP_DigestFinal_ex(s->ctx, md, &len) != 1 || len != 32) return throw_error(env, "sha256: libcrypto cannot finish the digest");
  static const char hex[] = "0123456789abcdef";
  char out[65];
  for (unsigned int i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[64] = '\0';
  napi_value result;
  if (napi_create_string_latin1(env, out, 64, &result) != napi_ok) return NULL;
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"create", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"update", NULL, js_update, NULL, NULL, NULL, napi_enumerable, NULL},
      {"updateSync", NULL, js_update_sync, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digest", NULL, js_digest, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
