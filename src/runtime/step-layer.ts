/**
 * The life of a filesystem-changing step: a fresh upperdir over the parent layers, the step's work,
 * then the upperdir becomes the new layer twice over: snapshotted into a content-addressed layer
 * blob, and renamed into the store as that layer's unpacked form (the next step's lowerdir), so
 * nothing is extracted again. Whatever happens, the scratch directory is removed.
 */
import { mkdirSync } from 'node:fs';
import { removeKnown } from '../store/remove-known.js';
import { chmod, chown, lstat, mkdir, readdir, rm, utimes } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import type { Digest } from '../oci/types.js';
import type { LayerInfo, LayerStoreApi } from '../store/types.js';
import { adoptHashedDir, hashDirForAdoption } from '../store/snapshot.js';
import { spreadSubdirs } from '../native/sys.js';
import { ownedName } from '../store/owner.js';
import type { OverlayCapabilities } from './overlay.js';

export interface StepDirs {
  /** The parent layers' unpacked dirs, top-most first (overlay lowerdir order). */
  readonly lowerDirs: readonly string[];
  readonly upperDir: string;
  readonly workDir: string;
  /** A private scratch directory for the step (bundle files, mount points). */
  readonly scratch: string;
  /** What the host's overlayfs accepts, for mounts of these directories (the build's {@link Host}). */
  readonly overlay?: OverlayCapabilities;
}

export interface StepLayerOptions {
  readonly signal?: AbortSignal;
  readonly sourceDateEpoch?: number;
  /** The host's overlay capabilities (`Host.overlay`), passed on in {@link StepDirs}. @default each mount learns them anew */
  readonly overlay?: OverlayCapabilities;
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
  const { pending, value } = await runStepLayer(store, parentDiffIds, undefined, options, work);
  return { layer: await pending.adopt(), value };
}

/**
 * A finished step whose layer is still to be hashed. Meanwhile its upperdir can already serve the next step
 * as the top-most lowerdir (read-only), so the hash of one step runs while the next step runs: on two cores
 * that takes the snapshot off the critical path (a 200 MB COPY's ~0.13 s, a few ms for a small RUN).
 *
 * The hash starts on {@link startHashing}, which the next step calls once its own set-up is done (a RUN when its
 * container has been started), or on {@link adopt}. Why not at once: the hash of a 5,000-file layer keeps the main
 * thread busy for ~0.2 s, and a RUN's set-up (mounts, bundle, spawn) is a chain of small awaits that would each
 * wait behind it; the container then started ~0.15 s later. Once the container runs, the main thread is idle.
 */
export interface PendingStepLayer {
  /** The step's upperdir, read-only from now on. */
  readonly dir: string;
  /** Starts the hash if it has not started yet. */
  startHashing(): void;
  /**
   * Waits for the hash, moves `dir` into the store as the layer's unpacked form and removes the step's
   * scratch directory. Only call it once no overlay uses `dir` any more. Later calls return the same promise.
   */
  adopt(): Promise<LayerInfo>;
}

/**
 * Like {@link withStepLayer}, but returns as soon as `work` is done, with the layer still being hashed (see
 * {@link PendingStepLayer}). `pendingLower` is the previous step's still-pending upperdir, mounted above
 * the parent layers. The caller must call `adopt()` in every case (it also cleans up).
 */
export async function runStepLayer<T>(
  store: LayerStoreApi,
  parentDiffIds: readonly Digest[],
  pendingLower: string | undefined,
  options: StepLayerOptions,
  work: (dirs: StepDirs) => Promise<T>,
): Promise<{ pending: PendingStepLayer; value: T }> {
  const parents = await lowerDirsOf(store, parentDiffIds, options.signal);
  const lowerDirs = pendingLower === undefined ? parents : [pendingLower, ...parents];
  // Synchronous: four tiny metadata calls, each far cheaper than an awaited threadpool round trip.
  mkdirSync(path.join(store.root, 'tmp'), { recursive: true });
  spreadSubdirs(path.join(store.root, 'tmp'));
  // Named after this process (pid and start time): if it is killed, the next kiln removes the directory.
  const scratch = path.join(store.root, 'tmp', ownedName('step'));
  mkdirSync(scratch, { mode: 0o700 });
  const dirs: StepDirs = { lowerDirs, upperDir: path.join(scratch, 'upper'), workDir: path.join(scratch, 'work'), scratch, ...(options.overlay ? { overlay: options.overlay } : {}) };
  let value: T;
  try {
    mkdirSync(dirs.upperDir);
    mkdirSync(dirs.workDir);
    value = await work(dirs);
    options.signal?.throwIfAborted();
  } catch (err) {
    // After a failure the upperdir may be large: removed without blocking the event loop.
    await rm(scratch, { recursive: true, force: true });
    throw err;
  }
  // Lazy layer: only the diffID is computed; the upperdir itself becomes the stored layer, and its tar
  // is regenerated (verified) only when an export or push needs it.
  let hashing: ReturnType<typeof hashDirForAdoption> | undefined;
  const startHashing = (): ReturnType<typeof hashDirForAdoption> => {
    if (hashing === undefined) {
      hashing = hashDirForAdoption(dirs.upperDir, {
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {}),
      });
      hashing.catch(() => undefined); // reported by adopt()
    }
    return hashing;
  };
  let adopting: Promise<LayerInfo> | undefined;
  const adopt = async (): Promise<LayerInfo> => {
    let adopted = false;
    try {
      const { layer } = await adoptHashedDir(await startHashing(), store);
      adopted = true;
      return layer;
    } finally {
      // After adoption only the overlay's empty workdir is left: removed in place.
      if (adopted) removeKnown(scratch, [], ['work/work', 'work/index', 'work']);
      else await rm(scratch, { recursive: true, force: true });
    }
  };
  return {
    pending: {
      dir: dirs.upperDir,
      startHashing: () => void startHashing(),
      adopt: () => (adopting ??= adopt()),
    },
    value,
  };
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
    ...(dirs.overlay ? { capabilities: dirs.overlay } : {}),
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
