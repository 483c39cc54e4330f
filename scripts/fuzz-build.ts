/**
 * `npm run fuzz:build -- [--cases N] [--seed S] [--out DIR] [--fixtures DIR|none] [--shrink N] [--rerecord NAME,…]`
 *
 * The differential build fuzzer: generates random but valid Dockerfiles and contexts
 * (test/differential/generator.ts), builds each with kiln and with Docker's BuildKit (the Docker peer
 * of scripts/docker-peer.sh, started here when it is not up), and compares the two images' config,
 * history, layers and filesystem. Case i uses seed S+i, so `--seed S+i --cases 1` replays one case.
 * A case that differs is shrunk (when its kind of difference is new in this run) and written as a
 * fixture under test/fixtures/differential-buildkit/, with BuildKit's facts as the expected result.
 * Exits 1 when any case differs.
 */
import { appendFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { REPO, startDockerPeer } from '../test/differential/engines.js';
import type { NetworkMode } from '../test/differential/engines.js';
import { dockerfileText, generateCase } from '../test/differential/generator.js';
import type { FuzzCase } from '../test/differential/generator.js';
import { knownShapes, rerecordFixture, runCase, shapesOf, shrinkCase, writeFixture } from '../test/differential/fuzz.js';
import type { Runner, Verdict } from '../test/differential/fuzz.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '20' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: '/tmp/kiln-fuzz' },
    fixtures: { type: 'string', default: path.join(REPO, 'test', 'fixtures', 'differential-buildkit') },
    shrink: { type: 'string', default: '40' },
    network: { type: 'string', default: 'none' },
    quiet: { type: 'boolean', default: false },
    rerecord: { type: 'string' },
  },
});
const cases = Number(values.cases);
const seed0 = Number(values.seed);
const out = path.resolve(values.out);
if (!Number.isInteger(cases) || cases < 1 || !Number.isInteger(seed0)) {
  console.error('usage: fuzz-build.ts [--cases N] [--seed S] [--out DIR] [--fixtures DIR|none] [--shrink ATTEMPTS]');
  process.exit(2);
}
const ac = new AbortController();
process.on('SIGINT', () => ac.abort(new Error('interrupted')));

const peer = await startDockerPeer(ac.signal);
const { stdout: engine } = await execa(peer.bin, ['version', '--format', 'dockerd {{.Server.Version}} (BuildKit in dockerd)'], { env: peer.env });
await mkdir(out, { recursive: true });
const runner: Runner = { peer, root: path.join(out, 'kiln-store'), work: path.join(out, 'cases'), network: values.network as NetworkMode, signal: ac.signal };
const log = (s: string): void => console.log(s);

// `--rerecord a,b`: build those fixtures again and rewrite BuildKit's facts, then stop.
if (values.rerecord !== undefined) {
  for (const name of values.rerecord.split(',')) {
    const v = await rerecordFixture(runner, path.join(values.fixtures, name), engine);
    log(`${name}: ${v.kind}${v.lines.length ? `\n  ${v.lines.slice(0, 10).join('\n  ')}` : ''}`);
  }
  process.exit(0);
}
const findingsFile = path.join(out, 'findings.md');

const counts: Record<Verdict['kind'], number> = { same: 0, 'both-failed': 0, 'kiln-failed': 0, 'buildkit-failed': 0, differ: 0 };
const seen = new Map<string, { count: number; seeds: number[] }>();
// Kinds the fixtures already record are not shrunk again (they still count, and fail the run).
const known = values.fixtures === 'none' ? new Set<string>() : await knownShapes(values.fixtures, true);
if (known.size > 0) log(`${known.size} kinds of difference already recorded under ${values.fixtures}`);
const started = performance.now();

for (let i = 0; i < cases; i++) {
  const seed = seed0 + i;
  const c = generateCase(seed);
  const v = await runCase(runner, c, `case-${seed}`);
  counts[v.kind]++;
  const ms = (r: Verdict['kiln']): string => `${(r.ms / 1000).toFixed(1)}s`;
  log(`case ${i + 1}/${cases} seed ${seed}: ${v.kind} (kiln ${ms(v.kiln)}, buildkit ${ms(v.buildkit)})`);
  if (v.kind === 'both-failed' && !v.kiln.ok && !v.buildkit.ok) log(`  both failed: kiln ${v.kiln.error.split('\n')[0]} | buildkit ${v.buildkit.error.split('\n').slice(-1)[0]}`);
  if (v.kind !== 'same' && v.kind !== 'both-failed') {
    const fresh: string[] = [];
    for (const shape of shapesOf(v)) {
      const s = seen.get(shape) ?? { count: 0, seeds: [] };
      if (s.count === 0 && !known.has(shape)) fresh.push(shape);
      s.count++;
      s.seeds.push(seed);
      seen.set(shape, s);
    }
    for (const l of v.lines.slice(0, values.quiet ? 3 : 12)) log(`  ${l}`);
    if (fresh.length > 0) await recordFinding(c, v, new Set(fresh), seed);
  }
  // Bound the peers' disks: dangling images of earlier cases, BuildKit's cache, kiln's store.
  if ((i + 1) % 25 === 0) await execa(peer.bin, ['image', 'prune', '-f'], { env: peer.env, reject: false });
  if ((i + 1) % 150 === 0) {
    await execa(peer.bin, ['builder', 'prune', '-af'], { env: peer.env, reject: false });
    await rm(runner.root, { recursive: true, force: true });
  }
}

const secs = (performance.now() - started) / 1000;
log(`\n${cases} cases (seeds ${seed0}..${seed0 + cases - 1}) in ${secs.toFixed(0)} s: ${Object.entries(counts).map(([k, n]) => `${k} ${n}`).join(', ')}`);
log(`${seen.size} distinct kinds of difference:`);
for (const [sig, s] of seen) log(`  ${s.count}× [seeds ${s.seeds.slice(0, 8).join(' ')}${s.seeds.length > 8 ? ' …' : ''}] ${sig.slice(0, 200)}`);
process.exit(counts.differ + counts['kiln-failed'] + counts['buildkit-failed'] > 0 ? 1 : 0);

/** Shrinks a case once per new kind of difference it shows (those a shrunk case still shows are done too), and records each. */
async function recordFinding(c: FuzzCase, v: Verdict, target: ReadonlySet<string>, seed: number): Promise<void> {
  // History wording last: a case that also differs in files or config is worth more shrinking budget there.
  const remaining = [...target].sort((a, b) => Number(a.startsWith('history')) - Number(b.startsWith('history')));
  let n = 0;
  while (remaining.length > 0) {
    const shape = remaining.shift() as string;
    const budget = { attempts: Number(values.shrink) };
    log(`  shrinking for: ${shape.slice(0, 200)} (up to ${budget.attempts} builds)`);
    const shrunk = await shrinkCase(runner, c, v, new Set([shape]), `case-${seed}`, budget, log);
    const covered = new Set(shapesOf(shrunk.verdict));
    for (let i = remaining.length - 1; i >= 0; i--) if (covered.has(remaining[i] as string)) remaining.splice(i, 1);
    await writeOne(shrunk, seed, n++);
  }
}

async function writeOne(shrunk: { case: FuzzCase; verdict: Verdict }, seed: number, n: number): Promise<void> {
  const name = `${shrunk.verdict.kind}-seed${seed}${n > 0 ? `-${n}` : ''}`;
  const text = dockerfileText(shrunk.case);
  const block = [
    `### ${name} (engine: ${engine}, found by \`npm run fuzz:build -- --seed ${seed} --cases 1\`)`,
    '',
    '```dockerfile',
    text.trimEnd(),
    '```',
    `context: ${shrunk.case.context.map((e) => `${e.path} (${e.type}${'mode' in e ? ` ${e.mode.toString(8)}` : ''}${'target' in e ? ` -> ${e.target}` : ''})`).join(', ')}`,
    shrunk.case.dockerignore ? `.dockerignore: ${JSON.stringify(shrunk.case.dockerignore)}` : '.dockerignore: none',
    '',
    'difference (kiln | buildkit):',
    '```',
    ...shrunk.verdict.lines.slice(0, 20),
    '```',
    '',
  ].join('\n');
  await appendFile(findingsFile, `${block}\n`);
  log(block);
  if (values.fixtures !== 'none') {
    const dir = path.join(values.fixtures, name);
    await writeFixture(dir, shrunk.case, shrunk.verdict, engine, { finding: shrunk.verdict.lines[0] ?? '', open: true });
    log(`  fixture: ${path.relative(REPO, dir)}`);
  }
}
