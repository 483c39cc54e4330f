/**
 * The two engines of the BuildKit differential tests, each building a context into a docker archive:
 * kiln through its in-process `build()` API, BuildKit through the Docker peer that
 * scripts/docker-peer.sh starts (dockerd 20.10 on a private socket, kiln's busybox base loaded).
 */
import { execa } from 'execa';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from '../../src/builder/build.js';
import type { BuildOptions } from '../../src/builder/options.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Network of the RUN steps, for both engines. `none` for the fuzzer; the real-world builds use `host`
 * until kiln's sandboxed default network lands, then `default` (kiln: no flag; docker: no flag).
 */
export type NetworkMode = 'none' | 'host' | 'default';

/** How to reach the Docker peer. */
export interface DockerPeer {
  readonly bin: string;
  readonly env: Readonly<Record<string, string>>;
}

/** Starts the Docker peer (idempotent) and returns how to reach it; throws with the script's output when it cannot start. */
export async function startDockerPeer(signal?: AbortSignal): Promise<DockerPeer> {
  const script = path.join(REPO, 'scripts', 'docker-peer.sh');
  const r = await execa('bash', [script, 'start'], { reject: false, all: true, ...(signal ? { cancelSignal: signal } : {}) });
  if (r.exitCode !== 0) throw new Error(`scripts/docker-peer.sh start failed (exit ${r.exitCode}):\n${r.all ?? ''}`);
  return dockerPeerEnv();
}

/** The Docker peer's address as `scripts/docker-peer.sh env` prints it. */
export async function dockerPeerEnv(): Promise<DockerPeer> {
  const { stdout } = await execa('bash', [path.join(REPO, 'scripts', 'docker-peer.sh'), 'env']);
  const env: Record<string, string> = {};
  for (const m of stdout.matchAll(/(\w+)=(\S+)/g)) env[m[1] as string] = (m[2] as string).replace(/^'|'$/g, '');
  return { bin: env.KILN_DOCKER_BIN ?? '/usr/bin/docker', env: { DOCKER_HOST: env.DOCKER_HOST ?? '', DOCKER_BUILDKIT: '1' } };
}

/** A build's outcome: the archive written, or the engine's error text. */
export type BuildOutcome = { readonly ok: true; readonly archive: string; readonly ms: number; readonly log?: string } | { readonly ok: false; readonly error: string; readonly ms: number };

export interface EngineBuild {
  readonly context: string;
  readonly dockerfile: string;
  /** Where the docker archive goes; without it the image stays in the engine's store (benchmarks). */
  readonly dest?: string;
  readonly network: NetworkMode;
  readonly buildArgs?: Readonly<Record<string, string>>;
  /** Build secrets from files (`--secret id=ID,src=PATH`). */
  readonly secrets?: ReadonlyArray<{ readonly id: string; readonly src: string }>;
  readonly signal?: AbortSignal;
}

/** Builds with kiln in this process, into the store at `root`, and exports a docker archive. */
export async function buildWithKiln(b: EngineBuild & { readonly root: string; readonly kiln?: Pick<BuildOptions, 'network' | 'allow' | 'onEvent'> }): Promise<BuildOutcome> {
  const started = performance.now();
  try {
    await build({
      context: b.context,
      dockerfile: b.dockerfile,
      root: b.root,
      ...(b.network === 'default' ? {} : { network: b.network }),
      ...(b.buildArgs ? { buildArgs: b.buildArgs } : {}),
      ...(b.secrets ? { secrets: b.secrets } : {}),
      ...(b.kiln ?? {}),
      ...(b.dest !== undefined ? { outputs: [{ type: 'docker' as const, dest: b.dest }] } : {}),
      ...(b.signal ? { signal: b.signal } : {}),
    });
    return { ok: true, archive: b.dest ?? '', ms: performance.now() - started };
  } catch (err) {
    if (b.signal?.aborted) throw err;
    const e = err as Error;
    return { ok: false, error: `${e.name}: ${e.message}`, ms: performance.now() - started };
  }
}

/**
 * Builds with BuildKit in the Docker peer, then `docker save`s the image to `dest` (and with `untag`, removes
 * the tag again). The tag must be unique to this build: the daemon is shared, and a tag another build moves
 * between `build` and `save` would export that build's image.
 */
export async function buildWithDocker(peer: DockerPeer, b: EngineBuild & { readonly tag: string; readonly untag?: boolean }): Promise<BuildOutcome> {
  const started = performance.now();
  const opts = { env: peer.env, reject: false, all: true, ...(b.signal ? { cancelSignal: b.signal } : {}) } as const;
  const args = ['build', '--progress', 'plain', '-t', b.tag, '-f', b.dockerfile];
  // The peer dockerd runs without a bridge network (--bridge=none): its RUN steps reach the outside on the host's
  // network where kiln's use their own sandboxed one.
  args.push('--network', b.network === 'default' ? 'host' : b.network);
  for (const [k, v] of Object.entries(b.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
  for (const s of b.secrets ?? []) args.push('--secret', `id=${s.id},src=${s.src}`);
  const r = await execa(peer.bin, [...args, b.context], opts);
  if (r.exitCode !== 0) return { ok: false, error: tailOf(r.all ?? ''), ms: performance.now() - started };
  if (b.dest === undefined) return { ok: true, archive: '', ms: performance.now() - started, log: r.all ?? '' };
  const s = await execa(peer.bin, ['save', '-o', b.dest, b.tag], opts);
  const ms = performance.now() - started;
  if (b.untag) await execa(peer.bin, ['rmi', b.tag], { ...opts, all: false });
  if (s.exitCode !== 0) return { ok: false, error: `docker save: ${s.all ?? ''}`, ms };
  return { ok: true, archive: b.dest, ms };
}

/** The lines of BuildKit's output that say what failed (its plain progress is long). */
function tailOf(text: string): string {
  const lines = text.split('\n');
  const err = lines.findIndex((l) => /^(error|ERROR|failed to solve)/.test(l));
  return (err >= 0 ? lines.slice(err) : lines.slice(-8)).join('\n').slice(0, 2000);
}
