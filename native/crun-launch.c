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
#include <sched.h>
#include "crun-launch-steps.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: kiln-crun-launch DEVICES_CGROUP RUNTIME [ARGS...]\n");
    return 125;
  }
  if (unshare(CLONE_NEWNS) != 0) return crun_launch_fail("kiln-crun-launch", "unshare", "CLONE_NEWNS");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return crun_launch_fail("kiln-crun-launch", "making private", "/");
  int failed = crun_launch_steps("kiln-crun-launch", argv[1], argv[2]);
  if (failed != 0) return failed;
  execv(argv[2], argv + 2);
  return crun_launch_fail("kiln-crun-launch", "exec", argv[2]);
}
