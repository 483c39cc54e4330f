/*
 * kiln-run-guard KILN_PID PROGRAM [ARGS...]: runs PROGRAM (the OCI runtime, or its launcher) so that it and
 * everything it starts die with kiln, even when kiln is killed with SIGKILL:
 *   1. PR_SET_PDEATHSIG(SIGKILL) on itself, then checks that KILN_PID is still its parent (kiln may have
 *      died before the prctl);
 *   2. unshare(CLONE_NEWPID) and fork: the child is pid 1 of a new pid namespace, with PR_SET_PDEATHSIG
 *      (SIGKILL) too; it enters a new mount namespace (private: nothing propagates back) with a /proc of the
 *      new pid namespace (runc looks its children up there by their pids, which are that namespace's), and
 *      execs PROGRAM, so the runtime itself is that namespace's init;
 *   3. waits for the child and exits as it did, forwarding SIGTERM, SIGINT, SIGHUP and SIGQUIT to it.
 * When kiln dies the guard gets SIGKILL, so its child (the namespace's init) does too, and when a pid
 * namespace's init dies the kernel kills every process in it, the container's nested namespace included.
 * Without this a container outlived a killed build, still running and holding its overlay mounts.
 * A failure before PROGRAM runs exits 125 with a message on stderr (137 when kiln is already gone).
 *
 * `kiln-run-guard KILN_PID --crun-launch DEVICES_CGROUP RUNTIME [ARGS...]` does kiln-crun-launch's steps
 * (crun-launch-steps.h) in the child's new mount namespace and execs RUNTIME itself: the same result as
 * PROGRAM = kiln-crun-launch, without its process image and second mount namespace on every RUN step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "crun-launch-steps.h"

static volatile pid_t child = 0;

static int fail(const char *what) {
  fprintf(stderr, "kiln-run-guard: %s: %s\n", what, strerror(errno));
  return 125;
}

static void forward(int sig) {
  if (child > 0) kill(child, sig);
}

int main(int argc, char **argv) {
  if (argc < 3 || (strcmp(argv[2], "--crun-launch") == 0 && argc < 5)) {
    fprintf(stderr, "usage: kiln-run-guard KILN_PID PROGRAM [ARGS...] | KILN_PID --crun-launch DEVICES_CGROUP RUNTIME [ARGS...]\n");
    return 125;
  }
  pid_t kiln = (pid_t)strtol(argv[1], NULL, 10);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return fail("prctl");
  if (getppid() != kiln) return 137;
  if (unshare(CLONE_NEWPID) != 0) return fail("unshare(CLONE_NEWPID)");
  // The child learns that the guard died before its own prctl from the end of this pipe: the guard never
  // writes to it, so the read end only becomes readable (EOF) once the guard is gone.
  int alive[2];
  if (pipe2(alive, O_CLOEXEC) != 0) return fail("pipe");
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  pid_t pid = fork();
  if (pid < 0) return fail("fork");
  if (pid == 0) {
    close(alive[1]);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(fail("prctl"));
    struct pollfd p = {.fd = alive[0], .events = POLLIN};
    if (poll(&p, 1, 0) != 0) _exit(137);
    if (unshare(CLONE_NEWNS) != 0) _exit(fail("unshare(CLONE_NEWNS)"));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) _exit(fail("making / private"));
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) _exit(fail("mounting /proc"));
    char **program = argv + 2;
    if (strcmp(argv[2], "--crun-launch") == 0) {
      int failed = crun_launch_steps("kiln-run-guard", argv[3], argv[4]);
      if (failed != 0) _exit(failed);
      program = argv + 4;
    }
    execv(program[0], program);
    _exit(fail(program[0]));
  }
  child = pid;
  close(alive[0]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaction(forwarded[i], &sa, NULL);
  sigprocmask(SIG_SETMASK, &old, NULL);
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fail("waitpid");
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  // Ended by a signal: end the same way, so kiln sees what it would have seen without the guard.
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  prctl(PR_SET_PDEATHSIG, 0);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  sigprocmask(SIG_UNBLOCK, &one, NULL);
  raise(sig);
  return 128 + sig;
}
