/*
 * The steps that start crun on a hybrid-cgroup host (see crun-launch.c for why each is needed), shared by
 * kiln-crun-launch and by kiln-run-guard's `--crun-launch` mode, which does them in the mount namespace it
 * has just made instead of exec'ing the launcher to make another one (one process image and one mount
 * namespace fewer per RUN step). The caller is already in a new, private mount namespace.
 * Returns 0, or 125 after printing what failed (prefixed with `who`).
 */
#ifndef KILN_CRUN_LAUNCH_STEPS_H
#define KILN_CRUN_LAUNCH_STEPS_H
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static int crun_launch_fail(const char *who, const char *what, const char *arg) {
  fprintf(stderr, "%s: %s %s: %s\n", who, what, arg, strerror(errno));
  return 125;
}

static int crun_launch_steps(const char *who, const char *devices_cgroup, const char *runtime) {
  char procs[PATH_MAX];
  if (snprintf(procs, sizeof procs, "%s/cgroup.procs", devices_cgroup) >= (int)sizeof procs) {
    errno = ENAMETOOLONG;
    return crun_launch_fail(who, "joining", devices_cgroup);
  }
  int fd = open(procs, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return crun_launch_fail(who, "joining", procs);
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (write(fd, pid, (size_t)n) != n) {
    close(fd);
    return crun_launch_fail(who, "joining", procs);
  }
  close(fd);
  if (mount("kiln-no-cgroup2", "/sys/fs/cgroup/unified", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k") != 0) {
    return crun_launch_fail(who, "covering", "/sys/fs/cgroup/unified");
  }
  if (mount(runtime, runtime, NULL, MS_BIND, NULL) != 0) return crun_launch_fail(who, "binding", runtime);
  if (mount(NULL, runtime, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0) {
    return crun_launch_fail(who, "making read-only", runtime);
  }
  return 0;
}
#endif
