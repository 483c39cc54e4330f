/**
 * Runtime benchmark report: the per-step container overhead (bench/runtime-container.ts) and the
 * snapshot throughput against `tar | sha256sum` floors plus peak RSS at 200 MB vs 1 GB (bench/snapshot.ts),
 * in one table with ratios.
 *
 *   npm run bench:runtime -- [--runs 20] [--no-rss]
 *
 * Ratios: kiln / floor (below 1 means kiln beat the floor). The container step is also set against
 * BuildKit's cost of one RUN step, ~0.08 s, measured by ../shared/bench/peers (a different run, so
 * that ratio is indicative only; `npm run bench` measures the builds side by side). Nothing asserts a time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchContainerOverhead } from './runtime-container.js';
import { benchShell, closeBenchShell } from './shell-runner.js';
import { compareOnTree, makeBigFileTree, makeSmallFilesTree, snapshotPeakRss } from './snapshot.js';

/** BuildKit's wall time per RUN step in ../shared/bench/peers/README.md (steps10: ~0.08 s each). */
const BUILDKIT_RUN_STEP_MS = 80;

/** One report row: what was measured, kiln's number, the floor's, and their ratio. */
export interface RuntimeRow {
  readonly what: string;
  readonly kiln: string;
  readonly floor: string;
  readonly ratio: number | undefined;
}

const s = (x: number): string => `${x.toFixed(2)} s`;
const num = (r: Record<string, number | string>, k: string): number => {
  const v = r[k];
  if (typeof v !== 'number') throw new Error(`bench/snapshot.ts result has no number ${k}`);
  return v;
};

/** Renders rows as a fixed-width table. */
export function renderRows(rows: readonly RuntimeRow[]): string {
  const w = [44, 22, 30, 8] as const;
  const line = (c: readonly string[]) => c.map((x, i) => (i === 0 ? x.padEnd(w[0]) : x.padStart(w[i as 1 | 2 | 3]))).join('  ');
  return [line(['measurement', 'kiln', 'floor', 'ratio']), ...rows.map((r) => line([r.what, r.kiln, r.floor, r.ratio === undefined ? '-' : `${r.ratio.toFixed(2)}x`]))].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' }, 'no-rss': { type: 'boolean', default: false } } });
  const runs = Number(values.runs);
  const log = (m: string) => process.stderr.write(`${m}\n`);
  const rows: RuntimeRow[] = [];
  benchShell(); // the one fork of this process, before anything is measured (see bench/shell-runner.ts)

  log(`container overhead: ${runs} runs of /bin/true…`);
  const c = await benchContainerOverhead(runs);
  rows.push({
    what: `RUN step overhead incl. snapshot (${c.runtime}, median)`,
    kiln: `${c.medianMs.toFixed(0)} ms`,
    floor: `BuildKit RUN ~${BUILDKIT_RUN_STEP_MS} ms (README)`,
    ratio: c.medianMs / BUILDKIT_RUN_STEP_MS,
  });
  rows.push({ what: '  min / max', kiln: `${c.minMs.toFixed(0)} / ${c.maxMs.toFixed(0)} ms`, floor: '', ratio: undefined });
  rows.push({ what: '  of which the container alone', kiln: `${c.containerMedianMs.toFixed(0)} ms`, floor: 'target 50 ms for the step', ratio: undefined });
  rows.push({ what: 'abort → cleaned up (median)', kiln: `${c.abortMedianMs.toFixed(0)} ms`, floor: '', ratio: undefined });

  const work = await mkdtemp(path.join(tmpdir(), 'kiln-bench-runtime-'));
  try {
    const trees: Array<[string, (dir: string) => Promise<void>]> = [
      ['200MB-file', (d) => makeBigFileTree(d, 200)],
      ['5000-small-files', (d) => makeSmallFilesTree(d, 5000)],
    ];
    for (const [label, make] of trees) {
      log(`snapshot: ${label}…`);
      const dir = path.join(work, label);
      await make(dir);
      const r = await compareOnTree(label, dir, work);
      const tar = num(r, 'tarSha256');
      const tarGz = num(r, 'tarGzip1Sha256');
      rows.push({
        what: `${label}: snapshot as a blob, median`,
        kiln: s(num(r, 'kilnSnapshotBlobMedian')),
        floor: `tar|sha256sum ${s(num(r, 'tarSha256Median'))}`,
        ratio: num(r, 'ratioBlobSnapshotVsTarMedians'),
      });
      // What a build step does: the diffID only (the upperdir itself becomes the stored layer), against the
      // floor's median over the same interleaved runs.
      rows.push({
        what: `${label}: diffID only (a build step), median`,
        kiln: s(num(r, 'kilnSnapshotLazy')),
        floor: `tar|sha256sum ${s(num(r, 'tarSha256Median'))}`,
        ratio: num(r, 'ratioLazySnapshotVsTarMedians'),
      });
      rows.push({
        what: `${label}: gzip -1 layer in one pass, median`,
        kiln: s(num(r, 'kilnLazyGzip1Median')),
        floor: `tar|gzip -1|sha256sum ${s(num(r, 'tarGzip1Sha256Median'))}`,
        ratio: num(r, 'ratioLazyGzip1VsTarGzip1Medians'),
      });
      rows.push({
        what: `${label}: snapshot + gzip -6`,
        kiln: s(num(r, 'kilnSnapshot') + num(r, 'kilnGzip6')),
        floor: `tar|gzip -1|sha256sum ${s(tarGz)}`,
        ratio: num(r, 'ratioSnapshotPlusGzip6VsTarGzip1'),
      });
      rows.push({
        what: `${label}: snapshot + gzip -1`,
        kiln: s(num(r, 'kilnSnapshot') + num(r, 'kilnGzip1')),
        floor: `tar|gzip -1|sha256sum ${s(tarGz)}`,
        ratio: num(r, 'ratioSnapshotPlusGzip1VsTarGzip1'),
      });
      rows.push({ what: `${label}: zstd of the layer`, kiln: s(num(r, 'kilnZstd')), floor: '', ratio: undefined });
      if (label !== '200MB-file' || values['no-rss']) await rm(dir, { recursive: true, force: true });
      await rm(path.join(work, `store-${label}`), { recursive: true, force: true });
      await rm(path.join(work, `store-${label}-l1`), { recursive: true, force: true });
    }

    if (!values['no-rss']) {
      log('peak RSS: snapshot of 200 MB, then of 1 GB…');
      const rss200 = snapshotPeakRss(path.join(work, '200MB-file'), path.join(work, 'rss-200'));
      await rm(path.join(work, 'rss-200'), { recursive: true, force: true });
      await rm(path.join(work, '200MB-file'), { recursive: true, force: true });
      const huge = path.join(work, '1GB-file');
      await makeBigFileTree(huge, 1024);
      const rss1g = snapshotPeakRss(huge, path.join(work, 'rss-1g'));
      const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
      rows.push({ what: 'peak RSS, snapshot of 1 GB vs 200 MB', kiln: mb(rss1g), floor: mb(rss200), ratio: rss1g / rss200 });
    }
  } finally {
    closeBenchShell();
    await rm(work, { recursive: true, force: true });
  }
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  process.stdout.write(`\nkiln runtime benchmark (load average ${load}; 2 vCPU, other work may be running)\n\n${renderRows(rows)}\n`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
