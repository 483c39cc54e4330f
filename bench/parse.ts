/**
 * `npm run bench:parse`: parser throughput over the real-world corpus (kiln vs the npm parsers
 * `dockerfile-ast` and `docker-file-parser`), and a linearity check (1, 5 and 10 MB input).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
import { parseDockerfile } from '../src/parser/parse.js';

const require = createRequire(import.meta.url);
const repoRoot = resolve(import.meta.dirname, '..');
const shared = process.env['KILN_SHARED'] ?? resolve(repoRoot, '..', 'shared');
const dir = join(shared, 'corpus', 'real-world');
const allFiles = readdirSync(dir).filter((f) => f.endsWith('.Dockerfile')).sort().map((f) => readFileSync(join(dir, f), 'utf8'));

type ParseFn = (text: string) => unknown;

// The typed layer (src/parser/index.ts `parse`) is used when it exists; else the line-level AST.
let kilnName = 'kiln parseDockerfile (line-level AST)';
let kiln: ParseFn = (t) => parseDockerfile(t);
const indexPath = join(repoRoot, 'src', 'parser', 'index.ts');
if (existsSync(indexPath)) {
  try {
    const mod = (await import('../src/parser/index.js' as string)) as { parse?: ParseFn };
    if (typeof mod.parse === 'function') {
      const p = mod.parse;
      kiln = (t) => p(t);
      kilnName = 'kiln parse (typed AST)';
    }
  } catch (err) {
    console.error(`typed parse unavailable (${String(err)}); benchmarking parseDockerfile`);
  }
}

const { DockerfileParser } = require('dockerfile-ast') as { DockerfileParser: { parse(t: string): unknown } };
const dfp = require('docker-file-parser') as { parse(t: string): unknown };
const contenders: [string, ParseFn][] = [
  [kilnName, kiln],
  ...(kiln === undefined || kilnName.includes('line-level') ? [] : [['kiln parseDockerfile (line-level AST)', (t: string) => parseDockerfile(t)] as [string, ParseFn]]),
  ['dockerfile-ast DockerfileParser.parse', (t) => DockerfileParser.parse(t)],
  ['docker-file-parser parse', (t) => dfp.parse(t)],
];

// Every contender runs on the same files: those all of them accept (the typed layer rejects
// unknown instructions, which BuildKit's parser keeps).
const files = allFiles.filter((f) => contenders.every(([, fn]) => {
  try {
    fn(f);
    return true;
  } catch {
    return false;
  }
}));
const bytes = files.reduce((n, f) => n + Buffer.byteLength(f), 0);

function timeCorpus(fn: ParseFn): number {
  for (const f of files) fn(f); // warm-up
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t0 = performance.now();
    for (const f of files) fn(f);
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

console.log(`corpus: ${files.length} of ${allFiles.length} files (accepted by every parser), ${(bytes / 1e6).toFixed(2)} MB, best of 5 rounds`);
const rows = contenders.map(([name, fn]) => {
  const ms = timeCorpus(fn);
  return { name, ms, mbs: bytes / 1e6 / (ms / 1000), fps: files.length / (ms / 1000) };
});
const kilnRow = rows[0]!;
for (const r of rows) {
  const ratio = r === kilnRow ? '' : `  (kiln is ${(kilnRow.mbs / r.mbs).toFixed(2)}x)`;
  console.log(`${r.name.padEnd(42)} ${r.mbs.toFixed(1).padStart(7)} MB/s ${r.fps.toFixed(0).padStart(7)} files/s${ratio}`);
}

// Linearity: a synthetic file of realistic instructions at 1, 5 and 10 MB. Wall time on a busy
// machine mostly measures how long GC waits for its helper threads, so CPU time (all threads of
// this process) is printed too.
function synthetic(size: number): string {
  const block = [
    '# build stage',
    'FROM debian:bookworm-slim AS build',
    'ARG VERSION=1.2.3',
    'ENV PATH=/usr/local/bin:$PATH LANG=C.UTF-8',
    'RUN set -eux; \\',
    '    apt-get update; \\',
    '    apt-get install -y --no-install-recommends ca-certificates curl; \\',
    '    rm -rf /var/lib/apt/lists/*',
    'COPY --chown=1000:1000 ["src", "/app/src"]',
    'RUN <<EOF',
    'echo hello',
    'EOF',
    'CMD ["/app/run", "--port", "8080"]',
    '',
  ].join('\n');
  return block.repeat(Math.ceil(size / block.length));
}

interface Timing { wall: number; cpu: number }
/** The fastest of three runs (after a warm-up), by wall time. */
function timeOne(fn: ParseFn, text: string): Timing {
  fn(text);
  let best: Timing | undefined;
  for (let i = 0; i < 3; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    fn(text);
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    const t = { wall, cpu: (c.user + c.system) / 1000 };
    if (!best || t.wall < best.wall) best = t;
  }
  return best!;
}
const linear: [string, ParseFn][] = [['parseDockerfile', (t) => parseDockerfile(t)]];
if (!kilnName.includes('line-level')) linear.push(['parse (typed)', kiln]);
for (const [name, fn] of linear) {
  const runs: [number, Timing][] = [];
  for (const mb of [1, 5, 10]) runs.push([mb, timeOne(fn, synthetic(mb * 1e6))]);
  const [, first] = runs[0]!;
  for (const [mb, t] of runs) {
    const ratio = mb === 1 ? '' : `  ratio vs 1 MB: wall ${(t.wall / first.wall).toFixed(2)}, cpu ${(t.cpu / first.cpu).toFixed(2)} (linear ${mb})`;
    console.log(`linearity ${name} ${String(mb).padStart(2)} MB: wall ${t.wall.toFixed(0).padStart(5)} ms, cpu ${t.cpu.toFixed(0).padStart(5)} ms${ratio}`);
  }
}
