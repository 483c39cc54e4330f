/**
 * Docker's default seccomp profile, as data: the system calls a container may make, with the same allow-list and
 * conditions as the profile moby applies to every container (its documented behaviour: an allow-list with EPERM for
 * everything else; namespace-creating `clone` flags, `unshare`, `setns`, `mount`, `umount2`, `pivot_root`, keyrings,
 * kernel modules, `bpf`, `perf_event_open`, clock and time setting, `swapon`/`swapoff`, `reboot`, `acct`, `kexec_*`,
 * `open_by_handle_at`, `userfaultfd`, `io_uring_*` and the obsolete calls refused unless the capability that makes
 * them safe is granted). Written for kiln from that behaviour; {@link ./seccomp.ts} turns it into an OCI
 * `linux.seccomp` object for a container's capability set.
 *
 * A rule applies when the container has every capability of `includesCaps` and none of `excludesCaps`, and the
 * host's architecture is in `arches` (when given). Names the kernel or libseccomp does not know are skipped by the
 * runtimes.
 */

/** One rule of the profile; `action` defaults to allow. */
export interface SeccompRule {
  readonly names: readonly string[];
  readonly action?: 'SCMP_ACT_ALLOW' | 'SCMP_ACT_ERRNO';
  /** errno for `SCMP_ACT_ERRNO`. */
  readonly errnoRet?: number;
  readonly args?: ReadonlyArray<{ readonly index: number; readonly value: number; readonly valueTwo?: number; readonly op: string }>;
  readonly includesCaps?: readonly string[];
  readonly excludesCaps?: readonly string[];
  /** Node's `process.arch` names. */
  readonly arches?: readonly string[];
}

const EPERM = 1;
const ENOSYS = 38;
/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET. */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;
/** AF_VSOCK: host-guest sockets, refused as Docker does. */
const AF_VSOCK = 40;

/** The action for calls no rule allows: EPERM, as Docker's profile. */
export const DEFAULT_ACTION = { action: 'SCMP_ACT_ERRNO', errnoRet: EPERM } as const;

/** libseccomp architectures a filter covers, per Node `process.arch` (the native one and its compat ABIs). */
export const SECCOMP_ARCHES: Readonly<Record<string, readonly string[]>> = {
  x64: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  arm64: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
  ppc64: ['SCMP_ARCH_PPC64LE'],
  s390x: ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'],
  riscv64: ['SCMP_ARCH_RISCV64'],
};

/** Calls every container may make. */
const ALLOWED: readonly string[] = [
  'accept', 'accept4', 'access', 'adjtimex', 'alarm', 'bind', 'brk', 'cachestat', 'capget', 'capset', 'chdir', 'chmod',
  'chown', 'chown32', 'clock_getres', 'clock_getres_time64', 'clock_gettime', 'clock_gettime64', 'clock_nanosleep',
  'clock_nanosleep_time64', 'close', 'close_range', 'connect', 'copy_file_range', 'creat', 'dup', 'dup2', 'dup3',
  'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_pwait', 'epoll_pwait2', 'epoll_wait',
  'epoll_wait_old', 'eventfd', 'eventfd2', 'execve', 'execveat', 'exit', 'exit_group', 'faccessat', 'faccessat2',
  'fadvise64', 'fadvise64_64', 'fallocate', 'fanotify_mark', 'fchdir', 'fchmod', 'fchmodat', 'fchmodat2', 'fchown',
  'fchown32', 'fchownat', 'fcntl', 'fcntl64', 'fdatasync', 'fgetxattr', 'flistxattr', 'flock', 'fork', 'fremovexattr',
  'fsetxattr', 'fstat', 'fstat64', 'fstatat64', 'fstatfs', 'fstatfs64', 'fsync', 'ftruncate', 'ftruncate64', 'futex',
  'futex_requeue', 'futex_time64', 'futex_wait', 'futex_waitv', 'futex_wake', 'futimesat', 'getcpu', 'getcwd',
  'getdents', 'getdents64', 'getegid', 'getegid32', 'geteuid', 'geteuid32', 'getgid', 'getgid32', 'getgroups',
  'getgroups32', 'getitimer', 'getpeername', 'getpgid', 'getpgrp', 'getpid', 'getppid', 'getpriority', 'getrandom',
  'getresgid', 'getresgid32', 'getresuid', 'getresuid32', 'getrlimit', 'get_robust_list', 'getrusage', 'getsid',
  'getsockname', 'getsockopt', 'get_thread_area', 'gettid', 'gettimeofday', 'getuid', 'getuid32', 'getxattr',
  'inotify_add_watch', 'inotify_init', 'inotify_init1', 'inotify_rm_watch', 'io_cancel', 'ioctl', 'io_destroy',
  'io_getevents', 'io_pgetevents', 'io_pgetevents_time64', 'ioprio_get', 'ioprio_set', 'io_setup', 'io_submit', 'ipc',
  'kill', 'landlock_add_rule', 'landlock_create_ruleset', 'landlock_restrict_self', 'lchown', 'lchown32', 'lgetxattr',
  'link', 'linkat', 'listen', 'listxattr', 'llistxattr', '_llseek', 'lremovexattr', 'lseek', 'lsetxattr', 'lstat',
  'lstat64', 'madvise', 'map_shadow_stack', 'membarrier', 'memfd_create', 'memfd_secret', 'mincore', 'mkdir', 'mkdirat',
  'mknod', 'mknodat', 'mlock', 'mlock2', 'mlockall', 'mmap', 'mmap2', 'mprotect', 'mq_getsetattr', 'mq_notify',
  'mq_open', 'mq_timedreceive', 'mq_timedreceive_time64', 'mq_timedsend', 'mq_timedsend_time64', 'mq_unlink', 'mremap',
  'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'msync', 'munlock', 'munlockall', 'munmap', 'nanosleep', 'newfstatat',
  '_newselect', 'open', 'openat', 'openat2', 'pause', 'pidfd_open', 'pidfd_send_signal', 'pipe', 'pipe2', 'pkey_alloc',
  'pkey_free', 'pkey_mprotect', 'poll', 'ppoll', 'ppoll_time64', 'prctl', 'pread64', 'preadv', 'preadv2', 'prlimit64',
  'process_mrelease', 'pselect6', 'pselect6_time64', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead',
  'readlink', 'readlinkat', 'readv', 'recv', 'recvfrom', 'recvmmsg', 'recvmmsg_time64', 'recvmsg', 'remap_file_pages',
  'removexattr', 'rename', 'renameat', 'renameat2', 'restart_syscall', 'rmdir', 'rseq', 'rt_sigaction',
  'rt_sigpending', 'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigtimedwait',
  'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo', 'sched_getaffinity', 'sched_getattr', 'sched_getparam',
  'sched_get_priority_max', 'sched_get_priority_min', 'sched_getscheduler', 'sched_rr_get_interval',
  'sched_rr_get_interval_time64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler',
  'sched_yield', 'seccomp', 'select', 'semctl', 'semget', 'semop', 'semtimedop', 'semtimedop_time64', 'send',
  'sendfile', 'sendfile64', 'sendmmsg', 'sendmsg', 'sendto', 'setfsgid', 'setfsgid32', 'setfsuid', 'setfsuid32',
  'setgid', 'setgid32', 'setgroups', 'setgroups32', 'setitimer', 'setpgid', 'setpriority', 'setregid', 'setregid32',
  'setresgid', 'setresgid32', 'setresuid', 'setresuid32', 'setreuid', 'setreuid32', 'setrlimit', 'set_robust_list',
  'setsid', 'setsockopt', 'set_thread_area', 'set_tid_address', 'setuid', 'setuid32', 'setxattr', 'shmat', 'shmctl',
  'shmdt', 'shmget', 'shutdown', 'sigaltstack', 'signalfd', 'signalfd4', 'sigprocmask', 'sigreturn', 'socketcall',
  'socketpair', 'splice', 'stat', 'stat64', 'statfs', 'statfs64', 'statx', 'symlink', 'symlinkat', 'sync',
  'sync_file_range', 'syncfs', 'sysinfo', 'tee', 'tgkill', 'time', 'timer_create', 'timer_delete', 'timer_getoverrun',
  'timer_gettime', 'timer_gettime64', 'timer_settime', 'timer_settime64', 'timerfd_create', 'timerfd_gettime',
  'timerfd_gettime64', 'timerfd_settime', 'timerfd_settime64', 'times', 'tkill', 'truncate', 'truncate64',
  'ugetrlimit', 'umask', 'uname', 'unlink', 'unlinkat', 'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vfork',
  'vmsplice', 'wait4', 'waitid', 'waitpid', 'write', 'writev',
];

/** The whole profile, in the order the rules are checked. */
export const DEFAULT_SECCOMP_RULES: readonly SeccompRule[] = [
  { names: ALLOWED },
  // Tracing and cross-process memory access: safe since Linux 4.8 (ptrace can no longer bypass seccomp), which kiln needs anyway.
  { names: ['process_vm_readv', 'process_vm_writev', 'ptrace', 'kcmp'] },
  // personality(2) only for the execution domains programs actually ask for (Linux, Linux32, UNAME26, and querying).
  ...[0x0, 0x8, 0x20000, 0x20008, 0xffffffff].map((value) => ({ names: ['personality'], args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] })),
  // Sockets of every family but AF_VSOCK.
  { names: ['socket'], args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_NE' }] },
  // Architecture-specific calls.
  { names: ['arch_prctl', 'modify_ldt'], arches: ['x64', 'ia32'] },
  { names: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'], arches: ['arm64', 'arm'] },
  { names: ['riscv_flush_icache'], arches: ['riscv64'] },
  { names: ['s390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr'], arches: ['s390x'] },
  // Calls a granted capability makes safe.
  {
    names: [
      'bpf', 'clone', 'clone3', 'fanotify_init', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'lookup_dcookie',
      'mount', 'mount_setattr', 'move_mount', 'open_tree', 'perf_event_open', 'quotactl', 'quotactl_fd',
      'setdomainname', 'sethostname', 'setns', 'syslog', 'umount', 'umount2', 'unshare',
    ],
    includesCaps: ['CAP_SYS_ADMIN'],
  },
  // Without CAP_SYS_ADMIN: clone(2) without any namespace flag; clone3(2) says ENOSYS, so libcs fall back to clone(2),
  // whose flags a filter can see (clone3 passes them in memory).
  { names: ['clone'], args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }], excludesCaps: ['CAP_SYS_ADMIN'], arches: ['x64', 'ia32', 'arm64', 'arm', 'ppc64', 'riscv64'] },
  { names: ['clone'], args: [{ index: 1, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }], excludesCaps: ['CAP_SYS_ADMIN'], arches: ['s390x'] },
  { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, excludesCaps: ['CAP_SYS_ADMIN'] },
  { names: ['reboot'], includesCaps: ['CAP_SYS_BOOT'] },
  { names: ['chroot'], includesCaps: ['CAP_SYS_CHROOT'] },
  { names: ['delete_module', 'init_module', 'finit_module'], includesCaps: ['CAP_SYS_MODULE'] },
  { names: ['acct'], includesCaps: ['CAP_SYS_PACCT'] },
  { names: ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace'], includesCaps: ['CAP_SYS_PTRACE'] },
  { names: ['iopl', 'ioperm'], includesCaps: ['CAP_SYS_RAWIO'] },
  { names: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64'], includesCaps: ['CAP_SYS_TIME'] },
  { names: ['vhangup'], includesCaps: ['CAP_SYS_TTY_CONFIG'] },
  { names: ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node'], includesCaps: ['CAP_SYS_NICE'] },
  { names: ['syslog'], includesCaps: ['CAP_SYSLOG'] },
  { names: ['bpf'], includesCaps: ['CAP_BPF'] },
  { names: ['perf_event_open'], includesCaps: ['CAP_PERFMON'] },
  { names: ['open_by_handle_at'], includesCaps: ['CAP_DAC_READ_SEARCH'] },
];
