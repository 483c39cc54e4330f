/**
 * Finding an OCI runtime (crun or runc) that actually works on this host.
 */
import { access, constants, mkdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { RuntimeError, messageOf } from '../errors.js';
import { crunLauncher } from '../native/sys.js';
import { startProcess } from './process.js';

/** The OCI runtimes kiln can drive. */
export const RUNTIME_NAMES = ['crun', 'runc'] as const;
/** One of {@link RUNTIME_NAMES}. */
export type RuntimeName = (typeof RUNTIME_NAMES)[number];

/** A runtime that was found and judged usable. */
export interface RuntimeInfo {
  readonly name: RuntimeName;
  /** Absolute path of the binary. */
  readonly path: string;
  /** The version it reports, e.g. `1.1.5+ds1`. */
  readonly version: string;
  /**
   * The argv that starts it, before its global options: `[path]`, or a wrapper around it (see
   * {@link CRUN_WITHOUT_CGROUP2}).
   */
  readonly command: readonly string[];
  /**
   * Whether the runtime makes a cgroup per step (given by `linux.cgroupsPath`). When false it makes
   * none: the step runs in kiln's shared devices cgroup, which {@link command} joins before starting the
   * runtime, with the device rules a per-step cgroup would have.
   */
  readonly cgroups: boolean;
  /** Why a preferred runtime was passed over; the caller reports these (the library never prints). */
  readonly warnings: readonly string[];
}

/** Options of {@link detectRuntime}. */
export interface DetectRuntimeOptions {
  readonly signal?: AbortSignal;
  /** Extra directories searched after PATH. @default ['/usr/local/sbin', '/usr/sbin', '/sbin'] */
  readonly extraPath?: readonly string[];
  /**
   * A directory where each runtime binary's `--version` is remembered across processes (the builder passes
   * its store's cache dir). Without it the binary is asked once per process.
   */
  readonly versionCacheDir?: string;
  /**
   * Where verdicts are remembered (a {@link Host}'s `runtimeProbes`): which runtime works is a fact about the host
   * that does not change during a build, and probing costs process spawns. @default none: probe at each call
   */
  readonly probes?: RuntimeProbes;
}

/** Probe verdicts by preference and search path. Only successful probes stay: the user may install a runtime and retry. */
export type RuntimeProbes = Map<string, Promise<RuntimeInfo>>;

const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'] as const;

/**
 * How crun runs on a hybrid cgroup host. crun (as of 1.8) aborts there with `cgroups in hybrid mode not
 * supported` whenever the cgroup2 mount at /sys/fs/cgroup/unified holds a controller, even with
 * `--cgroup-manager=disabled`, while its start-up is a fraction of runc's (~10 ms against ~65 ms here,
 * most of a RUN step's cost). So kiln starts it through this `sh -c` script:
 * - `unshare --mount --propagation private` (before it) gives it a private mount namespace, in which an
 *   empty read-only tmpfs covers that cgroup2 mount; nothing propagates back to the host, and the overlay
 *   rootfs, mounted in the host namespace before, is already there;
 * - the script first moves itself into kiln's devices cgroup ($1, see {@link devicesCgroup}), so crun
 *   and the step inherit Docker's device rules (mknod allowed, only the standard nodes openable), the one
 *   thing a per-step cgroup enforced that matters for isolation; kiln sets no resource limits on steps;
 * - crun then runs with its cgroup manager disabled and sees a cgroup v1 host: it creates no cgroup.
 * native/crun-launch.c does the same three steps as one small program, when it is built (three fewer
 * process images per RUN step); this script is the fallback.
 */
export const CRUN_WITHOUT_CGROUP2 =
  'echo $$ > "$1/cgroup.procs" && mount -t tmpfs -o ro,nosuid,nodev,noexec,size=4k kiln-no-cgroup2 /sys/fs/cgroup/unified && shift && mount --bind "$1" "$1" && mount -o remount,bind,ro,nosuid,nodev "$1" && exec "$@"';

/** Docker's default device rules (moby's defaults; runc's allowed devices): mknod of any node, and use of the standard ones. */
const DEVICE_RULES = [
  'c *:* m',
  'b *:* m',
  'c 1:3 rwm', // null
  'c 1:5 rwm', // zero
  'c 1:7 rwm', // full
  'c 1:8 rwm', // random
  'c 1:9 rwm', // urandom
  'c 5:0 rwm', // tty
  'c 5:1 rwm', // console
  'c 5:2 rwm', // ptmx
  'c 136:* rwm', // pts
  'c 10:200 rwm', // net/tun
] as const;

/** What `RUN --security=insecure` may use: every device, as BuildKit's insecure mode allows (`c *:* rwm`, `b *:* rwm`). */
const PRIVILEGED_DEVICE_RULES = ['a *:* rwm'] as const;

/**
 * The cgroup v1 devices cgroup that steps without a cgroup of their own run in: `kiln` below our own
 * devices cgroup, made once per host and shared by every step (the rules are the same for all), or, for
 * `--security=insecure` steps, `kiln-privileged` beside it, which allows every device. It is configured
 * under a temporary name and renamed into place, so no step ever joins a half-configured one.
 * Undefined when the devices controller is not mounted where we can write.
 */
async function devicesCgroup(name: 'kiln' | 'kiln-privileged' = 'kiln'): Promise<string | undefined> {
  const rules: readonly string[] = name === 'kiln' ? DEVICE_RULES : PRIVILEGED_DEVICE_RULES;
  const own = (await readFile('/proc/self/cgroup', 'utf8').catch(() => ''))
    .split('\n')
    .map((line) => line.split(':'))
    .find((f) => f[1]?.split(',').includes('devices'))?.[2];
  if (own === undefined) return undefined;
  const parent = path.join('/sys/fs/cgroup/devices', own);
  const dir = path.join(parent, name);
  if (await usable(dir, rules)) return dir;
  const tmp = path.join(parent, `${name}.${process.pid}.${Date.now()}`);
  try {
    await mkdir(tmp);
    await writeFile(path.join(tmp, 'devices.deny'), 'a');
    for (const rule of rules) await writeFile(path.join(tmp, 'devices.allow'), rule);
    await rename(tmp, dir).catch(async (cause: unknown) => {
      await rmdir(tmp);
      // Another kiln made it meanwhile.
      if (!(await usable(dir, rules))) throw cause;
    });
    return dir;
  } catch {
    await rmdir(tmp).catch(() => undefined);
    return undefined;
  }
}

/** Whether `dir` is a devices cgroup with exactly `rules`. */
async function usable(dir: string, rules: readonly string[]): Promise<boolean> {
  const list = await readFile(path.join(dir, 'devices.list'), 'utf8').catch(() => undefined);
  if (list === undefined) return false;
  const have = new Set(list.split('\n').filter((l) => l !== ''));
  return have.size === rules.length && rules.every((r) => have.has(r));
}

/**
 * The runtime's command for a `--security=insecure` step: the same, joining the devices cgroup that allows every
 * device instead of kiln's (made on first use). Runtimes that make a cgroup per step get the rules in the config.
 */
export async function privilegedCommand(runtime: RuntimeInfo): Promise<readonly string[]> {
  if (runtime.cgroups) return runtime.command;
  const restricted = await devicesCgroup('kiln');
  const privileged = await devicesCgroup('kiln-privileged');
  if (restricted === undefined || privileged === undefined) throw new RuntimeError('RUN --security=insecure: cannot make a devices cgroup that allows every device');
  return runtime.command.map((a) => (a === restricted ? privileged : a));
}

/**
 * Finds a working OCI runtime. `'auto'` (unless the environment variable `KILN_RUNTIME` names one) tries
 * crun (faster start-up) and then runc; naming one tries
 * it first and falls back to the other with a warning. On a hybrid cgroup host crun runs without
 * cgroups, as {@link CRUN_WITHOUT_CGROUP2} explains, when we are root and `unshare` exists.
 *
 * @throws RuntimeError when no runtime works, saying how to install one.
 */
export async function detectRuntime(preferred: RuntimeName | 'auto' = 'auto', options: DetectRuntimeOptions = {}): Promise<RuntimeInfo> {
  options.signal?.throwIfAborted();
  // KILN_RUNTIME picks the runtime that 'auto' means, for a whole process tree (CI, a test run).
  const fromEnv = process.env['KILN_RUNTIME'];
  if (preferred === 'auto' && (fromEnv === 'runc' || fromEnv === 'crun')) preferred = fromEnv;
  const key = `${preferred}\0${(options.extraPath ?? SBIN_DIRS).join(':')}\0${process.env['PATH'] ?? ''}`;
  const memo = options.probes;
  let found = memo?.get(key);
  if (found === undefined) {
    found = probe(preferred, options.extraPath ?? SBIN_DIRS, options.versionCacheDir);
    if (memo !== undefined) {
      memo.set(key, found);
      // A failed probe (or one cut short) is not remembered: the user may install a runtime and retry.
      found.catch(() => memo.delete(key));
    }
  }
  return found;
}

async function probe(preferred: RuntimeName | 'auto', extraPath: readonly string[], versionCacheDir: string | undefined): Promise<RuntimeInfo> {
  const order: RuntimeName[] = preferred === 'runc' ? ['runc', 'crun'] : ['crun', 'runc'];
  const problems: string[] = [];
  for (const name of order) {
    const problem = await check(name, extraPath, versionCacheDir);
    if (typeof problem !== 'string') {
      const warnings = preferred !== 'auto' && name !== preferred ? [`${preferred} cannot be used (${problems.join('; ')}); using ${name} instead`] : [];
      return { ...problem, warnings };
    }
    problems.push(`${name}: ${problem}`);
  }
  throw new RuntimeError(
    `no working OCI runtime found (${problems.join('; ')}); install one with \`apt-get install runc\` (or crun), or run \`npm run bootstrap\``,
  );
}

/** Returns the runtime's info, or a string saying why it cannot be used. */
async function check(name: RuntimeName, extraPath: readonly string[], versionCacheDir: string | undefined): Promise<Omit<RuntimeInfo, 'warnings'> | string> {
  const bin = await which(name, extraPath);
  if (bin === undefined) return 'not installed';
  let command: readonly string[] = [bin];
  let cgroups = true;
  // Checked before running the binary: a spawn costs tens of ms per build.
  if (name === 'crun' && (await hybridCgroupWithControllers())) {
    const [unshare, sh, devices] = await Promise.all([which('unshare', extraPath), which('sh', extraPath), devicesCgroup()]);
    if (unshare === undefined || sh === undefined || devices === undefined || process.getuid?.() !== 0) {
      return 'refuses hybrid cgroup hosts (cgroups in hybrid mode not supported: /sys/fs/cgroup/unified holds controllers), and running it without cgroups needs root, unshare(1) and a writable cgroup v1 devices controller';
    }
    const launcher = crunLauncher();
    command =
      launcher === undefined
        ? [unshare, '--mount', '--propagation', 'private', sh, '-c', CRUN_WITHOUT_CGROUP2, 'kiln-crun', devices, bin, '--cgroup-manager=disabled']
        : [launcher, devices, bin, '--cgroup-manager=disabled'];
    cgroups = false;
  }
  // As root the answer is kept host-wide (a fresh store does not ask again), else in the caller's store.
  const version = await runtimeVersion(bin, versionCacheDir === undefined ? undefined : (hostCacheDir() ?? versionCacheDir));
  if (version.problem !== undefined) return version.problem;
  return { name, path: bin, version: version.version, command, cgroups };
}

/**
 * `BIN --version`. With `cacheDir`, remembered across processes in `runtime-versions.json` there, keyed by
 * the binary's path, size, mtime and inode: running it costs ~10-20 ms (crun's start-up), once per build
 * otherwise. Upgrading the package replaces the binary, which changes the key. A missing or broken file
 * only means running the binary again.
 */
export async function runtimeVersion(bin: string, cacheDir?: string): Promise<{ version: string; problem?: undefined } | { version?: undefined; problem: string }> {
  const st = await stat(bin).catch(() => undefined);
  const key = st === undefined ? undefined : `${bin}:${st.size}:${st.mtimeMs}:${st.ino}`;
  const cacheFile = cacheDir === undefined ? undefined : path.join(cacheDir, 'runtime-versions.json');
  let cache: Record<string, string> = {};
  try {
    if (cacheFile === undefined) throw new Error('no cache');
    const parsed = JSON.parse(await readFile(cacheFile, 'utf8')) as unknown;
    if (parsed !== null && typeof parsed === 'object') cache = parsed as Record<string, string>;
  } catch {
    // none yet, or unreadable: ask the binary
  }
  const known = key === undefined ? undefined : cache[key];
  if (typeof known === 'string') return { version: known };
  let version: string;
  try {
    const started = await startProcess(bin, ['--version'], { signal: AbortSignal.timeout(10_000), forceKillAfterMs: 1000 });
    let stdout = '';
    started.stdout.setEncoding('utf8');
    started.stdout.on('data', (chunk: string) => (stdout += chunk));
    started.stderr.resume();
    const end = await started.ended;
    if (end.exitCode !== 0) throw new Error(end.error ?? `exit ${end.exitCode ?? end.signal ?? '?'}`);
    const m = /version\s+(\S+)/.exec(stdout);
    if (m?.[1] === undefined) return { problem: `unexpected --version output: ${stdout.split('\n')[0] ?? ''}` };
    version = m[1];
  } catch (cause) {
    return { problem: `\`${bin} --version\` failed: ${messageOf(cause)}` };
  }
  if (key !== undefined && cacheFile !== undefined) {
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    // Entries of binaries that are gone (a test's fake runtime, an old package) are dropped on the way.
    const kept = Object.fromEntries(Object.entries(cache).filter(([k]) => existsSync(k.slice(0, k.indexOf(':')))));
    await writeFile(tmp, JSON.stringify({ ...kept, [key]: version }))
      .then(() => rename(tmp, cacheFile))
      .catch(() => rm(tmp, { force: true }));
  }
  return { version };
}

/**
 * Where facts about the host's binaries are remembered across processes and stores: `/run/kiln` when running as
 * root (root-only, like the runtimes' own state under /run), so that a build in a fresh store does not pay
 * for `--version` again; undefined otherwise (the caller's store cache is used).
 */
export function hostCacheDir(): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    mkdirSync(HOST_CACHE_DIR, { recursive: true, mode: 0o700 });
    return HOST_CACHE_DIR;
  } catch {
    return undefined;
  }
}
const HOST_CACHE_DIR = '/run/kiln';

/** True on a cgroup v1 host whose extra cgroup2 mount at /sys/fs/cgroup/unified has controllers enabled. */
async function hybridCgroupWithControllers(): Promise<boolean> {
  try {
    const controllers = await readFile('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8');
    return controllers.trim() !== '';
  } catch {
    return false;
  }
}

async function which(name: string, extraPath: readonly string[]): Promise<string | undefined> {
  const dirs = [...(process.env['PATH'] ?? '').split(':').filter((d) => d !== ''), ...extraPath];
  for (const dir of dirs) {
    const candidate = path.resolve(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
