/*
 * kiln_sys: the few Linux system calls kiln needs and Node does not offer (mount, umount2, mknod and
 * the xattr family), as a Node-API addon.
 *
 * Why: without it every RUN step spawned `mount`, `getfattr` and a `setfattr` batch, and a spawn from
 * a large Node process costs 5-20 ms here, which was most of a step's overhead. The addon is optional:
 * src/native/sys.ts falls back to those commands when it is not built (no C compiler, no Node
 * headers), so behaviour is the same either way, only slower.
 *
 * Every function is synchronous and throws an Error whose `code` is the errno name (like node:fs).
 * They are all single syscalls except xattrTree, a recursive walk that the snapshotter calls once per
 * layer; it runs on the calling thread (a walk of 5,000 files takes a few milliseconds).
 *
 * Built by scripts/build-native.mjs with plain `cc` against the headers shipped with Node; no
 * node-gyp, so nothing is downloaded.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <node_api.h>

#define CHECK(call)                                                                                \
  do {                                                                                             \
    if ((call) != napi_ok) return NULL;                                                            \
  } while (0)

static const char *errno_name(int err) {
  switch (err) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case EACCES: return "EACCES";
  case EBUSY: return "EBUSY";
  case EEXIST: return "EEXIST";
  case EINVAL: return "EINVAL";
  case ENOTDIR: return "ENOTDIR";
  case ENOSPC: return "ENOSPC";
  case ENOTSUP: return "ENOTSUP";
  case ENODATA: return "ENODATA";
  case ERANGE: return "ERANGE";
  case E2BIG: return "E2BIG";
  case ENAMETOOLONG: return "ENAMETOOLONG";
  case ELOOP: return "ELOOP";
  case ENODEV: return "ENODEV";
  case ENOMEM: return "ENOMEM";
  case EROFS: return "EROFS";
  default: return "EIO";
  }
}

/* Throws an Error like node:fs does: message "CODE: strerror, syscall 'path'", .code, .errno, .syscall. */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  char message[PATH_MAX + 256];
  snprintf(message, sizeof message, "%s: %s, %s '%s'", errno_name(err), strerror(err), syscall, path ? path : "");
  napi_value msg, code, error, num, sys;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_error(env, code, msg, &error) != napi_ok) return NULL;
  if (napi_create_int32(env, -err, &num) == napi_ok) napi_set_named_property(env, error, "errno", num);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys) == napi_ok) napi_set_named_property(env, error, "syscall", sys);
  napi_throw(env, error);
  return NULL;
}

/* Copies a string argument into a malloc'd buffer (caller frees); NULL when it is not a string. */
static char *string_arg(napi_env env, napi_value value) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string) return NULL;
  size_t len;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &len) != napi_ok) return NULL;
  char *buf = malloc(len + 1);
  if (buf == NULL) return NULL;
  if (napi_get_value_string_utf8(env, value, buf, len + 1, &len) != napi_ok) {
    free(buf);
    return NULL;
  }
  return buf;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

/* mount(source, target, fstype, flags, data) */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, flags, data)");
    return NULL;
  }
  char *source = string_arg(env, argv[0]), *target = string_arg(env, argv[1]), *fstype = string_arg(env, argv[2]);
  char *data = string_arg(env, argv[4]);
  uint32_t flags = 0;
  napi_get_value_uint32(env, argv[3], &flags);
  napi_value result = NULL;
  if (target == NULL) {
    napi_throw_type_error(env, NULL, "mount: target must be a string");
  } else if (mount(source, target, fstype, flags, data) != 0) {
    throw_errno(env, errno, "mount", target);
  } else {
    result = undefined(env);
  }
  free(source);
  free(target);
  free(fstype);
  free(data);
  return result;
}

/* umount2(target, flags) */
static napi_value js_umount2(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *target = argc > 0 ? string_arg(env, argv[0]) : NULL;
  int32_t flags = 0;
  if (argc > 1) napi_get_value_int32(env, argv[1], &flags);
  napi_value result = NULL;
  if (target == NULL) napi_throw_type_error(env, NULL, "umount2: target must be a string");
  else if (umount2(target, flags) != 0) throw_errno(env, errno, "umount2", target);
  else result = undefined(env);
  free(target);
  return result;
}

/* mknod(path, mode, major, minor) */
static napi_value js_mknod(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path = argc > 0 ? string_arg(env, argv[0]) : NULL;
  uint32_t mode = 0, major_ = 0, minor_ = 0;
  if (argc > 1) napi_get_value_uint32(env, argv[1], &mode);
  if (argc > 2) napi_get_value_uint32(env, argv[2], &major_);
  if (argc > 3) napi_get_value_uint32(env, argv[3], &minor_);
  napi_value result = NULL;
  if (path == NULL) napi_throw_type_error(env, NULL, "mknod: path must be a string");
  else if (mknod(path, (mode_t)mode, makedev(major_, minor_)) != 0) throw_errno(env, errno, "mknod", path);
  else result = undefined(env);
  free(path);
  return result;
}

/* The xattr names of `path` (not following a final symlink), NUL-separated; *len bytes. */
static char *list_names(const char *path, ssize_t *len) {
  for (;;) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size <= 0) {
      *len = size;
      return NULL;
    }
    char *names = malloc((size_t)size);
    if (names == NULL) {
      errno = ENOMEM;
      *len = -1;
      return NULL;
    }
    ssize_t got = llistxattr(path, names, (size_t)size);
    if (got >= 0) {
      *len = got;
      return names;
    }
    free(names);
    if (errno != ERANGE) { /* ERANGE: the list grew between the two calls; ask again */
      *len = -1;
      return NULL;
    }
  }
}

/* The value of one xattr as a new Buffer, or NULL with errno set (exception not thrown). */
static napi_value get_value(napi_env env, const char *path, const char *name) {
  for (;;) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) return NULL;
    void *data;
    napi_value buffer;
    if (napi_create_buffer(env, (size_t)size, &data, &buffer) != napi_ok) {
      errno = ENOMEM;
      return NULL;
    }
    if (size == 0) return buffer;
    ssize_t got = lgetxattr(path, name, data, (size_t)size);
    if (got == size) return buffer;
    if (got >= 0) { /* shrank meanwhile: a copy of the right length */
      napi_value exact;
      if (napi_create_buffer_copy(env, (size_t)got, data, NULL, &exact) != napi_ok) return NULL;
      return exact;
    }
    if (errno != ERANGE) return NULL;
  }
}

/* llistxattr(path) -> string[] */
static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path = argc > 0 ? string_arg(env, argv[0]) : NULL;
  if (path == NULL) {
    napi_throw_type_error(env, NULL, "llistxattr: path must be a string");
    return NULL;
  }
  ssize_t len;
  char *names = list_names(path, &len);
  napi_value array = NULL;
  if (len < 0) {
    throw_errno(env, errno, "llistxattr", path);
  } else if (napi_create_array(env, &array) == napi_ok) {
    uint32_t i = 0;
    for (ssize_t off = 0; off < len;) {
      size_t n = strlen(names + off);
      napi_value s;
      if (napi_create_string_utf8(env, names + off, n, &s) == napi_ok) napi_set_element(env, array, i++, s);
      off += (ssize_t)n + 1;
    }
  }
  free(names);
  free(path);
  return array;
}

/* lgetxattr(path, name) -> Buffer */
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path = argc > 0 ? string_arg(env, argv[0]) : NULL, *name = argc > 1 ? string_arg(env, argv[1]) : NULL;
  napi_value result = NULL;
  if (path == NULL || name == NULL) napi_throw_type_error(env, NULL, "lgetxattr(path, name)");
  else if ((result = get_value(env, path, name)) == NULL) throw_errno(env, errno, "lgetxattr", path);
  free(path);
  free(name);
  return result;
}

/* lsetxattr(path, name, value: Buffer) */
static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path = argc > 0 ? string_arg(env, argv[0]) : NULL, *name = argc > 1 ? string_arg(env, argv[1]) : NULL;
  void *data = NULL;
  size_t size = 0;
  bool is_buffer = false;
  if (argc > 2) napi_is_buffer(env, argv[2], &is_buffer);
  napi_value result = NULL;
  if (path == NULL || name == NULL || !is_buffer || napi_get_buffer_info(env, argv[2], &data, &size) != napi_ok) {
    napi_throw_type_error(env, NULL, "lsetxattr(path, name, value: Buffer)");
  } else if (lsetxattr(path, name, data, size, 0) != 0) {
    throw_errno(env, errno, "lsetxattr", path);
  } else {
    result = undefined(env);
  }
  free(path);
  free(name);
  return result;
}

/* lremovexattr(path, name) */
static napi_value js_lremovexattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path = argc > 0 ? string_arg(env, argv[0]) : NULL, *name = argc > 1 ? string_arg(env, argv[1]) : NULL;
  napi_value result = NULL;
  if (path == NULL || name == NULL) napi_throw_type_error(env, NULL, "lremovexattr(path, name)");
  else if (lremovexattr(path, name) != 0) throw_errno(env, errno, "lremovexattr", path);
  else result = undefined(env);
  free(path);
  free(name);
  return result;
}

/* Recursion state of xattrTree: the flat result array [path, name, value, path, name, value, ...]. */
struct walk {
  napi_env env;
  napi_value out;
  uint32_t n;
  int err;
  char failed_path[PATH_MAX];
  const char *failed_call;
};

static int push(struct walk *w, napi_value v) {
  return napi_set_element(w->env, w->out, w->n++, v) == napi_ok ? 0 : -1;
}

static void fail(struct walk *w, const char *call, const char *path) {
  w->err = errno;
  w->failed_call = call;
  snprintf(w->failed_path, sizeof w->failed_path, "%s", path);
}

/* Adds the xattrs of `path` to the result; recurses into it when it is a directory (not a symlink). */
static int walk_path(struct walk *w, char *path, size_t len, unsigned char d_type) {
  ssize_t names_len;
  char *names = list_names(path, &names_len);
  if (names_len < 0) {
    if (errno == ENOTSUP) names_len = 0; /* a filesystem without xattrs: nothing to report */
    else {
      fail(w, "llistxattr", path);
      return -1;
    }
  }
  napi_value js_path = NULL;
  for (ssize_t off = 0; off < names_len;) {
    const char *name = names + off;
    off += (ssize_t)strlen(name) + 1;
    napi_value value = get_value(w->env, path, name);
    if (value == NULL) {
      if (errno == ENODATA) continue; /* removed meanwhile */
      free(names);
      fail(w, "lgetxattr", path);
      return -1;
    }
    napi_value js_name;
    if (js_path == NULL && napi_create_string_utf8(w->env, path, len, &js_path) != napi_ok) break;
    if (napi_create_string_utf8(w->env, name, NAPI_AUTO_LENGTH, &js_name) != napi_ok) break;
    if (push(w, js_path) || push(w, js_name) || push(w, value)) break;
  }
  free(names);

  if (d_type == DT_UNKNOWN) {
    struct stat st;
    if (lstat(path, &st) != 0) {
      fail(w, "lstat", path);
      return -1;
    }
    d_type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
  }
  if (d_type != DT_DIR) return 0;

  DIR *dir = opendir(path);
  if (dir == NULL) {
    fail(w, "opendir", path);
    return -1;
  }
  int rc = 0;
  struct dirent *entry;
  errno = 0;
  while ((entry = readdir(dir)) != NULL) {
    const char *name = entry->d_name;
    if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
    size_t name_len = strlen(name);
    if (len + 1 + name_len >= PATH_MAX) {
      errno = ENAMETOOLONG;
      fail(w, "opendir", path);
      rc = -1;
      break;
    }
    path[len] = '/';
    memcpy(path + len + 1, name, name_len + 1);
    rc = walk_path(w, path, len + 1 + name_len, entry->d_type);
    path[len] = 0;
    if (rc != 0) break;
    errno = 0;
  }
  if (rc == 0 && errno != 0) {
    fail(w, "readdir", path);
    rc = -1;
  }
  closedir(dir);
  return rc;
}

/*
 * xattrTree(root) -> [path, name, value, ...] for every file, directory, symlink or device under
 * `root` (root included) that has xattrs; values are Buffers. Symlinks are not followed.
 */
static napi_value js_xattr_tree(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *root = argc > 0 ? string_arg(env, argv[0]) : NULL;
  if (root == NULL) {
    napi_throw_type_error(env, NULL, "xattrTree(root)");
    return NULL;
  }
  char *path = malloc(PATH_MAX);
  struct walk w = {.env = env, .n = 0, .err = 0, .failed_call = NULL};
  napi_value result = NULL;
  size_t len = strlen(root);
  while (len > 1 && root[len - 1] == '/') root[--len] = 0;
  if (path == NULL || len >= PATH_MAX) {
    throw_errno(env, path == NULL ? ENOMEM : ENAMETOOLONG, "xattrTree", root);
  } else if (napi_create_array(env, &w.out) == napi_ok) {
    memcpy(path, root, len + 1);
    if (walk_path(&w, path, len, DT_UNKNOWN) != 0 && w.failed_call != NULL) throw_errno(env, w.err, w.failed_call, w.failed_path);
    else result = w.out;
  }
  free(path);
  free(root);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount2", NULL, js_umount2, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mknod", NULL, js_mknod, NULL, NULL, NULL, napi_enumerable, NULL},
      {"llistxattr", NULL, js_llistxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgetxattr", NULL, js_lgetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lsetxattr", NULL, js_lsetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lremovexattr", NULL, js_lremovexattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"xattrTree", NULL, js_xattr_tree, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
