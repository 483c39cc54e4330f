/**
 * A small fixed-seed sample of every fuzz target (test/fuzz/targets.ts), so that `npm test` catches a
 * regression of what `npm run fuzz` checks at length: no crash and only the documented error types.
 * (Hangs and memory growth are the long runner's to catch: scripts/fuzz.ts.)
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { LayerStore } from '../../src/store/layer-store.js';
import { TARGETS, type FuzzEnv, type TargetName } from './targets.js';

// tmpfs where there is one: the tar target extracts into a fresh directory per case.
const scratch = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'kiln-fuzz-sample-'));
after(() => rm(scratch, { recursive: true, force: true }));
let store: LayerStore | undefined;
const env: FuzzEnv = { scratch, store: async () => (store ??= await LayerStore.open(join(scratch, 'store'))) };

const SAMPLE: Record<TargetName, number> = { parser: 1000, shell: 1000, dockerignore: 1000, tar: 250, import: 40 };

for (const name of Object.keys(TARGETS) as TargetName[]) {
  test(`fuzz sample: ${name} (${String(SAMPLE[name])} cases, seed 1) gives only documented errors`, async () => {
    const target = TARGETS[name] as unknown as { arbitrary: fc.Arbitrary<unknown>; check(i: unknown, e: FuzzEnv): Promise<string> | string };
    await fc.assert(fc.asyncProperty(target.arbitrary, async (input) => { await target.check(input, env); }), { numRuns: SAMPLE[name], seed: 1 });
  });
}
