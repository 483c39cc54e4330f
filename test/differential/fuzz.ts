/**
 * The differential build fuzzer's moving parts, shared by scripts/fuzz-build.ts (long runs), the CI
 * sample (test/differential/buildkit-fuzz.test.ts) and the fixture test (buildkit-fixtures.test.ts):
 * writing a case to disk, building it with both engines, comparing, shrinking, and recording a
 * shrunk case as a fixture whose expected facts come from BuildKit.
 */
import { link, mkdir, readFile, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { buildWithDocker, buildWithKiln } from './engines.js';
import type { BuildOutcome, DockerPeer, NetworkMode } from './engines.js';
import { dockerArchiveFacts, diffFacts } from './image-facts.js';
import type { ImageFacts } from './image-facts.js';
import { dockerfileText, smallerCases } from './generator.js';
import type { ContextEntry, FuzzCase } from './generator.js';

export const NAMES = ['kiln', 'buildkit'] as const;

/**
 * Differences kiln keeps on purpose, each with the reason. A line matches the shapes of
 * image-facts.ts's diffFacts(): `config <Field>: kiln X | buildkit Y`, `history[i]: …`, `layer i <path>: …`, `fs <path>: …`.
 */
export const DELIBERATE: ReadonlyArray<{ readonly why: string; readonly applies: (line: string) => boolean }> = [];

export const unexplained = (lines: readonly string[]): string[] => lines.filter((l) => !DELIBERATE.some((d) => d.applies(l)));

/** Writes the case's Dockerfile, context and .dockerignore under `dir` (the Dockerfile lives outside the context). */
export async function materializeCase(c: Pick<FuzzCase, 'context' | 'dockerignore'>, dockerfile: string, dir: string): Promise<{ context: string; dockerfile: string }> {
  await rm(dir, { recursive: true, force: true });
  const context = path.join(dir, 'ctx');
  await mkdir(context, { recursive: true });
  await writeContext(c.context, c.dockerignore, context);
  const df = path.join(dir, 'Dockerfile');
  await writeFile(df, dockerfile);
  return { context, dockerfile: df };
}

/** Creates the context entries under `root` with their exact modes (directories' modes last, so a 0500 directory can still be filled). */
export async function writeContext(entries: readonly ContextEntry[], dockerignore: readonly string[] | undefined | null, root: string): Promise<void> {
  const dirModes: Array<[string, number]> = [];
  for (const e of entries) {
    const abs = path.join(root, e.path);
    await mkdir(path.dirname(abs), { recursive: true });
    switch (e.type) {
      case 'dir':
        await mkdir(abs, { recursive: true });
        dirModes.push([abs, e.mode]);
        break;
      case 'file':
        await writeFile(abs, e.content);
        await chmod(abs, e.mode);
        break;
      case 'symlink':
        await symlink(e.target, abs);
        break;
      case 'hardlink':
        await link(path.join(root, e.target), abs).catch(async () => writeFile(abs, 'hardlink target missing\n'));
        break;
    }
  }
  if (dockerignore) await writeFile(path.join(root, '.dockerignore'), `${dockerignore.join('\n')}\n`);
  for (const [abs, mode] of dirModes.reverse()) await chmod(abs, mode);
}

/** What one engine made of a case: the image's facts, or the error. */
export type EngineResult = { readonly ok: true; readonly facts: ImageFacts; readonly ms: number } | { readonly ok: false; readonly error: string; readonly ms: number };

/** How the two engines compared on a case. */
export interface Verdict {
  /** same: equal images, or both failed. */
  readonly kind: 'same' | 'both-failed' | 'kiln-failed' | 'buildkit-failed' | 'differ';
  /** The difference lines (not explained by DELIBERATE), or the failing engine's error. */
  readonly lines: readonly string[];
  readonly kiln: EngineResult;
  readonly buildkit: EngineResult;
}

async function factsOf(o: BuildOutcome): Promise<EngineResult> {
  if (!o.ok) return o;
  try {
    return { ok: true, facts: await dockerArchiveFacts(o.archive), ms: o.ms };
  } catch (err) {
    return { ok: false, error: `reading ${o.archive}: ${(err as Error).message}`, ms: o.ms };
  }
}

export function compareResults(kiln: EngineResult, buildkit: EngineResult): Verdict {
  if (!kiln.ok && !buildkit.ok) return { kind: 'both-failed', lines: [], kiln, buildkit };
  if (!kiln.ok) return { kind: 'kiln-failed', lines: [`kiln failed: ${kiln.error}`], kiln, buildkit };
  if (!buildkit.ok) return { kind: 'buildkit-failed', lines: [`buildkit failed (kiln built it): ${buildkit.error}`], kiln, buildkit };
  const lines = unexplained(diffFacts(kiln.facts, buildkit.facts, NAMES));
  return { kind: lines.length === 0 ? 'same' : 'differ', lines, kiln, buildkit };
}

export interface Runner {
  readonly peer: DockerPeer;
  /** kiln's store (shared across cases: the step cache is part of what is tested). */
  readonly root: string;
  /** Scratch directory for contexts and archives. */
  readonly work: string;
  readonly network: NetworkMode;
  readonly signal?: AbortSignal;
}

/** Builds a case with both engines at once and compares the images. */
export async function runCase(runner: Runner, c: FuzzCase, label: string): Promise<Verdict> {
  const dir = path.join(runner.work, label);
  const { context, dockerfile } = await materializeCase(c, dockerfileText(c), dir);
  const common = { context, dockerfile, network: runner.network, ...(runner.signal ? { signal: runner.signal } : {}) };
  const [k, d] = await Promise.all([
    buildWithKiln({ ...common, root: runner.root, dest: path.join(dir, 'kiln.tar') }),
    buildWithDocker(runner.peer, { ...common, tag: 'kiln-fuzz:current', dest: path.join(dir, 'buildkit.tar') }),
  ]);
  const verdict = compareResults(await factsOf(k), await factsOf(d));
  await rm(path.join(dir, 'kiln.tar'), { force: true });
  await rm(path.join(dir, 'buildkit.tar'), { force: true });
  return verdict;
}

/**
 * A coarse fingerprint of a verdict, so one bug seen in many cases is shrunk once: the kind, and for
 * differences each line with its paths, numbers and digests blanked out.
 */
export function signatureOf(v: Verdict): string {
  const blank = (s: string): string =>
    s
      .replace(/[0-9a-f]{12,}/g, 'H')
      .replace(/\/[^\s:"|,]*/g, 'P')
      .replace(/\d+/g, 'N')
      .slice(0, 160);
  if (v.kind === 'kiln-failed' || v.kind === 'buildkit-failed') return `${v.kind}: ${blank(v.lines[0] ?? '')}`;
  return `${v.kind}: ${[...new Set(v.lines.map((l) => blank(l).replace(/^(layer N|fs) P:/, '$1:')))].sort().join(' ; ')}`;
}

/** Whether `smaller` still shows the difference of `original` (same kind, and for `differ` a shared line shape). */
function stillFails(original: Verdict, smaller: Verdict): boolean {
  if (smaller.kind !== original.kind) return false;
  if (original.kind !== 'differ') return signatureOf(smaller) === signatureOf(original);
  const shapes = new Set(signatureOf(original).slice('differ: '.length).split(' ; '));
  return signatureOf(smaller)
    .slice('differ: '.length)
    .split(' ; ')
    .some((s) => shapes.has(s));
}

/** Shrinks a failing case greedily: keep any one-step-smaller case that still fails the same way, until none does. */
export async function shrinkCase(
  runner: Runner,
  c: FuzzCase,
  verdict: Verdict,
  label: string,
  budget: { attempts: number },
  log: (s: string) => void,
): Promise<{ case: FuzzCase; verdict: Verdict }> {
  let best = c;
  let bestVerdict = verdict;
  let progress = true;
  while (progress && budget.attempts > 0) {
    progress = false;
    for (const smaller of smallerCases(best)) {
      if (budget.attempts-- <= 0) break;
      runner.signal?.throwIfAborted();
      const v = await runCase(runner, smaller, `${label}-shrink`);
      if (stillFails(verdict, v)) {
        best = smaller;
        bestVerdict = v;
        progress = true;
        log(`  shrunk to ${best.stages.reduce((n, s) => n + s.lines.length + 1, 0)} lines, ${best.context.length} context entries`);
        break;
      }
    }
  }
  return { case: best, verdict: bestVerdict };
}

/** What a fixture records: BuildKit's image (the base layer left out: its diffID stands for it), or BuildKit's error. */
export interface RecordedBuildkit {
  readonly engine: string;
  readonly baseDiffId: string;
  readonly facts?: ImageFacts;
  readonly error?: string;
}

/** Writes a shrunk failing case as test/fixtures/differential-buildkit/<name>/: Dockerfile, context.json, buildkit.json, meta.json. */
export async function writeFixture(
  dir: string,
  c: FuzzCase,
  verdict: Verdict,
  engine: string,
  meta: { readonly finding: string; readonly open: boolean },
): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'Dockerfile'), dockerfileText(c));
  await writeFile(path.join(dir, 'context.json'), `${JSON.stringify({ entries: c.context, dockerignore: c.dockerignore ?? null }, null, 1)}\n`);
  const bk = verdict.buildkit;
  const kilnBase = verdict.kiln.ok ? verdict.kiln.facts.diffIds[0] : undefined;
  const recorded: RecordedBuildkit = bk.ok
    ? { engine, baseDiffId: bk.facts.diffIds[0] ?? '', facts: { ...bk.facts, layers: bk.facts.layers.map((l, i) => (i === 0 ? {} : l)) } }
    : { engine, baseDiffId: kilnBase ?? '', error: bk.error };
  await writeFile(path.join(dir, 'buildkit.json'), `${JSON.stringify(recorded, null, 1)}\n`);
  await writeFile(
    path.join(dir, 'meta.json'),
    `${JSON.stringify({ seed: c.seed, open: meta.open, finding: meta.finding, difference: verdict.lines.slice(0, 20) }, null, 1)}\n`,
  );
}

/** Reads a fixture back as the pieces a build needs. */
export async function readFixture(dir: string): Promise<{
  dockerfile: string;
  context: { entries: ContextEntry[]; dockerignore: string[] | null };
  buildkit: RecordedBuildkit;
  meta: { open: boolean; finding: string };
}> {
  const json = async <T>(name: string): Promise<T> => JSON.parse(await readFile(path.join(dir, name), 'utf8')) as T;
  return {
    dockerfile: await readFile(path.join(dir, 'Dockerfile'), 'utf8'),
    context: await json('context.json'),
    buildkit: await json('buildkit.json'),
    meta: await json('meta.json'),
  };
}
