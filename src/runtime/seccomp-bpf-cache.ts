/**
 * crun compiles a container's `linux.seccomp` profile with libseccomp on every start: for Docker's profile (three
 * architectures, ~400 calls) that is ~20 ms of CPU per RUN step here, about twice what the rest of crun's start-up
 * costs. crun can instead load a compiled filter given in the `run.oci.seccomp_bpf_data` annotation (base64), as
 * podman does. kiln has crun compile the profile once (`crun create` writes the filter to its state directory as
 * `seccomp.bpf`), keeps the bytes in a root-only cache file keyed by the profile and the crun binary, and hands them
 * to every later container. The config keeps `linux.seccomp` as well, so a runtime that ignores the annotation
 * (runc) still applies the same profile.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { RuntimeInfo } from './oci-runtime.js';
import type { OciSeccomp } from './seccomp.js';
import { makeOwnedTempDir } from '../store/owner.js';

/** The annotation crun reads a compiled filter from. */
export const SECCOMP_BPF_ANNOTATION = 'run.oci.seccomp_bpf_data';

/**
 * The compiled filter of `profile` for `runtime` (base64), from `cacheDir` or compiled now by crun and cached there.
 * Undefined for runtimes other than crun, without a cache dir, or when compiling fails (the caller then relies on
 * `linux.seccomp`, which the runtime compiles itself).
 */
export async function compiledSeccomp(runtime: RuntimeInfo, profile: OciSeccomp, capabilities: readonly string[], cacheDir: string | undefined): Promise<string | undefined> {
  if (runtime.name !== 'crun' || cacheDir === undefined) return undefined;
  const key = createHash('sha256').update(JSON.stringify([profile, runtime.path, runtime.version, runtime.command])).digest('hex').slice(0, 32);
  const file = path.join(cacheDir, `seccomp-${key}.bpf`);
  try {
    return readFileSync(file).toString('base64');
  } catch {
    // not compiled yet
  }
  const bpf = await compileWithCrun(runtime, profile, capabilities);
  if (bpf === undefined) return undefined;
  try {
    mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    // Root-only: whoever could rewrite this file would choose every later step's filter.
    writeFileSync(tmp, bpf, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
    pruneOthers(cacheDir, path.basename(file));
  } catch {
    // uncached: compiled again next time
  }
  return bpf.toString('base64');
}

/** How many filters of other profiles or runtime versions stay cached beside a new one (several kiln installs). */
const KEEP_OTHERS = 3;

/** Drops all but the newest {@link KEEP_OTHERS} other filters: a crun upgrade or a profile change would otherwise add files forever. */
function pruneOthers(cacheDir: string, keep: string): void {
  const others = readdirSync(cacheDir)
    .filter((n) => /^seccomp-[0-9a-f]{32}\.bpf$/.test(n) && n !== keep)
    .map((n) => ({ n, t: statSync(path.join(cacheDir, n), { throwIfNoEntry: false })?.mtimeMs ?? 0 }))
    .sort((a, b) => b.t - a.t);
  for (const { n } of others.slice(KEEP_OTHERS)) rmSync(path.join(cacheDir, n), { force: true });
}

/** `crun create` of an empty container with the profile, to read back the filter crun compiled; then `delete --force`. */
async function compileWithCrun(runtime: RuntimeInfo, profile: OciSeccomp, capabilities: readonly string[]): Promise<Buffer | undefined> {
  const bundle = makeOwnedTempDir('seccomp');
  const state = path.join(bundle, 'state');
  const id = `kiln-seccomp-${randomBytes(6).toString('hex')}`;
  const [bin, ...wrapper] = runtime.command as [string, ...string[]];
  // Without pipes: the created container's init inherits crun's stdio and holds it until `delete`, so waiting for
  // piped output to end would wait forever. This runs once per host and profile, so execa's fork is affordable.
  const { execa } = await import('execa');
  const crun = async (args: string[]): Promise<number | undefined> =>
    (await execa(bin, [...wrapper, '--root', state, ...args], { stdio: 'ignore', reject: false, timeout: 10_000 })).exitCode;
  try {
    for (const d of ['rootfs/dev', 'rootfs/proc']) mkdirSync(path.join(bundle, d), { recursive: true });
    // crun checks that the process' executable exists; it never runs (the container is deleted before `start`).
    writeFileSync(path.join(bundle, 'rootfs', 'init'), '', { mode: 0o755 });
    const caps = [...capabilities];
    writeFileSync(
      path.join(bundle, 'config.json'),
      JSON.stringify({
        ociVersion: '1.0.2',
        process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['/init'], env: [], cwd: '/', capabilities: { bounding: caps, effective: caps, permitted: caps } },
        root: { path: 'rootfs', readonly: true },
        mounts: [],
        linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }], seccomp: profile },
      }),
    );
    const created = await crun(['create', '--bundle', bundle, id]);
    let bpf: Buffer | undefined;
    if (created === 0) {
      try {
        bpf = readFileSync(path.join(state, id, 'seccomp.bpf'));
      } catch {
        bpf = undefined;
      }
    }
    await crun(['delete', '--force', id]);
    // A compiled filter is a whole number of 8-byte BPF instructions.
    return bpf !== undefined && bpf.length > 0 && bpf.length % 8 === 0 ? bpf : undefined;
  } catch {
    return undefined;
  } finally {
    rmSync(bundle, { recursive: true, force: true });
  }
}
