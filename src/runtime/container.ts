/**
 * Runs one build step in an isolated container: an overlayfs rootfs, an OCI bundle, and
 * `crun run` (or runc) through src/runtime/process.ts. Everything it sets up is torn down again on every path:
 * success, nonzero exit, exception and abort.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { RuntimeError, messageOf } from '../errors.js';
import { nativeSys } from '../native/sys.js';
import { detectRuntime, hostCacheDir, privilegedCommand, type RuntimeInfo } from './oci-runtime.js';
import { createHost, type ContainerHostFacts, type Host } from './host.js';
import { isMounted, mountOverlay, type OverlayMount } from './overlay.js';
import { containerResolvConf, DNS_FORWARD_ADDRESS, hostResolvConf, startSandboxNetwork, type NetworkMode, type NetworkPool } from './network.js';
import { startProcess, type ProcessEnd, type StartedProcess } from './process.js';
import { guardedCommand, guardPrefix, outerPid } from './run-guard.js';
import { makePrivateDir } from '../store/owner.js';
import { removeKnown } from '../store/remove-known.js';
import { compiledSeccomp, SECCOMP_BPF_ANNOTATION } from './seccomp-bpf-cache.js';
import { seccompProfile } from './seccomp.js';
import { resolveInRoot, resolveUser } from './user.js';

/** A mount added to the container on top of the rootfs (what `RUN --mount` turns into). */
export type ExtraMount =
  | {
      readonly type: 'bind';
      /** Host file or directory. */
      readonly source: string;
      /** Absolute path in the container; created (and removed again afterwards) if missing. */
      readonly target: string;
      /** @default false */
      readonly readonly?: boolean;
    }
  | {
      readonly type: 'tmpfs';
      readonly target: string;
      /** Size limit in bytes. @default the kernel's (half of RAM) */
      readonly sizeBytes?: number;
    };

/** What to run, and in which root filesystem. */
export interface ContainerSpec {
  /** The overlay parts; the caller owns (and later snapshots) `upperDir`. `lowerDirs` top-most first. */
  readonly rootfs: { readonly lowerDirs: readonly string[]; readonly upperDir: string; readonly workDir: string };
  /** argv; the caller already applied SHELL for the shell form. */
  readonly args: readonly string[];
  /** `KEY=VALUE` entries. `HOME` is added from the user's passwd entry when missing. */
  readonly env: readonly string[];
  /** Absolute working directory; created in the rootfs (root-owned, 0755) if missing, as docker does for WORKDIR. */
  readonly cwd: string;
  /** A `USER` string, resolved against the rootfs. @default root */
  readonly user?: string;
  /** @default the first 12 characters of the container id */
  readonly hostname?: string;
  /**
   * A build step's container, as BuildKit's executor makes it: /etc/hosts and /etc/resolv.conf bound read-only
   * (nosuid, nodev, noexec) and no /etc/hostname. Otherwise (`kiln run`) all three are bound writable, as
   * `docker run` binds them. @default false
   */
  readonly buildStep?: boolean;
  /**
   * `default`: a network namespace of its own with outbound access through pasta (src/runtime/network.ts);
   * `none`: a new network namespace with only loopback; `host`: the host's network.
   */
  readonly network: NetworkMode;
  /** `insecure`: what `RUN --security=insecure` grants (all capabilities, no seccomp filter, no masked paths). @default 'sandbox' */
  readonly security?: 'sandbox' | 'insecure';
  readonly mounts?: readonly ExtraMount[];
  /** @default 'auto' */
  readonly runtime?: 'auto' | 'runc' | 'crun';
}

/** Options of {@link runContainer}. */
export interface RunContainerOptions {
  readonly signal?: AbortSignal;
  /** Called with each chunk of output as it arrives (decoded as UTF-8). */
  readonly onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => void;
  /** Called once the runtime process has been started (the set-up on kiln's side is done). */
  readonly onStarted?: () => void;
  /** The runtime's state directory (`--root`). @default a fresh directory inside the bundle, removed afterwards */
  readonly stateRoot?: string;
  /** A runtime found earlier by {@link detectRuntime}; skips detection. */
  readonly runtimeInfo?: RuntimeInfo;
  /** Where detection may remember the runtime's version across processes (see {@link detectRuntime}). */
  readonly versionCacheDir?: string;
  /**
   * What is known about this host (runtime verdicts, overlay options, cgroup facts); the builder passes its
   * build's. @default a fresh {@link createHost}: nothing is remembered from one call to the next
   */
  readonly host?: Host;
  /** The build's sandbox networks, reused from step to step; without it a `default` network is made for this run alone. */
  readonly networks?: NetworkPool;
}

/** How a container run ended. A nonzero `exitCode` is returned, not thrown. */
export interface ContainerResult {
  /** The process' exit code; 128+n when killed by signal n; the runtime's own code (1) when it could not start it. */
  readonly exitCode: number;
  /** The last ~4 KB of stdout and stderr, interleaved as they arrived. */
  readonly outputTail: string;
  /** Wall time of the whole call: setup, run and teardown. */
  readonly durationMs: number;
  /** The runtime's own error when it failed to start the process (e.g. `exec: "foo": executable file not found in $PATH`). */
  readonly runtimeError?: string;
  /** Runtime-selection warnings for the caller to report. */
  readonly warnings: readonly string[];
}

const OUTPUT_TAIL_BYTES = 4096;

/** Docker's default capability set for containers. */
const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
] as const;

/** Every capability Linux 6.x defines, in bit order. */
const ALL_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW',
  'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD',
  'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG',
  'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
] as const;

/**
 * What a privileged (`--security=insecure`) step gets: every capability kiln itself may hold (its bounding set), as
 * Docker's privileged mode gives every capability the daemon has; asking for more makes the runtime's capset fail.
 */
function ownCapabilities(): string[] {
  let bounding = (1n << BigInt(ALL_CAPABILITIES.length)) - 1n;
  const m = /^CapBnd:\s+([0-9a-f]+)$/m.exec(hostFile('/proc/self/status') ?? '');
  if (m?.[1] !== undefined) bounding = BigInt(`0x${m[1]}`);
  return ALL_CAPABILITIES.filter((_, bit) => (bounding & (1n << BigInt(bit))) !== 0n);
}

/** Docker's masked and read-only paths. */
const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
] as const;
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'] as const;

interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/**
 * Runs `spec.args` in a fresh container over an overlay of `spec.rootfs` and resolves when it has
 * exited and everything is cleaned up: the container (killed and `delete --force`d if needed), the
 * overlay mount, the mount-point stubs the runtime created in the rootfs, the bundle and the state dir.
 *
 * On abort the container is SIGKILLed at once and the promise rejects with `signal.reason`.
 * A `USER` that cannot be resolved rejects with a plain Error (the caller adds the step's location);
 * setup failures reject with {@link RuntimeError}.
 */
export async function runContainer(spec: ContainerSpec, options: RunContainerOptions = {}): Promise<ContainerResult> {
  const startedAt = performance.now();
  const { signal } = options;
  const host = options.host ?? createHost();
  signal?.throwIfAborted();
  const runtime =
    options.runtimeInfo ??
    (await detectRuntime(spec.runtime ?? 'auto', {
      probes: host.runtimeProbes,
      ...(signal === undefined ? {} : { signal }),
      ...(options.versionCacheDir === undefined ? {} : { versionCacheDir: options.versionCacheDir }),
    }));
  const id = `kiln-${randomBytes(8).toString('hex')}`;
  const hostname = spec.hostname ?? id.slice(5, 17);
  // The bundle's small files are made with synchronous calls: each is a few µs, where an awaited call is a
  // threadpool round trip of 0.1–0.3 ms, and a RUN step makes a dozen of them.
  // In memory-backed storage, private (0700) and named after this process: the config may hold secret
  // environment values, and a later kiln recovers the bundle (and unmounts its rootfs) if this one is killed.
  const bundle = makePrivateDir('run');
  const rootfs = path.join(bundle, 'rootfs');
  const stateRoot = options.stateRoot ?? path.join(bundle, 'state');
  let overlay: OverlayMount | undefined;
  let stubs: Stubs = { missing: [], madeParents: [], parents: new Map() };
  let run: RuntimeRun;
  // Docker's resolv.conf: the host's without loopback resolvers; pasta forwards DNS when only those were there.
  const resolv = spec.network === 'host' ? { text: hostResolvConf(), forwarder: false } : containerResolvConf(hostResolvConf(), spec.network === 'default' ? DNS_FORWARD_ADDRESS : undefined);
  // The step's network starts while the rootfs is being mounted; it is released on every path below.
  const netOptions = { ...(signal === undefined ? {} : { signal }), dnsForward: resolv.forwarder };
  const network: Promise<{ nsPath: string; release: () => Promise<void> }> | undefined =
    spec.network !== 'default'
      ? undefined
      : options.networks === undefined
        ? startSandboxNetwork(path.join(bundle, 'netns'), netOptions)
        : // A privileged step could have changed its namespace (CAP_NET_ADMIN): that one is not lent again.
          options.networks.acquire(netOptions).then((n) => ({ nsPath: n.nsPath, release: () => n.release(spec.security !== 'insecure') }));
  network?.catch(() => {});
  try {
    mkdirSync(rootfs);
    overlay = await mountOverlay({ ...spec.rootfs, target: rootfs, capabilities: host.overlay, ...(signal === undefined ? {} : { signal }) });
    const user = await resolveUser(rootfs, spec.user);
    const cwd = path.posix.resolve('/', spec.cwd);
    // In a build step BuildKit's executor first makes the cleaned working directory for the step's user
    // (MkdirAllAndChown of the joined, so cleaned, path); `docker run` makes nothing of its own.
    if (spec.buildStep === true) {
      const clean = cwd.split('/').filter((p) => p !== '');
      for (let i = 1; i <= clean.length; i++) mkdirOwnedSync(rootfs, await resolveInRoot(rootfs, `/${clean.slice(0, i).join('/')}`), user.uid, user.gid);
    }
    // Then runc's prepareRootfs: os.MkdirAll of the working directory as written, as root (0755), so `/w/d1/../d3`
    // makes a missing /w/d1 too, root's even under a USER (fuzz seed 40723).
    const parts = spec.cwd.split('/').filter((p) => p !== '');
    for (let i = 1; i <= parts.length; i++) {
      if (parts[i - 1] === '.' || parts[i - 1] === '..') continue;
      mkdirSync(await resolveInRoot(rootfs, `/${parts.slice(0, i).join('/')}`), { recursive: true, mode: 0o755 });
    }

    const files = path.join(bundle, 'files');
    mkdirSync(files);
    writeFileSync(path.join(files, 'hosts'), hostsFile(spec.network, hostname));
    writeFileSync(path.join(files, 'resolv.conf'), resolv.text);
    if (spec.buildStep !== true) writeFileSync(path.join(files, 'hostname'), `${hostname}\n`);
    const mounts = ociMounts(files, spec.mounts ?? [], runtime.cgroups, spec.security === 'insecure', spec.buildStep === true);
    stubs = await missingMountPoints(rootfs, mounts.map((m) => m.destination));

    // The poststop hook only serves without the native addon, and only for a runtime in our mount namespace.
    const wantsHook = nativeSys() === undefined && runtime.command.length === 1 && guardPrefix() === undefined;
    const nofile = openFilesLimit(host.container);
    const umountBin = wantsHook ? findUmount(host.container) : undefined;
    const env = spec.env.some((e) => e.startsWith('HOME=')) ? [...spec.env] : [...spec.env, `HOME=${user.home}`];
    // `--security=insecure` is Docker's privileged mode: every capability, no seccomp filter, nothing masked.
    const insecure = spec.security === 'insecure';
    const caps: readonly string[] = insecure ? ownCapabilities() : DEFAULT_CAPABILITIES;
    const seccomp = insecure ? undefined : seccompProfile(caps);
    const seccompBpf = seccomp === undefined ? undefined : await compiledSeccomp(runtime, seccomp, caps, hostCacheDir() ?? options.versionCacheDir);
    const config = {
      ociVersion: '1.0.2',
      process: {
        terminal: false,
        user: { uid: user.uid, gid: user.gid, additionalGids: [...user.additionalGids] },
        args: [...spec.args],
        env,
        cwd,
        capabilities: { bounding: [...caps], effective: [...caps], permitted: [...caps] },
        rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }],
        noNewPrivileges: false,
      },
      root: { path: 'rootfs', readonly: false },
      // Without the native addon, the runtime unmounts the overlay itself as soon as the container is
      // gone: a Go fork/exec is much cheaper than one from this (large) Node process, and it happens even
      // if we are killed. runContainer still checks and unmounts whatever is left. (A runtime started in
      // its own mount namespace would only unmount its copy, so it gets no hook.)
      ...(umountBin === undefined
        ? {}
        : { hooks: { poststop: [{ path: umountBin, args: ['umount', rootfs] }] } }),
      hostname,
      mounts,
      linux: {
        namespaces: [
          { type: 'pid' },
          { type: 'ipc' },
          { type: 'uts' },
          { type: 'mount' },
          ...(spec.network === 'none' ? [{ type: 'network' }] : []),
          ...(network === undefined ? [] : [{ type: 'network', path: (await network).nsPath }]),
        ],
        // Deny every device node; the runtime still allows the standard ones it creates (null, zero, …).
        // `--security=insecure` allows every device and adds the ones BuildKit's insecure mode adds.
        resources: {
          devices: insecure
            ? [
                { allow: true, type: 'c', access: 'rwm' },
                { allow: true, type: 'b', access: 'rwm' },
              ]
            : [{ allow: false, access: 'rwm' }],
        },
        ...(insecure ? { devices: insecureDevices() } : {}),
        ...(runtime.cgroups ? cgroupsPath(host.container, id) : {}),
        ...(seccomp === undefined ? {} : { maskedPaths: [...MASKED_PATHS], readonlyPaths: [...READONLY_PATHS], seccomp }),
      },
      ...(seccompBpf === undefined ? {} : { annotations: { [SECCOMP_BPF_ANNOTATION]: seccompBpf } }),
    };
    writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(config));
    signal?.throwIfAborted();

    run = await runRuntime(insecure ? { ...runtime, command: await privilegedCommand(runtime) } : runtime, bundle, stateRoot, id, options);
    signal?.throwIfAborted();
  } finally {
    if (network !== undefined) await network.then((n) => n.release(), () => {});
    if (overlay !== undefined) {
      // Usually a no-op: the runtime's poststop hook has unmounted it already.
      await overlay.unmount();
      await removeStubs(spec.rootfs.upperDir, stubs);
    }
    // Never remove the bundle while anything is still mounted in it: rm would reach through the overlay.
    if (!(await isMounted(rootfs))) removeKnown(bundle, BUNDLE_FILES, BUNDLE_DIRS);
  }
  return {
    exitCode: run.exitCode,
    outputTail: run.outputTail,
    durationMs: performance.now() - startedAt,
    ...(run.runtimeError === undefined ? {} : { runtimeError: run.runtimeError }),
    warnings: runtime.warnings,
  };
}

/**
 * The device nodes BuildKit's insecure mode adds (entitlements' WithInsecureSpec): kmsg, cuse, fuse, kvm, net/tun,
 * loop-control and loop devices, each only where the host has the node (its mode and owner are kept). BuildKit
 * asks loop-control for the first free loop device and adds up to eight past it; kiln adds the host's loop
 * devices and eight numbers past the highest (the kernel makes them on demand through loop-control).
 */
function insecureDevices(): Array<{ path: string; type: 'c' | 'b'; major: number; minor: number; fileMode?: number; uid?: number; gid?: number }> {
  const fixed: Array<[string, 'c' | 'b', number, number]> = [
    ['/dev/kmsg', 'c', 1, 11],
    ['/dev/cuse', 'c', 10, 203],
    ['/dev/fuse', 'c', 10, 229],
    ['/dev/kvm', 'c', 10, 232],
    ['/dev/net/tun', 'c', 10, 200],
    ['/dev/loop-control', 'c', 10, 237],
  ];
  let highest = -1;
  try {
    for (const n of readdirSync('/dev')) {
      const m = /^loop(\d+)$/.exec(n);
      if (m) highest = Math.max(highest, Number(m[1]));
    }
  } catch {
    // no /dev listing: no loop devices
  }
  const loops: Array<[string, 'c' | 'b', number, number]> = [];
  if (existsSync('/dev/loop-control')) for (let i = 0; i <= highest + 8; i++) loops.push([`/dev/loop${i}`, 'b', 7, i]);
  const out: ReturnType<typeof insecureDevices> = [];
  for (const [p, type, major, minor] of [...fixed, ...loops]) {
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (st !== undefined && !(type === 'c' ? st.isCharacterDevice() : st.isBlockDevice())) continue;
    if (st === undefined && !p.startsWith('/dev/loop')) continue;
    out.push({ path: p, type, major, minor, ...(st === undefined ? { fileMode: 0o660, uid: 0, gid: 0 } : { fileMode: st.mode & 0o7777, uid: st.uid, gid: st.gid }) });
  }
  return out;
}

/** What a bundle holds after a run (see runContainer); `netns` only with the sandbox network, `state` once crun ran. */
const BUNDLE_FILES = ['config.json', 'init.pid', 'runtime.log', 'files/hosts', 'files/resolv.conf', 'files/hostname', 'netns'] as const;
const BUNDLE_DIRS = ['files', 'rootfs', 'state'] as const;

/** The relative cgroup path keeps the container under our own cgroup (and its limits) on cgroup v1. */
function cgroupsPath(facts: ContainerHostFacts, id: string): { cgroupsPath?: string } {
  // On a pure cgroup v2 host a relative path would put the container below our own (non-leaf)
  // cgroup, where enabling controllers fails; there we let the runtime choose its default.
  facts.pureCgroupV2 ??= existsSync('/sys/fs/cgroup/cgroup.controllers');
  return facts.pureCgroupV2 ? {} : { cgroupsPath: id };
}

/** A small host file's text (/etc/hosts, /etc/resolv.conf), read at each step as Docker does; undefined when unreadable. */
function hostFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** The absolute path of umount(8), for the poststop hook (hooks are not looked up in PATH). */
function findUmount(facts: ContainerHostFacts): string | undefined {
  facts.umountPath ??= ['/usr/bin/umount', '/bin/umount', '/usr/sbin/umount', '/sbin/umount'].find((c) => existsSync(c)) ?? null;
  return facts.umountPath ?? undefined;
}

/**
 * Docker passes dockerd's own open-files limit on (usually 1048576). We use that figure, capped at our
 * own hard limit, because raising a hard limit needs CAP_SYS_RESOURCE, which we may not have.
 */
function openFilesLimit(facts: ContainerHostFacts): number {
  if (facts.nofileLimit !== undefined) return facts.nofileLimit;
  const wanted = 1048576;
  let limits = '';
  try {
    limits = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    // no /proc: Docker's figure
  }
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(limits);
  const hard = m?.[1] === undefined || m[1] === 'unlimited' ? wanted : Number(m[1]);
  facts.nofileLimit = Number.isFinite(hard) ? Math.min(wanted, hard) : wanted;
  return facts.nofileLimit;
}

/** Makes `host` (a path below `rootfs`, symlinks resolved) and its missing parents, 0755, owned by uid:gid. */
function mkdirOwnedSync(rootfs: string, host: string, uid: number, gid: number): void {
  let dir = rootfs;
  for (const part of path.relative(rootfs, host).split(path.sep).filter(Boolean)) {
    dir = path.join(dir, part);
    if (existsSync(dir)) continue;
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    chownSync(dir, uid, gid);
  }
}

/** BuildKit's /etc/hosts for a step in a namespace of its own (`none`, `default`); with the host's network, the host's file. */
function hostsFile(network: NetworkMode, hostname: string): string {
  const loopback = `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
  if (network !== 'host') return loopback;
  const host = hostFile('/etc/hosts') ?? loopback;
  return `${host.replace(/\n?$/, '\n')}127.0.0.1\t${hostname}\n`;
}

/**
 * The container's mounts. `cgroups` false (the runtime makes no cgroup for the step, see
 * {@link RuntimeInfo.cgroups}): there is no cgroup of its own to show at /sys/fs/cgroup, so none is mounted.
 */
function ociMounts(files: string, extra: readonly ExtraMount[], cgroups: boolean, insecure: boolean, buildStep: boolean): OciMount[] {
  // BuildKit's withROBind (executor/oci/spec.go): read-only, so `RUN echo … >> /etc/hosts` fails there too.
  const etcOptions = buildStep ? ['rbind', 'rprivate', 'ro', 'nosuid', 'nodev', 'noexec'] : ['rbind', 'rprivate'];
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', insecure ? 'rw' : 'ro'] },
    ...(cgroups ? [{ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] }] : []),
    // Bound from throwaway copies, so a container that edits them changes neither the host nor the layer.
    { destination: '/etc/hosts', type: 'bind', source: path.join(files, 'hosts'), options: etcOptions },
    { destination: '/etc/resolv.conf', type: 'bind', source: path.join(files, 'resolv.conf'), options: etcOptions },
    // BuildKit binds no /etc/hostname into a build step: the image's own file (if any) shows.
    ...(buildStep ? [] : [{ destination: '/etc/hostname', type: 'bind', source: path.join(files, 'hostname'), options: ['rbind', 'rprivate'] }]),
  ];
  for (const m of extra) {
    const destination = path.posix.resolve('/', m.target);
    if (m.type === 'bind') {
      mounts.push({
        destination,
        type: 'bind',
        source: path.resolve(m.source),
        options: ['rbind', 'rprivate', ...(m.readonly === true ? ['ro'] : [])],
      });
    } else {
      mounts.push({
        destination,
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'mode=1777', ...(m.sizeBytes === undefined ? [] : [`size=${m.sizeBytes}`])],
      });
    }
  }
  return mounts;
}

/** Directories whose content is a mount the runtime sets up; nothing below them reaches the rootfs. */
const VIRTUAL_ROOTS = ['/proc', '/dev', '/sys'];

/** Mount-point stubs to remove after a run, as paths relative to the rootfs with symlinks resolved. */
interface Stubs {
  /** Mount points that did not exist before the run. */
  readonly missing: readonly string[];
  /** Directories the runtime had to make above those mount points: they stay, with runc's mode. */
  readonly madeParents: readonly string[];
  /** Existing parent directories of missing paths, with their times before the run. */
  readonly parents: ReadonlyMap<string, { readonly atimeNs: bigint; readonly mtimeNs: bigint }>;
}

/**
 * The mount points that do not exist in the rootfs yet. The runtime creates them as empty files or
 * directories in the upperdir; like BuildKit we remove such stubs after the run. Only the mount point
 * itself is a stub: parent directories the runtime had to create for it stay in the layer (0755), as
 * BuildKit leaves them (`RUN --mount=type=secret,id=x` leaves an empty `/run/secrets`).
 */
async function missingMountPoints(rootfs: string, destinations: readonly string[]): Promise<Stubs> {
  const targets = new Set<string>();
  const kept = new Set<string>();
  for (const dest of destinations) {
    if (VIRTUAL_ROOTS.some((v) => dest.startsWith(`${v}/`))) continue;
    const normal = path.posix.resolve('/', dest);
    // /proc, /dev and /sys themselves are not stubs: BuildKit leaves them in the layer when the rootfs lacks
    // them (FROM scratch), so they are treated like the directories made above a mount point.
    if (normal !== '/') (VIRTUAL_ROOTS.includes(normal) ? kept : targets).add(normal);
  }
  const candidates = new Set<string>();
  for (const t of [...targets, ...kept]) {
    for (let p = t; p !== '/'; p = path.posix.dirname(p)) candidates.add(p);
  }
  const resolved = new Map<string, { rel: string; exists: boolean; atimeNs: bigint; mtimeNs: bigint }>();
  await Promise.all(
    [...candidates].map(async (p) => {
      const hostPath = await resolveInRoot(rootfs, p);
      const st = lstatSync(hostPath, { bigint: true, throwIfNoEntry: false });
      resolved.set(p, { rel: path.relative(rootfs, hostPath), exists: st !== undefined, atimeNs: st?.atimeNs ?? 0n, mtimeNs: st?.mtimeNs ?? 0n });
    }),
  );
  const missing: string[] = [];
  const madeParents: string[] = [];
  const parents = new Map<string, { atimeNs: bigint; mtimeNs: bigint }>();
  for (const [p, r] of resolved) {
    if (r.exists || r.rel === '' || r.rel.startsWith('..')) continue;
    if (!targets.has(p)) {
      madeParents.push(r.rel);
      continue;
    }
    missing.push(r.rel);
    const parent = resolved.get(path.posix.dirname(p));
    if (parent?.exists === true && parent.rel !== '') parents.set(parent.rel, { atimeNs: parent.atimeNs, mtimeNs: parent.mtimeNs });
  }
  return { missing, madeParents, parents };
}

/**
 * Removes the stubs left by the runtime from the upperdir (after unmounting: a path missing from every
 * lower layer lives in the upperdir only), deepest first; anything the step put there itself stays.
 * Then puts the times of existing parent directories back where their upperdir copy is empty again
 * (creating and removing the stub changed their mtime), so a directory that was only copied up for a
 * stub carries the lower layer's metadata and a snapshot can recognise it as unchanged.
 * Shortcut: utimes takes seconds as a double, which keeps about a quarter of a microsecond; a
 * futimens binding would restore the exact nanoseconds.
 */
async function removeStubs(upperDir: string, stubs: Stubs): Promise<void> {
  // Synchronous calls: a handful of tiny metadata operations per step.
  const deepestFirst = [...stubs.missing].sort((a, b) => b.split('/').length - a.split('/').length || b.localeCompare(a));
  for (const rel of deepestFirst) {
    const hostPath = path.join(upperDir, rel);
    try {
      const st = lstatSync(hostPath, { throwIfNoEntry: false });
      if (st?.isDirectory()) {
        if (readdirSync(hostPath).length === 0) rmdirSync(hostPath);
      } else if (st?.isFile() && st.size === 0) {
        unlinkSync(hostPath);
      }
    } catch {
      // Not a stub any more: leave it.
    }
  }
  // crun makes missing mount-point parents 01755; runc, and so BuildKit, make them 0755.
  for (const rel of stubs.madeParents) {
    const hostPath = path.join(upperDir, rel);
    const st = lstatSync(hostPath, { throwIfNoEntry: false });
    if (st?.isDirectory() && (st.mode & 0o7777) === 0o1755) chmodSync(hostPath, 0o755);
  }
  for (const [rel, times] of stubs.parents) {
    const hostPath = path.join(upperDir, rel);
    try {
      const st = lstatSync(hostPath, { throwIfNoEntry: false });
      // Only where the upperdir copy is empty again: if the step wrote there, its mtime is real.
      if (st?.isDirectory() && readdirSync(hostPath).length === 0) {
        utimesSync(hostPath, nsToSeconds(times.atimeNs), nsToSeconds(times.mtimeNs));
      }
    } catch {
      // not copied up: nothing to restore
    }
  }
}

function nsToSeconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;
}

interface RuntimeRun {
  exitCode: number;
  outputTail: string;
  runtimeError?: string;
}

/** `runc run` in the foreground, streaming output; kills the container at once on abort. */
async function runRuntime(runtime: RuntimeInfo, bundle: string, stateRoot: string, id: string, options: RunContainerOptions): Promise<RuntimeRun> {
  const { signal, onOutput } = options;
  const logFile = path.join(bundle, 'runtime.log');
  const pidFile = path.join(bundle, 'init.pid');
  const global = ['--root', stateRoot, '--log', logFile, '--log-format', 'json'];
  let tail = '';
  let exited = false;
  const [bin, ...wrapper] = runtime.command as [string, ...string[]];
  // The runtime and its container die with this process (see run-guard.ts); the guard's pid namespace
  // means the pid file holds the container's pid as seen in there.
  const guard = guardPrefix();
  const [spawnBin, ...spawnArgs] = guardedCommand(runtime.command) as [string, ...string[]];
  // A SIGTERM to the runtime is forwarded to the container's pid 1, which ignores it unless it installed a
  // handler; the SIGKILL below is what actually stops it. The runtime itself is force-killed as a last resort.
  let subprocess: StartedProcess;
  try {
    subprocess = await startProcess(spawnBin, [...spawnArgs, ...global, 'run', '--pid-file', pidFile, '--bundle', bundle, id], {
      ...(signal === undefined ? {} : { signal }),
      forceKillAfterMs: 5000,
    });
  } catch (cause) {
    throw new RuntimeError(`cannot start ${runtime.name}: ${messageOf(cause)}`, { cause });
  }
  options.onStarted?.();
  const collect = (stream: 'stdout' | 'stderr') => (chunk: string) => {
    tail += chunk;
    if (tail.length > 4 * OUTPUT_TAIL_BYTES) tail = tail.slice(-OUTPUT_TAIL_BYTES);
    onOutput?.(chunk, stream);
  };
  subprocess.stdout.setEncoding('utf8');
  subprocess.stderr.setEncoding('utf8');
  subprocess.stdout.on('data', collect('stdout'));
  subprocess.stderr.on('data', collect('stderr'));

  let killing: Promise<void> | undefined;
  const onAbort = (): void => {
    killing = (async () => {
      // The runtime writes the container's init pid once it exists; until then (`run` may still be
      // creating it) we poll the file. A direct kill(2) costs no process spawn. The pid cannot be
      // reused while `run` is alive: the runtime is the init's parent and reaps it only at the end.
      // SIGKILL also empties the pid namespace, so nothing the step started survives.
      while (!exited) {
        const inner = Number(await readFile(pidFile, 'utf8').catch(() => ''));
        if (Number.isInteger(inner) && inner > 0) {
          // Not found (already gone, or no /proc children file): killing the guard kills the whole namespace.
          const pid = guard === undefined ? inner : subprocess.pid === undefined ? undefined : (outerPid(subprocess.pid, inner) ?? subprocess.pid);
          try {
            if (pid !== undefined) process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let result: ProcessEnd;
  try {
    result = await subprocess.ended;
  } finally {
    exited = true;
    signal?.removeEventListener('abort', onAbort);
    await killing;
    // `run` deletes the container when it ends normally; if runc itself died or was killed, the
    // state (and possibly processes) remain: `delete --force` kills and removes them.
    if (await exists(path.join(stateRoot, id))) {
      const { execa } = await import('execa');
      // Guarded, the runtime's pid namespace is gone with it, so nothing of the container runs any more, and
      // the pids in its state are of that namespace: a plain delete, which never signals anything.
      await execa(bin, [...wrapper, ...global, 'delete', ...(guard === undefined ? ['--force'] : []), id], { stdin: 'ignore', reject: false });
      if (await exists(path.join(stateRoot, id))) throw new RuntimeError(`could not delete container ${id} (state in ${stateRoot})`);
    }
  }
  const runtimeError = await runtimeErrorFrom(logFile);
  if (result.exitCode === undefined && !result.canceled) {
    throw new RuntimeError(`${runtime.name} ended without an exit code: ${result.error ?? `killed by ${result.signal ?? 'a signal'}`}`);
  }
  return {
    exitCode: result.exitCode ?? 128 + 9,
    outputTail: tail.slice(-OUTPUT_TAIL_BYTES),
    ...(runtimeError === undefined ? {} : { runtimeError }),
  };
}

async function runtimeErrorFrom(logFile: string): Promise<string | undefined> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
      if ((entry.level === 'error' || entry.level === 'fatal') && typeof entry.msg === 'string') last = entry.msg;
    } catch {
      // crun writes plain text lines
      last = line;
    }
  }
  return last;
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}
