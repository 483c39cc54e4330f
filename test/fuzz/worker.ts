/**
 * Runs one fuzz target inside a worker thread (started by scripts/fuzz.ts). Before each case it copies the
 * case's JSON into shared memory and after it bumps a shared counter, so that the parent can tell a hang (the
 * counter stops) and name the input even after it had to terminate this thread.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import { LayerStore } from '../../src/store/layer-store.js';
import { TARGETS, type FuzzEnv, type TargetName } from './targets.js';
import { encodeCase } from './codec.js';

interface Data {
  target: TargetName;
  cases: number;
  seed: number;
  counter: SharedArrayBuffer;
  input: SharedArrayBuffer;
}
const data = workerData as Data;
const counter = new Int32Array(data.counter);
const inputBytes = new Uint8Array(data.input, 4);
const inputLen = new Int32Array(data.input, 0, 1);
const encoder = new TextEncoder();

function record(input: unknown): void {
  const { written } = encoder.encodeInto(encodeCase(input), inputBytes);
  inputLen[0] = written;
}

const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
const scratch = await mkdtemp(join(base, `kiln-fuzz-${data.target}-`));
let store: LayerStore | undefined;
const env: FuzzEnv = { scratch, store: async () => (store ??= await LayerStore.open(join(scratch, 'store'))) };
const target = TARGETS[data.target] as unknown as { arbitrary: fc.Arbitrary<unknown>; check(i: unknown, e: FuzzEnv): Promise<string> | string };
const outcomes: Record<string, number> = {};
const count = (o: string): void => {
  outcomes[o] = (outcomes[o] ?? 0) + 1;
  Atomics.add(counter, 0, 1);
};
const sync = data.target === 'parser' || data.target === 'shell' || data.target === 'dockerignore';
const params = { numRuns: data.cases, seed: data.seed };
const result = sync
  ? fc.check(fc.property(target.arbitrary, (i) => { record(i); count(target.check(i, env) as string); }), params)
  : await fc.check(fc.asyncProperty(target.arbitrary, async (i) => { record(i); count(await target.check(i, env)); }), params);
await rm(scratch, { recursive: true, force: true });
parentPort?.postMessage({
  outcomes,
  failed: result.failed,
  numRuns: result.numRuns,
  counterexample: result.counterexample ? encodeCase(result.counterexample[0]) : undefined,
  error: result.errorInstance instanceof Error ? `${result.errorInstance.name}: ${result.errorInstance.message}\n${result.errorInstance.stack ?? ''}` : result.failed ? String(result.errorInstance) : undefined,
});
