/**
 * The directory behind a `RUN --mount=type=cache`: one per cache id in the store (`cache-mounts/<hash of id>`),
 * kept across builds, or a private one in the step's scratch directory; made with the mount's mode and owner the
 * first time, and held under a store lock while a `sharing=locked` step uses it.
 */
import { chmod, chown, lstat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { sha256Hex } from '../oci/digest.js';
import type { LayerStoreApi } from '../store/types.js';

export interface CacheMountOptions {
  /** The cache id (the builder defaults it to the mount's target). */
  readonly id: string;
  /** A directory of the step's own to use instead of the shared one (`sharing=private`). */
  readonly privateDir?: string;
  /** Serialise the steps using this id through a store lock (`sharing=locked`). */
  readonly locked: boolean;
  /** Permission bits of a new directory. */
  readonly mode: number;
  /** Owner of a new directory; it stays root's (the store's) when undefined. */
  readonly owner?: { readonly uid: number; readonly gid: number };
}

/** A cache directory ready to bind; `release()` gives up its lock, if any. */
export interface CacheMountDir {
  readonly dir: string;
  release(): Promise<void>;
}

/** Opens (making it on first use) the cache directory `options` describe. */
export async function openCacheMount(store: LayerStoreApi, options: CacheMountOptions): Promise<CacheMountDir> {
  const dirName = sha256Hex(options.id).slice(0, 32);
  const dir = options.privateDir ?? path.join(store.root, 'cache-mounts', dirName);
  const fresh = !(await lstat(dir).catch(() => undefined));
  await mkdir(dir, { recursive: true });
  if (fresh) {
    await chmod(dir, options.mode);
    if (options.owner !== undefined) await chown(dir, options.owner.uid, options.owner.gid);
  }
  if (!options.locked) return { dir, release: async () => undefined };
  let unlock!: () => void;
  const held = new Promise<void>((r) => (unlock = r));
  let lock!: Promise<void>;
  const acquired = new Promise<void>((resolve) => {
    lock = store.withLock(`cache-mount-${dirName}`, async () => {
      resolve();
      await held;
    });
  });
  await Promise.race([acquired, lock]);
  // Release waits until the lock file is really gone: an unawaited removal would outlive build().
  return {
    dir,
    release: async () => {
      unlock();
      await lock;
    },
  };
}
