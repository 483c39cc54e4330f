/**
 * `npm run bench:realworld -- [--reps N] [--cases a,b] [--no-host]`: the real-world cases of
 * test/differential/realworld.ts (Debian 12 base from mmdebstrap; apt-get with and without cache mounts, a
 * two-stage C build, `npm ci`, a non-root Python app, a big `apt-get purge`), kiln vs BuildKit (the Docker
 * peer of scripts/docker-peer.sh), each cold and again after a one-line source change, one engine at a time.
 * The order of the engines rotates per case and repetition, since the Debian archive's, the npm registry's (and
 * any proxy's) caches warm up for whoever comes later.
 *
 * Engines: `kiln` (no network flag: each RUN in its own sandboxed network through pasta), `kiln-host` (the
 * host's network, `--network host --allow network.host`: what the network mode costs), `buildkit` (the peer
 * dockerd has no bridge, so its RUN steps always use the host's network).
 *
 * Cold means: kiln on a fresh store holding only the Debian base (imported before the clock starts),
 * BuildKit after `docker builder prune -af` (the base image stays loaded). Prints medians and ratios
 * (kiln/BuildKit; the issue's targets: ≤ 0.8 cold, ≤ 0.5 after a change).
 *
 * Each time is a whole CLI process (`bin/kiln build`, `docker build`) building into the engine's own store (kiln's
 * store, dockerd's image store); nothing is
 * exported (kiln keeps built layers uncompressed and compresses only at export, so gzip is not in these
 * times; BuildKit's `exporting to image` is). Where the time goes: per step, kiln's step-done durations (a
 * RUN's include its network and overlay set-up and the container) next to BuildKit's `DONE` times from its
 * plain progress, and the rest of each build ("other": parsing, context, base resolution, the last layer's
 * snapshot and the image commit for kiln; BuildKit's exporting to image and its frontend).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import type { BuildEvent } from '../src/builder/options.js';
import { buildWithDocker, startDockerPeer } from '../test/differential/engines.js';
import { ensureDist } from './build.js';
import type { DockerPeer } from '../test/differential/engines.js';
import { REALWORLD_CASES, REALWORLD_NETWORK, prepareDebianBaseTimed, writeRealWorldCase } from '../test/differential/realworld.js';
import type { RealWorldCase } from '../test/differential/realworld.js';

const { values } = parseArgs({ options: { reps: { type: 'string', default: '1' }, cases: { type: 'string' }, 'no-host': { type: 'boolean', default: false } } });
const reps = Number(values.reps);
const chosen = values.cases ? REALWORLD_CASES.filter((c) => values.cases?.split(',').includes(c.name)) : REALWORLD_CASES;
if (!Number.isInteger(reps) || reps < 1 || chosen.length === 0) {
  console.error(`usage: bench/realworld.ts [--reps N] [--no-host] [--cases ${REALWORLD_CASES.map((c) => c.name).join(',')}]`);
  process.exit(2);
}
const ENGINES = values['no-host'] ? (['kiln', 'buildkit'] as const) : (['kiln', 'kiln-host', 'buildkit'] as const);
type Engine = (typeof ENGINES)[number];
type Phase = 'cold' | 'change';
/** One timed build: its wall time and the seconds of each step (by instruction text; cached steps absent). */
interface Timed {
  readonly seconds: number;
  readonly steps: ReadonlyArray<{ readonly text: string; readonly seconds: number }>;
}

// kiln as users start it: the bin on the bundled CLI (compiled first when src/ is newer).
await ensureDist((m) => console.log(m));
const KILN_BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'kiln');
const peer = await startDockerPeer();
const work = await mkdtemp(path.join(tmpdir(), 'kiln-bench-realworld-'));
const results = new Map<string, Map<Engine, Record<Phase, Timed[]>>>();
/** kiln's import of the base tar and the unpack of its layer, before each cold build's clock starts. */
const baseTimes: Array<{ importSeconds: number; unpackSeconds: number }> = [];

try {
  for (let rep = 0; rep < reps; rep++) {
    for (const [ci, c] of chosen.entries()) {
      const byEngine = results.get(c.name) ?? new Map(ENGINES.map((e) => [e, { cold: [], change: [] }]));
      results.set(c.name, byEngine);
      const shift = (rep + ci) % ENGINES.length;
      const order = [...ENGINES.slice(shift), ...ENGINES.slice(0, shift)];
      const dir = path.join(work, `${c.name}-${rep}`);
      // A store per kiln engine: each starts cold with only the base.
      const roots = { kiln: path.join(dir, 'store'), 'kiln-host': path.join(dir, 'store-host') };
      for (const root of Object.values(roots)) {
        const t = await prepareDebianBaseTimed(root, peer, dir);
        baseTimes.push(t);
      }
      await execa(peer.bin, ['builder', 'prune', '-af'], { env: peer.env });
      for (const phase of ['cold', 'change'] as const) {
        const { context, dockerfile } = await writeRealWorldCase(c, path.join(dir, 'case'), phase === 'change');
        for (const engine of order) {
          const t = await timeBuild(engine, c, { context, dockerfile, root: engine === 'buildkit' ? '' : roots[engine] }, peer);
          (byEngine.get(engine) as Record<Phase, Timed[]>)[phase].push(t);
          console.log(`${c.name} rep ${rep + 1} ${phase}: ${engine} ${t.seconds.toFixed(1)} s`);
        }
      }
      await rm(dir, { recursive: true, force: true });
    }
  }
} finally {
  await rm(work, { recursive: true, force: true });
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const wall = (ts: readonly Timed[]): number => median(ts.map((t) => t.seconds));
const hasHost = (ENGINES as readonly string[]).includes('kiln-host');
console.log(
  `\n| case | kiln cold | BuildKit cold | ratio (≤ 0.8) | kiln after change | BuildKit after change | ratio (≤ 0.5) |${hasHost ? ' kiln --network host cold | ratio | after change | ratio |' : ''}`,
);
console.log(`|---|---|---|---|---|---|---|${hasHost ? '---|---|---|---|' : ''}`);
for (const [name, r] of results) {
  const get = (e: Engine, p: Phase): number => wall((r.get(e) as Record<Phase, Timed[]>)[p]);
  const [kc, bc, kx, bx] = [get('kiln', 'cold'), get('buildkit', 'cold'), get('kiln', 'change'), get('buildkit', 'change')];
  const host = hasHost ? ` ${get('kiln-host', 'cold').toFixed(1)} s | ${(get('kiln-host', 'cold') / bc).toFixed(2)}× | ${get('kiln-host', 'change').toFixed(1)} s | ${(get('kiln-host', 'change') / bx).toFixed(2)}× |` : '';
  console.log(`| ${name} | ${kc.toFixed(1)} s | ${bc.toFixed(1)} s | ${(kc / bc).toFixed(2)}× | ${kx.toFixed(1)} s | ${bx.toFixed(1)} s | ${(kx / bx).toFixed(2)}× |${host}`);
}
console.log(`(${reps} repetition(s), medians; kiln's RUN network: ${REALWORLD_NETWORK} (pasta); BuildKit's: host)`);
console.log(
  `Base import, before the clock (dockerd's \`docker load\` unpacks its copy too): kiln imports the Debian tar in a median ${median(baseTimes.map((t) => t.importSeconds)).toFixed(1)} s ` +
    `and unpacks its layer in ${median(baseTimes.map((t) => t.unpackSeconds)).toFixed(1)} s (${baseTimes.length} times).`,
);

// Where the time goes: each step's median seconds per engine, then the rest of the build.
for (const phase of ['cold', 'change'] as const) {
  console.log(
    `\nWhere the time goes (${phase}; median seconds per step; "other" = wall − steps). kiln's RUN times include its network and ` +
      `overlay set-up and waiting for the previous step's snapshot; a step after a big RUN (WORKDIR, COPY) waits for that RUN's layer ` +
      `to be hashed. In a multi-stage build stages overlap: the final stage's COPY --from includes waiting for the stage it copies from.\n`,
  );
  console.log(`| case | step | ${ENGINES.join(' | ')} |`);
  console.log(`|---|---|${ENGINES.map(() => '---').join('|')}|`);
  for (const [name, r] of results) {
    const texts: string[] = [];
    for (const e of ENGINES) for (const t of (r.get(e) as Record<Phase, Timed[]>)[phase]) for (const s of t.steps) if (!texts.includes(s.text)) texts.push(s.text);
    const cell = (e: Engine, text: string | undefined): string => {
      const runs = (r.get(e) as Record<Phase, Timed[]>)[phase];
      const xs = runs.map((t) => (text === undefined ? t.seconds - t.steps.reduce((a, s) => a + s.seconds, 0) : t.steps.filter((s) => s.text === text).reduce((a, s) => a + s.seconds, 0)));
      return xs.length ? median(xs).toFixed(2) : '-';
    };
    for (const text of texts) console.log(`| ${name} | \`${text.length > 60 ? `${text.slice(0, 57)}…` : text}\` | ${ENGINES.map((e) => cell(e, text)).join(' | ')} |`);
    console.log(`| ${name} | other | ${ENGINES.map((e) => cell(e, undefined)).join(' | ')} |`);
  }
}

async function timeBuild(engine: Engine, c: RealWorldCase, b: { context: string; dockerfile: string; root: string }, p: DockerPeer): Promise<Timed> {
  const common = { context: b.context, dockerfile: b.dockerfile, network: REALWORLD_NETWORK, ...(c.secrets ? { secrets: c.secrets } : {}) };
  if (engine === 'buildkit') {
    const o = await buildWithDocker(p, { ...common, tag: `kiln-bench/${c.name}:latest` });
    if (!o.ok) throw new Error(`${engine} failed on ${c.name}: ${o.error}`);
    return { seconds: o.ms / 1000, steps: buildkitSteps(o.log ?? '') };
  }
  // A CLI against a CLI: the kiln bin as a user starts it, beside the docker CLI; its step times from its
  // JSON progress events.
  const args = ['build', '--progress', 'rawjson', '-t', `kiln-bench/${c.name}:latest`, '-f', b.dockerfile];
  if (engine === 'kiln-host') args.push('--network', 'host', '--allow', 'network.host');
  for (const s of c.secrets ?? []) args.push('--secret', `id=${s.id},src=${s.src}`);
  const started = performance.now();
  const r = await execa(KILN_BIN, [...args, b.context], { env: { KILN_ROOT: b.root }, reject: false });
  const seconds = (performance.now() - started) / 1000;
  if (r.exitCode !== 0) throw new Error(`${engine} failed on ${c.name}: ${r.stderr.split('\n').slice(-8).join('\n')}`);
  const steps: Array<{ text: string; seconds: number }> = [];
  for (const line of r.stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    const e = JSON.parse(line) as BuildEvent;
    if (e.type === 'step-done') steps.push({ text: normalStep(e.step.text), seconds: e.durationMs / 1000 });
  }
  return { seconds, steps };
}

/** A step's instruction as both engines' texts compare: one line, single spaces (BuildKit joins continuation lines). */
function normalStep(text: string): string {
  return text.replace(/\\\s*\n/g, ' ').replace(/\s+/g, ' ').trim();
}

/**
 * The steps of BuildKit's plain progress (`#N [stage i/n] RUN …` … `#N DONE 1.2s`) that ran, by instruction
 * text, and its `exporting to image`; internal steps (loading the Dockerfile, context, metadata) stay in "other".
 */
function buildkitSteps(log: string): Array<{ text: string; seconds: number }> {
  const names = new Map<string, string>();
  const out: Array<{ text: string; seconds: number }> = [];
  for (const line of log.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    if (m === null) continue;
    const [, id, rest] = m as unknown as [string, string, string];
    if (!names.has(id)) {
      names.set(id, rest);
      continue;
    }
    const done = /^DONE (\d+(?:\.\d+)?)s$/.exec(rest);
    if (done === null) continue;
    const name = names.get(id) as string;
    const step = /^\[[^\]]*\d+\/\d+\] (.*)$/.exec(name);
    if (step !== null) out.push({ text: normalStep(step[1] as string), seconds: Number(done[1]) });
    else if (name === 'exporting to image') out.push({ text: name, seconds: Number(done[1]) });
  }
  return out;
}
