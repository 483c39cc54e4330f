/**
 * The life of a filesystem-changing step: a fresh upperdir over the parent layers, the step's work,
 * then the upperdir becomes the new layer twice over: snapshotted into a content-addressed layer
 * blob, and renamed into the store as that layer's unpacked form (the next step's lowerdir), so
 * nothing is extracted again. Whatever happens, the scratch directory is removed.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, readdir, rm, utimes } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import type { Digest } from '../image/types.js';
import type { LayerInfo, LayerStoreApi } from '../store/types.js';
import { snapshotIntoLayer } from '../store/snapshot.js';

export interface StepDirs {
  /** The parent layers' unpacked dirs, top-most first (overlay lowerdir order). */
  readonly lowerDirs: readonly string[];
  readonly upperDir: string;
  readonly workDir: string;
  /** A private scratch directory for the step (bundle files, mount points). */
  readonly scratch: string;
}

export interface StepLayerOptions {
  readonly signal?: AbortSignal;
  readonly sourceDateEpoch?: number;
}

/** The unpacked dirs of `diffIds` (bottom-most first, as in an image config), top-most first. */
export async function lowerDirsOf(store: LayerStoreApi, diffIds: readonly Digest[], signal?: AbortSignal): Promise<string[]> {
  // allSettled, not all: when one unpack fails, the others must not go on in the background after the
  // build has rejected (they would hold the event loop open and leave temp dirs behind).
  const settled = await Promise.allSettled(diffIds.map((d) => store.unpackedLayer(d, signal ? { signal } : {})));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<string>).value).reverse();
}

/**
 * Runs `work` with fresh step directories over `parentDiffIds`, then turns the upperdir into a layer.
 * Returns the layer and what `work` returned.
 */
export async function withStepLayer<T>(
  store: LayerStoreApi,
  parentDiffIds: readonly Digest[],
  options: StepLayerOptions,
  work: (dirs: StepDirs) => Promise<T>,
): Promise<{ layer: LayerInfo; value: T }> {
  const lowerDirs = await lowerDirsOf(store, parentDiffIds, options.signal);
  // Synchronous: four tiny metadata calls, each far cheaper than an awaited threadpool round trip.
  mkdirSync(path.join(store.root, 'tmp'), { recursive: true });
  const scratch = mkdtempSync(path.join(store.root, 'tmp', 'step-'));
  let adopted = false;
  try {
    const dirs: StepDirs = { lowerDirs, upperDir: path.join(scratch, 'upper'), workDir: path.join(scratch, 'work'), scratch };
    mkdirSync(dirs.upperDir);
    mkdirSync(dirs.workDir);
    const value = await work(dirs);
    options.signal?.throwIfAborted();
    // Lazy layer: only the diffID is computed; the upperdir itself becomes the stored layer, and its tar
    // is regenerated (verified) only when an export or push needs it.
    const { layer } = await snapshotIntoLayer(dirs.upperDir, store, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {}),
    });
    adopted = true;
    return { layer, value };
  } finally {
    // After a snapshot only the overlay's empty workdir is left: removed in place. After a failure the
    // upperdir may be large, and goes without blocking the event loop.
    if (adopted) rmSync(scratch, { recursive: true, force: true });
    else await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Mounts the step's overlay (parents + upperdir) at a private mount point while `fn` runs, for steps
 * that change files from the host side (COPY, ADD, WORKDIR) with the image's view of paths and users.
 */
export async function withMergedRootfs<T>(dirs: StepDirs, signal: AbortSignal | undefined, fn: (rootfs: string) => Promise<T>): Promise<T> {
  const target = path.join(dirs.scratch, 'merged');
  await mkdir(target);
  // Loaded on use: execa stays out of a cached build's start-up.
  const { mountOverlay } = await import('./overlay.js');
  const mount = await mountOverlay({
    lowerDirs: dirs.lowerDirs,
    upperDir: dirs.upperDir,
    workDir: dirs.workDir,
    target,
    ...(signal ? { signal } : {}),
  });
  try {
    return await fn(target);
  } finally {
    await mount.unmount();
  }
}

/** The top-most lower entry at a container path (what the overlay shows), or undefined when none has it. */
async function lowerEntry(lowerDirs: readonly string[], containerPath: string): Promise<{ stats: Stats; dir: string } | undefined> {
  for (const dir of lowerDirs) {
    const stats = await lstat(path.join(dir, containerPath)).catch(() => undefined);
    if (stats) return { stats, dir };
  }
  return undefined;
}

/**
 * The fast path of host-side steps (WORKDIR, COPY): instead of mounting the overlay (two `mount`/`umount`
 * process spawns, a quarter of a second on a loaded machine), write straight into the upperdir. That is only
 * the same as writing through the overlay when nothing in the lower layers can interfere, so this checks:
 * every component of `containerDir` is a plain directory in the top-most lower that has it, or missing;
 * with `mustBeEmpty`, `containerDir` itself has no entries in any lower (so nothing written below it can
 * collide with a lower file, a whiteout or a symlink). Then it recreates the existing components in the
 * upperdir with their lower metadata, as overlay's copy-up would, and returns true. It returns false (and
 * writes nothing) when the caller must take the mounted path.
 */
export async function prepareDirectWrite(dirs: StepDirs, containerDir: string, mustBeEmpty: boolean): Promise<boolean> {
  const parts = containerDir.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) return false;
  const existing: Array<{ rel: string; stats: Stats }> = [];
  let rel = '';
  let missing = false;
  for (const part of parts) {
    rel = `${rel}/${part}`;
    if (missing) break; // below a missing directory nothing exists
    const found = await lowerEntry(dirs.lowerDirs, rel);
    if (!found) {
      missing = true;
      continue;
    }
    if (!found.stats.isDirectory()) return false; // a symlink, file or whiteout: let the overlay resolve it
    existing.push({ rel, stats: found.stats });
  }
  if (mustBeEmpty && !missing && parts.length > 0) {
    for (const dir of dirs.lowerDirs) {
      const names = await readdir(path.join(dir, rel)).catch(() => [] as string[]);
      if (names.length > 0) return false;
    }
  }
  if (mustBeEmpty && parts.length === 0) return false; // the root is never empty
  for (const e of existing) {
    const target = path.join(dirs.upperDir, e.rel);
    await mkdir(target);
    await chown(target, e.stats.uid, e.stats.gid);
    await chmod(target, e.stats.mode & 0o7777);
    await utimes(target, e.stats.atime, e.stats.mtime);
  }
  return true;
}
