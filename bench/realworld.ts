/**
 * `npm run bench:realworld -- [--reps N] [--cases a,b]`: the real-world cases of
 * test/differential/realworld.ts (Debian 12 base from mmdebstrap, apt-get, a two-stage C build), kiln vs
 * BuildKit (the Docker peer of scripts/docker-peer.sh), each cold and again after a one-line source
 * change, one engine at a time. Which engine goes first alternates per case and repetition, since the
 * Debian archive's (and any proxy's) caches warm up for whoever comes second.
 *
 * Cold means: kiln on a fresh store holding only the Debian base (imported before the clock starts),
 * BuildKit after `docker builder prune -af` (the base image stays loaded). Prints medians and ratios
 * (kiln/BuildKit; the targets: ≤ 0.8 cold, ≤ 0.5 after a change).
 *
 * Each time is the build into the engine's own store (kiln's store, dockerd's image store); nothing is exported.
 * A skeleton: it times whole builds only; where the time goes (download, RUN, snapshot, export) is not
 * broken down yet.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { buildWithDocker, buildWithKiln, startDockerPeer } from '../test/differential/engines.js';
import type { DockerPeer } from '../test/differential/engines.js';
import { REALWORLD_CASES, REALWORLD_NETWORK, prepareDebianBase, writeRealWorldCase } from '../test/differential/realworld.js';
import type { RealWorldCase } from '../test/differential/realworld.js';

const { values } = parseArgs({ options: { reps: { type: 'string', default: '1' }, cases: { type: 'string' } } });
const reps = Number(values.reps);
const chosen = values.cases ? REALWORLD_CASES.filter((c) => values.cases?.split(',').includes(c.name)) : REALWORLD_CASES;
if (!Number.isInteger(reps) || reps < 1 || chosen.length === 0) {
  console.error(`usage: bench/realworld.ts [--reps N] [--cases ${REALWORLD_CASES.map((c) => c.name).join(',')}]`);
  process.exit(2);
}

const peer = await startDockerPeer();
const work = await mkdtemp(path.join(tmpdir(), 'kiln-bench-realworld-'));
type Times = { cold: number[]; change: number[] };
const results = new Map<string, { kiln: Times; buildkit: Times }>();

try {
  for (let rep = 0; rep < reps; rep++) {
    for (const [ci, c] of chosen.entries()) {
      const kilnFirst = (rep + ci) % 2 === 0;
      const r = results.get(c.name) ?? { kiln: { cold: [], change: [] }, buildkit: { cold: [], change: [] } };
      results.set(c.name, r);
      const dir = path.join(work, `${c.name}-${rep}`);
      const root = path.join(dir, 'store');
      await prepareDebianBase(root, peer, dir);
      await execa(peer.bin, ['builder', 'prune', '-af'], { env: peer.env });
      for (const phase of ['cold', 'change'] as const) {
        const { context, dockerfile } = await writeRealWorldCase(c, path.join(dir, 'case'), phase === 'change');
        const engines = kilnFirst ? (['kiln', 'buildkit'] as const) : (['buildkit', 'kiln'] as const);
        for (const engine of engines) {
          const seconds = await timeBuild(engine, c, { context, dockerfile, root }, peer);
          r[engine][phase].push(seconds);
          console.log(`${c.name} rep ${rep + 1} ${phase}: ${engine} ${seconds.toFixed(1)} s`);
        }
      }
      await rm(dir, { recursive: true, force: true });
    }
  }
} finally {
  await rm(work, { recursive: true, force: true });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
console.log(`\n| case | kiln cold | BuildKit cold | ratio (≤ 0.8) | kiln after change | BuildKit after change | ratio (≤ 0.5) |`);
console.log('|---|---|---|---|---|---|---|');
for (const [name, r] of results) {
  const kc = median(r.kiln.cold);
  const bc = median(r.buildkit.cold);
  const kx = median(r.kiln.change);
  const bx = median(r.buildkit.change);
  console.log(`| ${name} | ${kc.toFixed(1)} s | ${bc.toFixed(1)} s | ${(kc / bc).toFixed(2)}× | ${kx.toFixed(1)} s | ${bx.toFixed(1)} s | ${(kx / bx).toFixed(2)}× |`);
}
console.log(`(${reps} repetition(s), medians; RUN network: ${REALWORLD_NETWORK})`);

async function timeBuild(engine: 'kiln' | 'buildkit', c: RealWorldCase, b: { context: string; dockerfile: string; root: string }, p: DockerPeer): Promise<number> {
  const common = { context: b.context, dockerfile: b.dockerfile, network: REALWORLD_NETWORK };
  const o = engine === 'kiln' ? await buildWithKiln({ ...common, root: b.root }) : await buildWithDocker(p, { ...common, tag: `kiln-bench/${c.name}:latest` });
  if (!o.ok) throw new Error(`${engine} failed on ${c.name}: ${o.error}`);
  return o.ms / 1000;
}
