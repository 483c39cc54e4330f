/**
 * `npm run bench:parse`: parser throughput over the real-world corpus (kiln vs the npm parsers
 * `dockerfile-ast` and `docker-file-parser`), and a linearity check (1 MB vs 5 MB input).
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

// Linearity: a synthetic file of realistic instructions, 1 MB vs 5 MB.
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
function timeOne(text: string): number {
  parseDockerfile(text);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    parseDockerfile(text);
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}
const one = timeOne(synthetic(1e6));
const five = timeOne(synthetic(5e6));
console.log(`linearity (parseDockerfile): 1 MB ${one.toFixed(0)} ms, 5 MB ${five.toFixed(0)} ms, ratio ${(five / one).toFixed(2)} (linear ≈ 5)`);
