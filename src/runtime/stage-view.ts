/**
 * Another stage's filesystem as a RUN bind mount (`--mount=from=STAGE`) or a COPY source (`COPY --from=STAGE`)
 * sees it: a merged overlay of the stage's layers with a throwaway upperdir, and the walks that find sources in it.
 */
import { lstat, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '../oci/types.js';
import { hasWildcard, segmentMatcher } from '../parser/filepath-match.js';
import type { LayerStoreApi } from '../store/types.js';
import type { OverlayCapabilities } from './overlay.js';
import type { CopySource } from './handlers/copy.js';
import { lowerDirsOf } from './step-layer.js';
import { resolveInRoot } from './user.js';

/** A mounted view of a stage's filesystem; `release()` unmounts it. */
export interface StageView {
  readonly rootfs: string;
  release(): Promise<void>;
}

/**
 * Mounts the layers `diffIds` (bottom-most first) under `dir`, a fresh path in the step's scratch directory.
 * Read-only in spirit: a throwaway upperdir takes any writes. `overlay`: the build's Host.overlay.
 */
export async function mountStageView(
  store: LayerStoreApi,
  diffIds: readonly Digest[],
  dir: string,
  options: { readonly signal?: AbortSignal; readonly overlay?: OverlayCapabilities },
): Promise<StageView> {
  await mkdir(path.join(dir, 'upper'), { recursive: true });
  await mkdir(path.join(dir, 'work'));
  await mkdir(path.join(dir, 'merged'));
  const lowers = await lowerDirsOf(store, diffIds, options.signal);
  const { mountOverlay } = await import('./overlay.js');
  const mount = await mountOverlay({ lowerDirs: lowers, upperDir: path.join(dir, 'upper'), workDir: path.join(dir, 'work'), target: path.join(dir, 'merged'), ...(options.overlay ? { capabilities: options.overlay } : {}) });
  return { rootfs: path.join(dir, 'merged'), release: () => mount.unmount() };
}

/** Resolves a source inside a stage's rootfs (Go's filepath.Match per segment, symlinks clamped to the rootfs). */
export async function resolveStageSource(rootfs: string, source: string): Promise<CopySource[]> {
  const clean = path.posix.normalize(`/${source}`);
  const segments = clean.split('/').filter(Boolean);
  let current = [''];
  for (const seg of segments) {
    const next: string[] = [];
    const matches = hasWildcard(seg) ? segmentMatcher(seg) : undefined;
    for (const base of current) {
      if (matches === undefined) {
        next.push(`${base}/${seg}`);
        continue;
      }
      const dir = await resolveInRoot(rootfs, base || '/');
      for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) if (matches(name)) next.push(`${base}/${name}`);
    }
    current = next;
  }
  const out: CopySource[] = [];
  for (const rel of current) {
    const abs = await resolveInRoot(rootfs, rel || '/');
    const stats = await lstat(abs).catch(() => undefined);
    if (!stats) continue;
    out.push({ abs, rel: rel.replace(/^\//, ''), stats, type: stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'symlink' : 'file' });
  }
  return out;
}

/** Whether a wildcard source that matched nothing is allowed: the directory its first wildcard looks in exists. */
export async function emptyWildcardAllowed(rootfs: string, source: string): Promise<boolean> {
  const segments = path.posix.normalize(`/${source}`).split('/').filter(Boolean);
  const first = segments.findIndex(hasWildcard);
  if (first === -1) return false;
  const dir = await resolveInRoot(rootfs, `/${segments.slice(0, first).join('/')}`);
  return (await lstat(dir).catch(() => undefined))?.isDirectory() === true;
}

/** Everything below a directory source, depth first, names sorted. */
export async function listTree(dir: CopySource): Promise<CopySource[]> {
  const out: CopySource[] = [];
  const visit = async (abs: string, rel: string): Promise<void> => {
    for (const name of (await readdir(abs)).sort()) {
      const childAbs = path.join(abs, name);
      const stats = await lstat(childAbs);
      const type = stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'symlink' : 'file';
      out.push({ abs: childAbs, rel: `${rel}/${name}`, stats, type });
      if (type === 'dir') await visit(childAbs, `${rel}/${name}`);
    }
  };
  await visit(dir.abs, dir.rel);
  return out;
}
