/**
 * The life of a filesystem-changing step: a fresh upperdir over the parent layers, the step's work,
 * then the upperdir becomes the new layer twice over: snapshotted into a content-addressed layer
 * blob, and renamed into the store as that layer's unpacked form (the next step's lowerdir), so
 * nothing is extracted again. Whatever happens, the scratch directory is removed.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '../image/types.js';
import type { LayerInfo, LayerStoreApi } from '../store/types.js';
import { snapshotIntoLayer } from '../store/snapshot.js';
import { mountOverlay } from './overlay.js';

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
  await mkdir(path.join(store.root, 'tmp'), { recursive: true });
  const scratch = await mkdtemp(path.join(store.root, 'tmp', 'step-'));
  try {
    const dirs: StepDirs = { lowerDirs, upperDir: path.join(scratch, 'upper'), workDir: path.join(scratch, 'work'), scratch };
    await mkdir(dirs.upperDir);
    await mkdir(dirs.workDir);
    const value = await work(dirs);
    options.signal?.throwIfAborted();
    // Lazy layer: only the diffID is computed; the upperdir itself becomes the stored layer, and its tar
    // is regenerated (verified) only when an export or push needs it.
    const { layer } = await snapshotIntoLayer(dirs.upperDir, store, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {}),
    });
    return { layer, value };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Mounts the step's overlay (parents + upperdir) at a private mount point while `fn` runs, for steps
 * that change files from the host side (COPY, ADD, WORKDIR) with the image's view of paths and users.
 */
export async function withMergedRootfs<T>(dirs: StepDirs, signal: AbortSignal | undefined, fn: (rootfs: string) => Promise<T>): Promise<T> {
  const target = path.join(dirs.scratch, 'merged');
  await mkdir(target);
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
