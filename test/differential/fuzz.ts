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
export const DELIBERATE: ReadonlyArray<{ readonly why: string; readonly applies: (line: string) => boolean }> = [
  {
    why:
      'BuildKit since v0.9 removes the empty mount-point stub a RUN --mount made in the rootfs (executor/stubs.go, MountStubsCleaner); ' +
      "dockerd 20.10's BuildKit v0.8 leaves it in the layer. The fuzzer makes no RUN --mount: this is the real-world npm case's " +
      'cache mount at /root/.npm, a directory its base does not have.',
    applies: (l) => /^(layer \d+ |fs )\/root\/\.npm: kiln absent \| buildkit dir 0755 0:0$/.test(l),
  },
  {
    why:
      "RUN history with an ARG declared twice: dockerd 20.10's BuildKit lists it twice (`|2 U=x U=x`); the modern frontend's runCommandString keeps one entry per name (first position, the value in the step's environment), as kiln does",
    applies: (line) => historyPair(line, (k, b) => k.startsWith('RUN |') && b.startsWith('RUN |') && sameArgs(dedupRunArgs(runArgsOf(b)), runArgsOf(k)) && cmdOf(k) === cmdOf(b)),
  },
  {
    why:
      "RUN history in a stage based on another: dockerd 20.10's BuildKit lists only the stage's own ARGs; the modern frontend (dispatchState.init appends the base stage's buildArgs) lists the parent's first, as kiln does",
    applies: (line) =>
      historyPair(line, (k, b) => {
        if (!k.startsWith('RUN |') || cmdOf(k) !== cmdOf(b)) return false;
        const kiln = runArgsOf(k);
        const bk = b.startsWith('RUN |') ? dedupRunArgs(runArgsOf(b)) : [];
        return kiln.length > bk.length && bk.every((a) => kiln.includes(a));
      }),
  },
  {
    why:
      "ARG without a default that takes its value from a global ARG or a --build-arg: dockerd 20.10's BuildKit writes the bare name (`ARG A`); the modern frontend's dispatchArg writes the value it got (`ARG A=global`), as kiln does",
    applies: (line) =>
      historyPair(line, (k, b) => {
        const kw = k.split(' ');
        const bw = b.split(' ');
        return kw[0] === 'empty' && kw[1] === 'ARG' && kw.length === bw.length && bw.every((w, i) => w === kw[i] || (!w.includes('=') && (kw[i] ?? '').startsWith(`${w}=`)));
      }),
  },
  {
    why:
      "HEALTHCHECK history: dockerd 20.10's BuildKit writes Go's `%q` of a 5-field struct (`&{[\"CMD\" \"x\"] \"5s\" \"0s\" \"0s\" '\\x00'}`); the modern frontend writes `%+v` of HealthcheckConfig (`{Test:[CMD x] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}`), as kiln does",
    applies: (line) =>
      historyPair(line, (k, b) => {
        const km = /^empty HEALTHCHECK \{Test:\[(.*)\] Interval:(\S+) Timeout:(\S+) StartPeriod:(\S+) StartInterval:0s Retries:(\d+)\}$/.exec(k);
        const bm = /^empty HEALTHCHECK &\{\[(.*)\] "([^"]*)" "([^"]*)" "([^"]*)" '(.*)'\}$/.exec(b);
        if (!km || !bm) return false;
        let test: string[];
        try {
          test = JSON.parse(`[${(bm[1] ?? '').replace(/" "/g, '", "')}]`) as string[];
        } catch {
          return false;
        }
        const retries = /^\\x([0-9a-f]{2})$/.exec(bm[5] ?? '');
        const bRetries = retries ? Number.parseInt(retries[1] ?? '', 16) : (bm[5] ?? '').length === 1 ? (bm[5] ?? '').charCodeAt(0) : NaN;
        return test.join(' ') === km[1] && bm[2] === km[2] && bm[3] === km[3] && bm[4] === km[4] && bRetries === Number(km[5]);
      }),
  },
  {
    why:
      "COPY/ADD history: dockerd 20.10's BuildKit leaves the flags out; the modern frontend's dispatchCopy writes --parents, --chown and --chmod before the sources, as kiln does",
    applies: (line) =>
      historyPair(line, (k, b) => /^(COPY|ADD) /.test(k) && k.split(' ').filter((w) => !/^--(parents|chown=.*|chmod=.*)$/.test(w)).join(' ') === b),
  },
  {
    why:
      "COPY/ADD --chmod with setuid/setgid/sticky bits: dockerd 20.10's fsutil applied only the 0777 bits; the modern one (copyFileInfo) sets S_ISUID/S_ISGID/S_ISVTX too, as kiln does",
    applies: (line) => {
      const m = /^(?:layer \d+|fs) \S+: kiln (\S+) ([0-7]{4}) (.*) \| buildkit (\S+) ([0-7]{4}) (.*)$/.exec(line);
      if (!m) return false;
      const km = Number.parseInt(m[2] ?? '', 8);
      return m[1] === m[4] && m[3] === m[6] && (km & 0o7000) !== 0 && Number.parseInt(m[5] ?? '', 8) === (km & 0o777);
    },
  },
];

/** Runs `test` on a history difference line's two texts (JSON strings; null for a missing entry). */
function historyPair(line: string, test: (kiln: string, buildkit: string) => boolean): boolean {
  const h = /^history\[\d+\]: kiln (.*) \| buildkit (.*)$/.exec(line);
  if (!h) return false;
  const k = JSON.parse(h[1] ?? 'null') as string | null;
  const b = JSON.parse(h[2] ?? 'null') as string | null;
  return k !== null && b !== null && test(k, b);
}

/** The `K=V` words of `RUN |N K=V … cmd`. */
function runArgsOf(text: string): string[] {
  const words = text.split(' ');
  const n = Number((words[1] ?? '').slice(1));
  return words.slice(2, 2 + n);
}

/** What follows `RUN |N K=V …` (or `RUN ` without build args): the command and the `# buildkit` tag. */
const cmdOf = (text: string): string => {
  const words = text.split(' ');
  return words.slice((words[1] ?? '').startsWith('|') ? 2 + Number((words[1] ?? '').slice(1)) : 1).join(' ');
};

/** One entry per name, at its first position, with its last value (the modern frontend's runCommandString). */
function dedupRunArgs(args: readonly string[]): string[] {
  const out = new Map<string, string>();
  for (const a of args) out.set(a.slice(0, a.indexOf('=')), a);
  return [...out.values()];
}

const sameArgs = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((w, i) => w === b[i]);

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
  await mkdir(root, { recursive: true });
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

/**
 * Builds a case with both engines at once and compares the images. With `onlyIfKilnFails`, kiln builds
 * first and BuildKit only when kiln failed (shrinking a kiln failure: a case kiln builds is of no use).
 */
export async function runCase(runner: Runner, c: FuzzCase, label: string, onlyIfKilnFails = false): Promise<Verdict> {
  return runDockerfile(runner, c, dockerfileText(c), label, onlyIfKilnFails);
}

/** {@link runCase} for a Dockerfile given as text (a fixture's, or a hand-written case). */
export async function runDockerfile(
  runner: Runner,
  c: Pick<FuzzCase, 'context' | 'dockerignore'>,
  text: string,
  label: string,
  onlyIfKilnFails = false,
): Promise<Verdict> {
  const dir = path.join(runner.work, label);
  const { context, dockerfile } = await materializeCase(c, text, dir);
  const common = { context, dockerfile, network: runner.network, ...(runner.signal ? { signal: runner.signal } : {}) };
  const kiln = () => buildWithKiln({ ...common, root: runner.root, dest: path.join(dir, 'kiln.tar') });
  // A tag of this process and case only (other fuzz runs and tests may share the daemon), removed after the save.
  const tag = `kiln-fuzz/p${process.pid}:${label.toLowerCase().replace(/[^a-z0-9_.-]/g, '-')}`;
  const docker = () => buildWithDocker(runner.peer, { ...common, tag, untag: true, dest: path.join(dir, 'buildkit.tar') });
  let k: BuildOutcome;
  let d: BuildOutcome;
  if (onlyIfKilnFails) {
    k = await kiln();
    d = k.ok ? { ok: false, error: 'not built: kiln built the case', ms: 0 } : await docker();
  } else [k, d] = await Promise.all([kiln(), docker()]);
  const verdict = onlyIfKilnFails && k.ok ? compareResults({ ok: false, error: '', ms: k.ms }, { ok: false, error: '', ms: 0 }) : compareResults(await factsOf(k), await factsOf(d));
  await rm(path.join(dir, 'kiln.tar'), { force: true });
  await rm(path.join(dir, 'buildkit.tar'), { force: true });
  return verdict;
}

/**
 * The kinds of difference a verdict shows, so one bug seen in many cases is shrunk once: a failure's
 * blanked error, or each difference line with its paths, numbers and digests blanked out.
 */
export function shapesOf(v: Pick<Verdict, 'kind' | 'lines'>): string[] {
  const blank = (s: string): string =>
    s
      .replace(/[0-9a-f]{12,}/g, 'H')
      .replace(/\/[^\s:"|,]*/g, 'P')
      .replace(/\d+/g, 'N')
      .slice(0, 160);
  if (v.kind === 'kiln-failed' || v.kind === 'buildkit-failed') return [`${v.kind}: ${blank(v.lines[0] ?? '')}`];
  return [...new Set(v.lines.flatMap(lineShapes))].sort();

  // A history line gives one shape per word only one side has (`kiln-only --chown=V`), so the same history
  // difference in two different instructions is one kind; other lines lose their paths and numbers.
  function lineShapes(line: string): string[] {
    const h = /^history\[\d+\]: kiln (.*) \| buildkit (.*)$/.exec(line);
    if (h) {
      const words = (s: string): string[] => {
        const v = JSON.parse(s) as string | null;
        return v === null ? ['(none)'] : v.split(' ');
      };
      const a = words(h[1] as string);
      const b = words(h[2] as string);
      // Either side missing: the entry's instruction is the kind.
      if (a[0] === '(none)' || b[0] === '(none)') return [`history: only ${a[0] === '(none)' ? 'buildkit' : 'kiln'} has ${blank((a[0] === '(none)' ? b : a).slice(0, 2).join(' '))}`];
      const only = (x: string[], y: string[]): string[] => {
        const rest = [...y];
        return x.filter((w) => {
          const i = rest.indexOf(w);
          if (i < 0) return true;
          rest.splice(i, 1);
          return false;
        });
      };
      const norm = (w: string): string => blank(w.replace(/^(--[a-z-]+)=.*$/, '$1=V').replace(/^\|\d+$/, '|N'));
      const kw = (a[0] === 'empty' ? a[1] : a[0]) ?? '';
      const shapes = [...only(a, b).map((w) => `history (${kw}): kiln-only ${norm(w)}`), ...only(b, a).map((w) => `history (${kw}): buildkit-only ${norm(w)}`)];
      return shapes.length > 0 ? shapes : [`history (${kw}): word order`];
    }
    const e = /^(layer \d+|fs) \S+: kiln (.*) \| buildkit (.*)$/.exec(line);
    if (e) return [`${(e[1] as string).startsWith('layer') ? 'layer' : 'fs'}: ${entryChange(e[2] as string, e[3] as string)}`];
    return [blank(line)];
  }

  // What changed between two entries as image-facts.ts's fmt() prints them: `type mode owner [sizeB hash] [-> link] …`.
  function entryChange(a: string, b: string): string {
    if (a === 'absent' || b === 'absent' || a.split(' ')[0] !== b.split(' ')[0]) return `kiln ${a.split(' ')[0]} | buildkit ${b.split(' ')[0]}`;
    const [, ma, oa] = a.split(' ');
    const [, mb, ob] = b.split(' ');
    const changes: string[] = [];
    if (ma !== mb) changes.push(`mode ${ma}->${mb}`);
    if (oa !== ob) changes.push(`owner ${oa}->${ob}`);
    const rest = (x: string): string => x.split(' ').slice(3).join(' ');
    if (rest(a) !== rest(b)) changes.push(/ -> /.test(a) ? 'link target' : / hardlinks /.test(a + b) ? 'hardlinks' : 'content');
    return `${a.split(' ')[0]} ${changes.join(', ')}`;
  }
}

/** Whether `smaller` still shows one of the difference shapes being shrunk for. */
function stillFails(target: ReadonlySet<string>, smaller: Verdict): boolean {
  return shapesOf(smaller).some((s) => target.has(s));
}

/** Shrinks a failing case greedily: keep any one-step-smaller case that still fails the same way, until none does. */
export async function shrinkCase(
  runner: Runner,
  c: FuzzCase,
  verdict: Verdict,
  target: ReadonlySet<string>,
  label: string,
  budget: { attempts: number },
  log: (s: string) => void,
): Promise<{ case: FuzzCase; verdict: Verdict }> {
  let best = c;
  let bestVerdict = verdict;
  // Candidates before the last one that worked failed before and most likely still do: resume there,
  // and make one full pass from the start only when the rest of the list yields nothing.
  let start = 0;
  const kilnFailure = [...target].every((t) => t.startsWith('kiln-failed'));
  while (budget.attempts > 0) {
    let index = 0;
    let found = false;
    for (const smaller of smallerCases(best)) {
      if (index++ < start) continue;
      if (budget.attempts-- <= 0) break;
      runner.signal?.throwIfAborted();
      // A directory of its own per attempt: BuildKit's context transfer is keyed by the directory's path.
      const attempt = `${label}-shrink-${budget.attempts}`;
      const v = await runCase(runner, smaller, attempt, kilnFailure);
      await rm(path.join(runner.work, attempt), { recursive: true, force: true });
      if (stillFails(target, v)) {
        best = smaller;
        bestVerdict = v;
        start = index - 1;
        found = true;
        log(`  shrunk to ${best.stages.reduce((n, s) => n + s.lines.length + 1, 0)} lines, ${best.context.length} context entries`);
        break;
      }
    }
    if (!found) {
      if (start === 0) break;
      start = 0;
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
  await writeRecorded(dir, verdict, engine);
  await writeFile(
    path.join(dir, 'meta.json'),
    `${JSON.stringify({ seed: c.seed, kind: verdict.kind, open: meta.open, finding: meta.finding, difference: verdict.lines.slice(0, 20) }, null, 1)}\n`,
  );
}

/** Writes `buildkit.json`: BuildKit's facts from a verdict (or its error). */
export async function writeRecorded(dir: string, verdict: Verdict, engine: string): Promise<void> {
  const bk = verdict.buildkit;
  const kilnBase = verdict.kiln.ok ? verdict.kiln.facts.diffIds[0] : undefined;
  // The busybox base layer is left out (its diffID stands for it); a stage FROM scratch has none.
  const onBase = (f: ImageFacts): boolean => f.history[0]?.created_by.startsWith('kiln: busybox base image') === true;
  const recorded: RecordedBuildkit = bk.ok
    ? onBase(bk.facts)
      ? { engine, baseDiffId: bk.facts.diffIds[0] ?? '', facts: { ...bk.facts, layers: bk.facts.layers.map((l, i) => (i === 0 ? {} : l)) } }
      : { engine, baseDiffId: '', facts: bk.facts }
    : { engine, baseDiffId: kilnBase ?? '', error: bk.error };
  await writeFile(path.join(dir, 'buildkit.json'), `${JSON.stringify(recorded, null, 1)}\n`);
}

/**
 * Builds a fixture again with both engines and rewrites its BuildKit facts (and the difference it
 * records), e.g. after a fix to how facts are read. Returns the new verdict.
 */
export async function rerecordFixture(runner: Runner, dir: string, engine: string): Promise<Verdict> {
  const fx = await readFixture(dir);
  const v = await runDockerfile(runner, { context: fx.context.entries, dockerignore: fx.context.dockerignore ?? undefined }, fx.dockerfile, `rerecord-${path.basename(dir)}`);
  await writeRecorded(dir, v, engine);
  const meta = JSON.parse(await readFile(path.join(dir, 'meta.json'), 'utf8')) as Record<string, unknown>;
  await writeFile(path.join(dir, 'meta.json'), `${JSON.stringify({ ...meta, kind: v.kind, finding: v.lines[0] ?? '', difference: v.lines.slice(0, 20) }, null, 1)}\n`);
  return v;
}

/** The difference shapes the fixtures under `dir` record (open ones only, unless `all`): kinds already known. */
export async function knownShapes(dir: string, all = false): Promise<Set<string>> {
  const { readdir } = await import('node:fs/promises');
  const known = new Set<string>();
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory()) continue;
    const fx = await readFixture(path.join(dir, e.name));
    if (!fx.meta.open && !all) continue;
    const kind = fx.meta.kind ?? (e.name.replace(/-seed\d+(-\d+)?$/, '') as Verdict['kind']);
    for (const shape of shapesOf({ kind, lines: fx.meta.difference ?? [] })) known.add(shape);
  }
  return known;
}

/** Reads a fixture back as the pieces a build needs. */
export async function readFixture(dir: string): Promise<{
  dockerfile: string;
  context: { entries: ContextEntry[]; dockerignore: string[] | null };
  buildkit: RecordedBuildkit;
  meta: { open: boolean; finding: string; kind?: Verdict['kind']; difference?: string[] };
}> {
  const json = async <T>(name: string): Promise<T> => JSON.parse(await readFile(path.join(dir, name), 'utf8')) as T;
  return {
    dockerfile: await readFile(path.join(dir, 'Dockerfile'), 'utf8'),
    context: await json('context.json'),
    buildkit: await json('buildkit.json'),
    meta: await json('meta.json'),
  };
}
