/**
 * A seeded generator of random but valid Dockerfiles and build contexts for the differential fuzzer
 * against BuildKit (scripts/fuzz-build.ts). It stays inside what dockerd 20.10's BuildKit accepts:
 * no heredocs, no `${v%p}`-style expansions, no `COPY --link`, no `RUN --mount` (those are tested
 * elsewhere). The same seed always gives the same case.
 *
 * A case is kept structured (stages of instructions, RUN scripts as lists of operations, context entries,
 * .dockerignore lines) so the shrinker can drop one piece at a time.
 */

/** A small fast PRNG (mulberry32): deterministic per seed, no dependency. */
export function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)] as T;
  return { next, int, pick, chance: (p) => next() < p };
}

export interface Rng {
  next(): number;
  int(lo: number, hi: number): number;
  pick<T>(xs: readonly T[]): T;
  chance(p: number): boolean;
}

/** One entry of the build context. Modes are kept exactly (the context is materialized, not checked out). */
export type ContextEntry =
  | { readonly path: string; readonly type: 'file'; readonly mode: number; readonly content: string }
  | { readonly path: string; readonly type: 'dir'; readonly mode: number }
  | { readonly path: string; readonly type: 'symlink'; readonly target: string }
  | { readonly path: string; readonly type: 'hardlink'; readonly target: string };

/** One Dockerfile instruction: `head` followed by `parts` joined with `sep` (RUN scripts: one part per operation). */
export interface Line {
  readonly head: string;
  readonly parts?: readonly string[];
  readonly sep?: string;
}

export interface Stage {
  readonly from: string;
  readonly name: string;
  readonly lines: readonly Line[];
}

export interface FuzzCase {
  readonly seed: number;
  /** Dockerfile lines before the first FROM (global ARGs). */
  readonly preamble: readonly Line[];
  readonly stages: readonly Stage[];
  readonly context: readonly ContextEntry[];
  /** .dockerignore lines; undefined: no .dockerignore. */
  readonly dockerignore: readonly string[] | undefined;
}

export const lineText = (l: Line): string => l.head + (l.parts ?? []).join(l.sep ?? ' ');

export function dockerfileText(c: FuzzCase): string {
  const out: string[] = c.preamble.map(lineText);
  for (const s of c.stages) {
    out.push(`FROM ${s.from} AS ${s.name}`);
    for (const l of s.lines) out.push(lineText(l));
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Context

const CTX_FILES = [
  'a.txt',
  'b.txt',
  'c.sh',
  'README.md',
  'src/main.ts',
  'src/util.ts',
  'src/sub/deep.ts',
  'src/sub/notes.md',
  'docs/README.md',
  'docs/guide.md',
  'docs/img/logo.svg',
  'keep/k1',
  'keep/k2.txt',
  'data/one.bin',
  'data/two.bin',
  'tmp/cache.txt',
  '.hidden',
  'node_modules/pkg/index.js',
];
const CTX_FILE_MODES = [0o644, 0o644, 0o644, 0o755, 0o600, 0o640, 0o444, 0o700];
const CTX_DIR_MODES = [0o755, 0o755, 0o755, 0o700, 0o750, 0o775];

function genContext(r: Rng): ContextEntry[] {
  const files = CTX_FILES.filter(() => r.chance(0.55));
  if (files.length === 0) files.push('a.txt');
  const out: ContextEntry[] = [];
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  if (r.chance(0.3)) dirs.add('empty');
  if (r.chance(0.2)) dirs.add('src/empty');
  for (const d of [...dirs].sort()) out.push({ path: d, type: 'dir', mode: r.chance(0.8) ? 0o755 : r.pick(CTX_DIR_MODES) });
  for (const f of files) {
    const size = r.pick([0, 1, 5, 20, 100, 3000]);
    const content = size === 0 ? '' : `${f}:${r.int(0, 999)}\n`.repeat(Math.ceil(size / 12)).slice(0, size);
    out.push({ path: f, type: 'file', mode: r.chance(0.6) ? 0o644 : r.pick(CTX_FILE_MODES), content });
  }
  if (r.chance(0.3)) out.push({ path: 'link-to-a', type: 'symlink', target: r.pick(['a.txt', files[0] as string, 'missing', '/etc/passwd']) });
  if (r.chance(0.15) && dirs.has('src')) out.push({ path: 'srclink', type: 'symlink', target: 'src' });
  if (r.chance(0.15)) out.push({ path: 'hard-a', type: 'hardlink', target: files[0] as string });
  return out;
}

const IGNORE_LINES = [
  '**/*.md',
  '*.md',
  '!README.md',
  'docs/**',
  '!docs/README.md',
  '*.txt',
  '!keep/*.txt',
  'src/sub',
  'src/sub/',
  '**',
  '!src/**',
  '!src',
  'keep/',
  '*/k*',
  '# a comment',
  '!**/*.ts',
  'data',
  'tmp/*',
  '**/node_modules',
  '.hidden',
  'Dockerfile',
  '.dockerignore',
  'empty',
  '!a.txt',
  '*',
  './b.txt',
  '/c.sh',
];

function genIgnore(r: Rng): string[] | undefined {
  if (!r.chance(0.35)) return undefined;
  const n = r.int(1, 4);
  const out: string[] = [];
  // The allow-list style many projects use: everything, then re-includes.
  if (r.chance(0.3)) out.push(r.pick(['*', '**']));
  for (let i = 0; i < n; i++) out.push(r.pick(IGNORE_LINES));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

const W_PATHS = ['/w/f1', '/w/f2', '/w/d1', '/w/d1/f3', '/w/d1/d2', '/w/d1/d2/f4', '/w/l1', '/w/h1', '/etc/fz.conf', '/tmp/t1', '/root/r1', '/w/d3'];
const FILES = ['/w/f1', '/w/f2', '/w/d1/f3', '/w/d1/d2/f4', '/etc/fz.conf', '/tmp/t1', '/root/r1'];
const DIRS = ['/w', '/w/d1', '/w/d1/d2', '/w/d3', '/tmp/td'];
const MODES = ['600', '644', '755', '700', '444', '1777', '2755', '4755', '000', 'u+x', 'go-r', 'a+w'];
const OWNERS = ['0:0', '1:1', '1000:1000', '65534:65534', '1000', 'nobody', '2:3', 'root:nobody'];
const WORDS = ['hello', 'world', 'x', 'same', '', 'line with spaces'];

function genOp(r: Rng): string {
  const f = r.pick(FILES);
  const d = r.pick(DIRS);
  const p = r.pick(W_PATHS);
  switch (r.int(0, 17)) {
    case 0:
    case 1:
      return `mkdir -p ${d} && echo ${r.pick(WORDS) || 'e'} > ${d}/n${r.int(1, 3)}`;
    case 2:
      return `mkdir -p $(dirname ${f}) && echo '${r.pick(WORDS)}' > ${f}`;
    case 3:
      return `echo ${r.pick(WORDS) || 'e'} >> ${f}`;
    case 4:
      return `chmod ${r.pick(MODES)} ${p}`;
    case 5:
      return `chown ${r.pick(OWNERS)} ${p}`;
    case 6:
      return `rm -rf ${p}`;
    case 7:
      return `rm -rf ${d} && mkdir -p ${d}`;
    case 8:
      return `ln -sf ${r.pick(['f1', '/w/f2', 'd1', '../etc', 'nowhere', '/w/d1/f3'])} ${r.pick(['/w/l1', '/w/l2', '/w/d1/l3'])}`;
    case 9:
      return `ln -f ${f} ${r.pick(['/w/h1', '/w/h2', '/w/d1/h3'])}`;
    case 10:
      return `touch ${f}`;
    case 11:
      return `mv ${p} ${r.pick(W_PATHS)}`;
    case 12:
      return `cp -a ${p} ${r.pick(['/w/cp1', '/w/d3/cp2', '/tmp/cp3'])}`;
    case 13:
      return `mkfifo ${r.pick(['/w/fifo', '/tmp/fifo'])}`;
    case 14:
      return r.pick(['true', 'echo nothing', 'ls / > /dev/null', 'cat /etc/passwd > /dev/null', 'test -e /w']);
    case 15:
      return `printf '%s' "$${r.pick(['A', 'B', 'HOME', 'PATH', 'E1'])}" > ${f}`;
    case 16:
      return r.chance(0.5)
        ? `dd if=/dev/zero of=${f} bs=1k count=${r.int(0, 70)} 2>/dev/null`
        : // What a step sees of its environment: variables, user, directory, umask, host name, /etc files and their
          // mounts, /dev (not /tmp: the file being written would race the listing). The listing leaves out times (when a
          // step ran: its layer may come from either engine's cache) and /dev/core, which crun (kiln's usual runtime)
          // always makes and runc (BuildKit's) only on kernels with /proc/kcore: a difference of runtimes, kept (see the
          // README's deliberate differences).
          `${r.pick([
            "env | grep -v '^HOSTNAME=' | sort",
            'id',
            'pwd',
            'umask',
            'hostname',
            'cat /etc/hosts',
            '(cat /etc/hostname 2>&1)',
            '(touch /etc/hosts /etc/resolv.conf 2>&1; echo $?)',
            "ls -ln /dev /dev/shm /dev/pts /run 2>&1 | sed -E 's/ [A-Z][a-z]{2} [ 0-9]{2} [ 0-9:]{5} / /' | grep -v ' core -> '",
          ])} > ${r.pick(['/w/info', '/tmp/info'])}`;
    default:
      return `rm -f ${f} && echo re > ${f}`;
  }
}

function genRun(r: Rng): Line {
  const n = r.int(1, 4);
  const ops = Array.from({ length: n }, () => genOp(r));
  // Every operation may fail (a path another one removed): `;` keeps going and the last `true` keeps the step valid.
  return { head: 'RUN ', parts: [...ops, 'true'], sep: ' ; ' };
}

interface StageState {
  readonly name: string;
  readonly index: number;
}

function ctxSource(r: Rng, ctx: readonly ContextEntry[]): string {
  const e = r.pick(ctx);
  switch (r.int(0, 7)) {
    case 0:
      return '*.txt';
    case 1:
      return r.pick(['src/*.ts', 'src/*', 'd*', 'keep/k?', '*.md', '.']);
    case 2:
      return `${e.path}/`.replace(/\/+$/, e.type === 'dir' ? '/' : '');
    default:
      return e.path;
  }
}

function genCopy(r: Rng, ctx: readonly ContextEntry[], earlier: readonly StageState[]): Line {
  const flags: string[] = [];
  const fromStage = earlier.length > 0 && r.chance(0.3) ? r.pick(earlier) : undefined;
  if (fromStage) flags.push(`--from=${r.chance(0.8) ? fromStage.name : String(fromStage.index)}`);
  if (r.chance(0.3)) flags.push(`--chown=${r.pick(OWNERS)}`);
  if (r.chance(0.25)) flags.push(`--chmod=${r.pick(['600', '755', '644', '700', '0444', '1777'])}`);
  const kw = !fromStage && r.chance(0.2) ? 'ADD' : 'COPY';
  const n = r.int(1, 3);
  // Sources from a stage: mostly paths its base has, sometimes ones an earlier RUN may have made.
  const srcs = fromStage
    ? Array.from({ length: n }, () =>
        r.chance(0.6) ? r.pick(['/etc/passwd', '/bin/true', '/etc', '/bin/s*', '/root', '/tmp']) : r.pick(['/w', '/w/f1', '/w/d1', '/w/*', '/etc/fz.conf', '/w/l1', '/w/h1']),
      )
    : Array.from({ length: n }, () => ctxSource(r, ctx));
  // Several sources need a directory destination (BuildKit 20.10 and kiln disagree on the other case: finding F9).
  const dirDests = ['/dst/', '/w/', '/w/d1/', 'rel/', '.', '/app/$A/', '/etc/', '/tmp/'];
  const dest = new Set(srcs).size > 1 && r.chance(0.9) ? r.pick(dirDests) : r.pick([...dirDests, '/dst', '/w/f1']);
  return { head: `${kw} ${flags.map((f) => `${f} `).join('')}`, parts: [...new Set(srcs), dest], sep: ' ' };
}

function genMeta(r: Rng): Line {
  switch (r.int(0, 13)) {
    case 0:
    case 1:
      return { head: `WORKDIR ${r.pick(['/w', '/w/d1', 'sub', '/app', '$D', '/w/d1/../d3', '/new/deep/dir', '${D:-/dflt}'])}` };
    case 2:
      return { head: `USER ${r.pick(['root', '1000', '1000:1000', 'nobody', '0', '${U}', '65534:65534'])}` };
    case 3:
    case 4:
      return { head: r.pick([`ENV E1=${r.pick(WORDS.filter((w) => w && !w.includes(' ')))}`, 'ENV D=/w/d3', 'ENV E2="a b" E3=$E1', 'ENV PATH=/w/bin:$PATH', 'ENV U=1000', 'ENV A=$A-env', 'ENV E1 spaced value']) };
    case 5:
    case 6:
      return { head: r.pick(['ARG A', 'ARG A=argval', 'ARG B=2', 'ARG D=/w/argdir', 'ARG U=nobody', 'ARG E1']) };
    case 7:
      return { head: r.pick(['LABEL l1=v1', 'LABEL "l 2"="v 2" l3=$A', 'LABEL l1=override']) };
    case 8:
      return { head: r.pick(['EXPOSE 80', 'EXPOSE 53/udp 8080/tcp', 'EXPOSE $B']) };
    case 9:
      return { head: r.pick(['CMD ["sh", "-c", "echo hi"]', 'CMD echo $E1', 'ENTRYPOINT ["/bin/sh"]', 'ENTRYPOINT echo entry', 'CMD []']) };
    case 10:
      return { head: r.pick(['VOLUME /w/d1', 'VOLUME ["/vol"]', 'STOPSIGNAL SIGINT', 'STOPSIGNAL 9']) };
    case 11:
      return { head: r.pick(['SHELL ["/bin/sh", "-x", "-c"]', 'HEALTHCHECK --interval=5s CMD true', 'HEALTHCHECK NONE']) };
    default:
      return { head: r.pick(['ONBUILD RUN echo later', 'ENV E1=', 'ARG A=other']) };
  }
}

function genStage(r: Rng, index: number, ctx: readonly ContextEntry[], earlier: readonly StageState[]): Stage {
  const name = `s${index}`;
  const from = earlier.length > 0 && r.chance(0.3) ? r.pick(earlier).name : 'busybox';
  const lines: Line[] = [];
  const n = r.int(2, 9);
  for (let i = 0; i < n; i++) {
    const k = r.next();
    if (k < 0.4) lines.push(genRun(r));
    else if (k < 0.62) lines.push(genCopy(r, ctx, earlier));
    else if (k < 0.9) lines.push(genMeta(r));
    else if (lines.length > 0) lines.push(r.pick(lines)); // the same step again: identical layers in one stack
    else lines.push({ head: 'RUN true' });
  }
  if (r.chance(0.15)) lines.push({ head: 'RUN true' }, { head: 'RUN true' });
  return { from, name, lines };
}

/** The case of one seed. */
export function generateCase(seed: number): FuzzCase {
  const r = makeRng(seed);
  const context = genContext(r);
  const dockerignore = genIgnore(r);
  const preamble: Line[] = r.chance(0.2) ? [{ head: r.pick(['ARG A=global', 'ARG B', 'ARG D=/w/glob']) }] : [];
  const nStages = r.chance(0.6) ? 1 : r.int(2, 3);
  const stages: Stage[] = [];
  for (let i = 0; i < nStages; i++) stages.push(genStage(r, i, context, stages.map((s, index) => ({ name: s.name, index }))));
  return { seed, preamble, stages, context, dockerignore };
}

// ---------------------------------------------------------------------------------------------
// Shrinking: every case one step smaller than `c` (drop a stage, an instruction, a RUN operation, a
// context entry, a .dockerignore line, the .dockerignore), the biggest steps first.

export function* smallerCases(c: FuzzCase): Generator<FuzzCase> {
  const withStages = (stages: Stage[]): FuzzCase => ({ ...c, stages });
  for (let i = 0; i < c.stages.length - 1; i++) yield withStages(c.stages.filter((_, j) => j !== i));
  for (let i = 0; i < c.preamble.length; i++) yield { ...c, preamble: c.preamble.filter((_, j) => j !== i) };
  for (const [si, s] of c.stages.entries()) {
    for (let i = s.lines.length - 1; i >= 0; i--) {
      const stages = [...c.stages];
      stages[si] = { ...s, lines: s.lines.filter((_, j) => j !== i) };
      yield withStages(stages);
    }
  }
  for (const [si, s] of c.stages.entries()) {
    for (const [li, l] of s.lines.entries()) {
      const parts = l.parts ?? [];
      // RUN operations (the last, `true`, stays) and COPY sources (the destination stays).
      const droppable = l.head.startsWith('RUN') || l.head.startsWith('COPY') || l.head.startsWith('ADD') ? parts.length - 1 : 0;
      if (droppable < (l.head.startsWith('RUN') ? 1 : 2)) continue;
      for (let k = 0; k < droppable; k++) {
        const stages = [...c.stages];
        const lines = [...s.lines];
        lines[li] = { ...l, parts: parts.filter((_, j) => j !== k) };
        stages[si] = { ...s, lines };
        yield withStages(stages);
      }
    }
  }
  if (c.stages.length > 1) {
    for (let i = 0; i < c.stages.length; i++) {
      const s = c.stages[i] as Stage;
      if (s.from !== 'busybox') {
        const stages = [...c.stages];
        stages[i] = { ...s, from: 'busybox' };
        yield withStages(stages);
      }
    }
  }
  if (c.dockerignore !== undefined) {
    yield { ...c, dockerignore: undefined };
    for (let i = 0; i < c.dockerignore.length; i++) yield { ...c, dockerignore: c.dockerignore.filter((_, j) => j !== i) };
  }
  // Context entries in halves, quarters, … first: most of a context rarely matters.
  const without = (drop: readonly ContextEntry[]): FuzzCase => ({
    ...c,
    context: c.context.filter((x) => !drop.some((e) => x === e || x.path.startsWith(`${e.path}/`))),
  });
  for (let size = c.context.length >> 1; size > 1; size >>= 1) {
    for (let i = 0; i < c.context.length; i += size) yield without(c.context.slice(i, i + size));
  }
  for (let i = c.context.length - 1; i >= 0; i--) {
    const e = c.context[i] as ContextEntry;
    // A directory goes with everything under it.
    yield { ...c, context: c.context.filter((x) => x !== e && !x.path.startsWith(`${e.path}/`)) };
  }
}
