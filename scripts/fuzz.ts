/**
 * `npm run fuzz -- [--target parser|shell|dockerignore|tar|import|all] [--cases N] [--seed S]
 *                  [--timeout SECONDS] [--max-rss-mb MB] [--replay FILE]`
 *
 * Long-running fuzzing of kiln's untrusted-input surfaces (see test/fuzz/targets.ts). Each target runs in a
 * worker thread of this one process (one core), watched from here: a case that makes no progress for
 * `--timeout` seconds is a hang, a process that grows past `--max-rss-mb` (or a worker heap past its limit) is
 * unbounded memory, and a case that throws anything but the target's documented error types is a crash. Each
 * finding is written as JSON to a file (printed) that `--replay FILE` runs again in this process.
 * Exit code 0 when nothing was found, 1 otherwise, 2 for a usage error.
 */
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { TARGETS, type TargetName, type FuzzEnv } from '../test/fuzz/targets.js';
import { decodeCase } from '../test/fuzz/codec.js';
import { LayerStore } from '../src/store/layer-store.js';

const INPUT_BYTES = 1 << 20;

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: 'all' },
    cases: { type: 'string', default: '10000' },
    seed: { type: 'string' },
    timeout: { type: 'string', default: '10' },
    'max-rss-mb': { type: 'string', default: '2048' },
    replay: { type: 'string' },
  },
});
const names = Object.keys(TARGETS) as TargetName[];
const wanted = values.target === 'all' ? names : (values.target ?? '').split(',');
for (const n of wanted) {
  if (!names.includes(n as TargetName)) {
    console.error(`fuzz: unknown target "${n}" (targets: ${names.join(', ')}, all)`);
    process.exit(2);
  }
}
const cases = Number(values.cases);
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 0x7fffffff;
const timeoutMs = Number(values.timeout) * 1000;
const maxRss = Number(values['max-rss-mb']) * 1024 * 1024;
if (![cases, seed, timeoutMs, maxRss].every((n) => Number.isSafeInteger(n) && n >= 0)) {
  console.error('fuzz: --cases, --seed, --timeout and --max-rss-mb take non-negative integers');
  process.exit(2);
}

if (values.replay !== undefined) {
  // One case, in this thread, with the error's stack.
  const finding = JSON.parse(await readFile(values.replay, 'utf8')) as { target: TargetName; input: string };
  const scratch = await mkdtemp(join(tmpdir(), 'kiln-fuzz-replay-'));
  let store: LayerStore | undefined;
  const env: FuzzEnv = { scratch, store: async () => (store ??= await LayerStore.open(join(scratch, 'store'))) };
  const target = TARGETS[finding.target] as unknown as { check(i: unknown, e: FuzzEnv): Promise<string> | string };
  try {
    console.log(`replay ${finding.target}: ${await target.check(decodeCase(finding.input), env)}`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  process.exit(0);
}

interface Done {
  outcomes: Record<string, number>;
  failed: boolean;
  numRuns: number;
  counterexample?: string;
  error?: string;
}

/** Runs one target in a worker; resolves with what it found. */
function runTarget(target: TargetName): Promise<{ done?: Done; finding?: { kind: string; input: string; detail: string }; ran: number; ms: number }> {
  const counterBuf = new SharedArrayBuffer(4);
  const inputBuf = new SharedArrayBuffer(4 + INPUT_BYTES);
  const counter = new Int32Array(counterBuf);
  const current = (): string => {
    const len = new Int32Array(inputBuf, 0, 1)[0] ?? 0;
    return Buffer.from(new Uint8Array(inputBuf, 4, len)).toString('utf8');
  };
  const started = Date.now();
  // The worker loads TypeScript through tsx's API: loader hooks registered with --import do not reach workers on Node 20.
  const workerUrl = new URL('../test/fuzz/worker.ts', import.meta.url).href;
  const boot = `import('tsx/esm/api').then(({ tsImport }) => tsImport(${JSON.stringify(workerUrl)}, ${JSON.stringify(import.meta.url)}))`;
  const worker = new Worker(boot, {
    eval: true,
    workerData: { target, cases, seed, counter: counterBuf, input: inputBuf },
    resourceLimits: { maxOldGenerationSizeMb: 1024 },
  });
  return new Promise((resolve) => {
    let last = 0;
    let lastAt = Date.now();
    let lastPrint = Date.now();
    let settled = false;
    const finish = (r: { done?: Done; finding?: { kind: string; input: string; detail: string } }): void => {
      if (settled) return;
      settled = true;
      clearInterval(watch);
      resolve({ ...r, ran: Atomics.load(counter, 0), ms: Date.now() - started });
    };
    const stop = (kind: string, detail: string): void => {
      const input = current();
      finish({ finding: { kind, input, detail } });
      void worker.terminate();
    };
    const watch = setInterval(() => {
      const n = Atomics.load(counter, 0);
      const now = Date.now();
      if (n !== last) {
        last = n;
        lastAt = now;
      } else if (now - lastAt > timeoutMs) {
        stop('hang', `no case finished for ${timeoutMs / 1000} s`);
        return;
      }
      const rss = process.memoryUsage.rss();
      if (rss > maxRss) {
        stop('memory', `the process grew to ${Math.round(rss / 1048576)} MiB`);
        return;
      }
      if (now - lastPrint > 30_000) {
        lastPrint = now;
        console.error(`fuzz: ${target}: ${n} cases, ${Math.round((n * 1000) / (now - started))}/s, rss ${Math.round(rss / 1048576)} MiB`);
      }
    }, 200);
    worker.on('message', (done: Done) => {
      if (done.failed) finish({ done, finding: { kind: 'crash', input: done.counterexample ?? '', detail: done.error ?? '' } });
      else finish({ done });
    });
    worker.on('error', (err) => finish({ finding: { kind: /ERR_WORKER_OUT_OF_MEMORY/.test(String((err as NodeJS.ErrnoException).code)) ? 'memory' : 'crash', input: current(), detail: String(err.stack ?? err) } }));
    worker.on('exit', (code) => finish({ finding: { kind: 'crash', input: current(), detail: `worker exited with code ${code}` } }));
  });
}

let findings = 0;
let total = 0;
for (const target of wanted as TargetName[]) {
  console.error(`fuzz: ${target}: ${cases} cases, seed ${seed}`);
  const r = await runTarget(target);
  total += r.ran;
  const outcomes = r.done ? Object.entries(r.done.outcomes).sort(([, a], [, b]) => b - a).map(([k, v]) => `${k} ${v}`).join(', ') : '';
  console.log(`fuzz: ${target}: seed ${seed}: ${r.ran} cases in ${(r.ms / 1000).toFixed(1)} s${outcomes ? ` (${outcomes})` : ''}`);
  if (r.finding) {
    findings++;
    const file = join(tmpdir(), `kiln-fuzz-${target}-${seed}-${r.finding.kind}.json`);
    await writeFile(file, JSON.stringify({ target, seed, kind: r.finding.kind, detail: r.finding.detail, input: r.finding.input }, null, 2));
    console.log(`fuzz: ${target}: FOUND ${r.finding.kind}: ${r.finding.detail.split('\n').slice(0, 6).join('\n  ')}`);
    console.log(`fuzz: ${target}: input ${r.finding.input.length > 600 ? `${r.finding.input.slice(0, 600)}…` : r.finding.input}`);
    console.log(`fuzz: ${target}: written to ${file} (replay: npm run fuzz -- --replay ${file})`);
  }
}
console.log(`fuzz: ${total} cases over ${wanted.length} targets, ${findings} finding(s)`);
process.exit(findings > 0 ? 1 : 0);
