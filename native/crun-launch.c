/*
 * kiln-crun-launch DEVICES_CGROUP RUNTIME [ARGS...]: starts crun on a hybrid-cgroup host the way
 * CRUN_WITHOUT_CGROUP2 in src/runtime/oci-runtime.ts does with unshare(1), sh and mount(8), as one small
 * program (three fewer process images to load on every RUN step):
 *   1. join the devices cgroup DEVICES_CGROUP (kiln's, with Docker's device rules);
 *   2. enter a new mount namespace whose mounts do not propagate back to the host;
 *   3. cover the cgroup2 mount at /sys/fs/cgroup/unified with an empty read-only tmpfs, so crun sees a
 *      cgroup v1 host;
 *   4. bind RUNTIME read-only onto itself. crun guards against a container overwriting its binary
 *      through /proc/self/exe (CVE-2019-5736) by copying itself and re-executing the copy, which loads
 *      the binary and its libraries twice (about 8 ms of every RUN step here); a binary on a read-only
 *      mount needs no copy, and crun checks for exactly that. The mount exists only in this namespace;
 *   5. exec RUNTIME with ARGS.
 * Any failure exits 125 with a message on stderr, before the runtime runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static int fail(const char *what, const char *arg) {
  fprintf(stderr, "kiln-crun-launch: %s %s: %s\n", what, arg, strerror(errno));
  return 125;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: kiln-crun-launch DEVICES_CGROUP RUNTIME [ARGS...]\n");
    return 125;
  }
  char procs[PATH_MAX];
  if (snprintf(procs, sizeof procs, "%s/cgroup.procs", argv[1]) >= (int)sizeof procs) {
    errno = ENAMETOOLONG;
    return fail("joining", argv[1]);
  }
  int fd = open(procs, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail("joining", procs);
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (write(fd, pid, (size_t)n) != n) return fail("joining", procs);
  close(fd);
  if (unshare(CLONE_NEWNS) != 0) return fail("unshare", "CLONE_NEWNS");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return fail("making private", "/");
  if (mount("kiln-no-cgroup2", "/sys/fs/cgroup/unified", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k") != 0) {
    return fail("covering", "/sys/fs/cgroup/unified");
  }
  if (mount(argv[2], argv[2], NULL, MS_BIND, NULL) != 0) return fail("binding", argv[2]);
  if (mount(NULL, argv[2], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) {
    return fail("making read-only", argv[2]);
  }
  execv(argv[2], argv + 2);
  return fail("exec", argv[2]);
}
