/**
 * Finding an OCI runtime (crun or runc) that actually works on this host.
 */
import { access, constants, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { RuntimeError, messageOf } from '../errors.js';

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
  /** Why a preferred runtime was passed over; the caller reports these (the library never prints). */
  readonly warnings: readonly string[];
}

/** Options of {@link detectRuntime}. */
export interface DetectRuntimeOptions {
  readonly signal?: AbortSignal;
  /** Extra directories searched after PATH. @default ['/usr/local/sbin', '/usr/sbin', '/sbin'] */
  readonly extraPath?: readonly string[];
}

const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'] as const;

/**
 * A per-process memo of the verdicts: which runtime works is a fact about the host that does not
 * change during a build, and probing it costs process spawns we do not want on every RUN step.
 * This is the module's only mutable state; it holds promises of immutable results.
 */
const memo = new Map<string, Promise<RuntimeInfo>>();

/**
 * Finds a working OCI runtime. `'auto'` tries crun (faster start-up) and then runc; naming one tries
 * it first and falls back to the other with a warning. crun is refused on hybrid cgroup hosts where
 * the cgroup2 mount at /sys/fs/cgroup/unified holds a controller: crun (as of 1.8) aborts there with
 * `cgroups in hybrid mode not supported`, while runc handles them.
 *
 * @throws RuntimeError when no runtime works, saying how to install one.
 */
export async function detectRuntime(preferred: RuntimeName | 'auto' = 'auto', options: DetectRuntimeOptions = {}): Promise<RuntimeInfo> {
  options.signal?.throwIfAborted();
  const key = `${preferred}\0${(options.extraPath ?? SBIN_DIRS).join(':')}\0${process.env['PATH'] ?? ''}`;
  let found = memo.get(key);
  if (found === undefined) {
    found = probe(preferred, options.extraPath ?? SBIN_DIRS);
    memo.set(key, found);
    // A failed probe (or one cut short) is not remembered: the user may install a runtime and retry.
    found.catch(() => memo.delete(key));
  }
  return found;
}

async function probe(preferred: RuntimeName | 'auto', extraPath: readonly string[]): Promise<RuntimeInfo> {
  const order: RuntimeName[] = preferred === 'runc' ? ['runc', 'crun'] : ['crun', 'runc'];
  const problems: string[] = [];
  for (const name of order) {
    const problem = await check(name, extraPath);
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
async function check(name: RuntimeName, extraPath: readonly string[]): Promise<Omit<RuntimeInfo, 'warnings'> | string> {
  const bin = await which(name, extraPath);
  if (bin === undefined) return 'not installed';
  // Checked before running the binary: on such a host crun cannot work, and a spawn costs tens of ms per build.
  if (name === 'crun' && (await hybridCgroupWithControllers())) {
    return 'refuses hybrid cgroup hosts (cgroups in hybrid mode not supported: /sys/fs/cgroup/unified holds controllers)';
  }
  let version: string;
  try {
    const { stdout } = await execa(bin, ['--version'], { stdin: 'ignore', timeout: 10_000 });
    const m = /version\s+(\S+)/.exec(stdout);
    if (m?.[1] === undefined) return `unexpected --version output: ${stdout.split('\n')[0] ?? ''}`;
    version = m[1];
  } catch (cause) {
    return `\`${bin} --version\` failed: ${messageOf(cause)}`;
  }
  return { name, path: bin, version };
}

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
