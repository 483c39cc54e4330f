/**
 * Per-step overhead of a RUN step as issue 3 defines it: overlay mount, bundle, the runtime's `run` of
 * `true`, teardown, and the snapshot of the (empty) diff into a layer store. The container part alone
 * is reported too.
 * `npm run bench:runtime` combines it with the snapshot bench; run alone with
 * `node --import tsx bench/runtime-container.ts [runs]`.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runContainer } from '../src/runtime/container.js';
import { detectRuntime } from '../src/runtime/oci-runtime.js';
import { LayerStore } from '../src/store/layer-store.js';
import { snapshotIntoLayer } from '../src/store/snapshot.js';
import { makeBusyboxRootfs } from '../test/helpers/busybox-rootfs.js';

/** What {@link benchContainerOverhead} measured, in milliseconds. */
export interface ContainerOverhead {
  readonly runtime: string;
  readonly runs: number;
  /** The whole step: container plus the snapshot of its empty diff into the store. */
  readonly medianMs: number;
  /** The container alone (mount, run, teardown). */
  readonly containerMedianMs: number;
  readonly minMs: number;
  readonly maxMs: number;
  /** Median time from `abort()` during a `sleep 30` to the rejected promise (everything cleaned up). */
  readonly abortMedianMs: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * Runs `true` in a fresh container `runs` times (after one warm-up run) over a busybox lower layer,
 * each with a fresh upper/work dir, and returns the median wall time of the whole `runContainer` call.
 * @default runs 20
 */
export async function benchContainerOverhead(runs = 20): Promise<ContainerOverhead> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-run-'));
  try {
    const lower = path.join(dir, 'lower');
    await mkdir(lower);
    await makeBusyboxRootfs(lower);
    const runtime = await detectRuntime('auto');
    let n = 0;
    const fresh = async () => {
      const base = path.join(dir, `s${n++}`);
      await mkdir(path.join(base, 'u'), { recursive: true });
      await mkdir(path.join(base, 'w'));
      return { lowerDirs: [lower], upperDir: path.join(base, 'u'), workDir: path.join(base, 'w') };
    };
    const store = await LayerStore.open(path.join(dir, 'store'));
    const samples: number[] = [];
    const containerSamples: number[] = [];
    for (let i = 0; i <= runs; i++) {
      const rootfs = await fresh();
      const start = performance.now();
      const r = await runContainer({ rootfs, args: ['/bin/true'], env: [], cwd: '/', network: 'none' }, { runtimeInfo: runtime });
      if (r.exitCode !== 0) throw new Error(`true exited ${r.exitCode}: ${r.outputTail}`);
      const ran = performance.now();
      await snapshotIntoLayer(rootfs.upperDir, store);
      if (i > 0) {
        samples.push(performance.now() - start);
        containerSamples.push(ran - start);
      }
    }
    const aborts: number[] = [];
    for (let i = 0; i < Math.min(5, runs); i++) {
      const controller = new AbortController();
      let abortedAt = 0;
      const p = runContainer(
        { rootfs: await fresh(), args: ['/bin/sh', '-c', 'echo up; sleep 30'], env: ['PATH=/bin'], cwd: '/', network: 'none' },
        {
          runtimeInfo: runtime,
          signal: controller.signal,
          onOutput: () => {
            abortedAt = performance.now();
            controller.abort();
          },
        },
      );
      await p.catch(() => undefined);
      aborts.push(performance.now() - abortedAt);
    }
    return {
      runtime: `${runtime.name} ${runtime.version}`,
      runs,
      medianMs: median(samples),
      containerMedianMs: median(containerSamples),
      minMs: Math.min(...samples),
      maxMs: Math.max(...samples),
      abortMedianMs: median(aborts),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await benchContainerOverhead(Number(process.argv[2] ?? 20));
  console.log(
    `RUN step (${r.runtime}, ${r.runs} runs): median ${r.medianMs.toFixed(1)} ms (min ${r.minMs.toFixed(1)}, max ${r.maxMs.toFixed(1)}), container alone ${r.containerMedianMs.toFixed(1)} ms; abort → cleaned up: median ${r.abortMedianMs.toFixed(1)} ms`,
  );
}
