/**
 * What the store-backed API functions share: the options that name a store, opening it, finding an image in
 * it, and `verifyStore`. The store's modules load on first use, so a program (or the CLI) that only parses
 * never loads them.
 */
import { defaultStoreRoot } from '../store/default-root.js';
import { normalizeTag } from '../builder/tags.js';
import { ImageNotFoundError } from '../errors.js';
import type { Digest } from '../oci/types.js';
import type { LayerStore } from '../store/layer-store.js';
import type { StoredImage } from '../store/types.js';
import type { VerifyOptions, VerifyReport } from '../store/verify.js';

/** Options every store-backed API function takes. */
export interface StoreOptions {
  /** The store root. @default `$KILN_ROOT`, else `~/.cache/kiln` */
  readonly root?: string;
}

/** Opens (creating if needed) the store at `root`, or at the default root. */
export async function openStore(root: string | undefined): Promise<LayerStore> {
  const { LayerStore } = await import('../store/layer-store.js');
  return LayerStore.open(root ?? defaultStoreRoot());
}

/**
 * Finds an image by tag (`app` means `app:latest`), by manifest digest, or by a digest prefix of at least 12 hex
 * digits (with or without `sha256:`) of a tagged image.
 * @throws ImageNotFoundError when none matches
 */
export async function findImage(store: LayerStore, name: string): Promise<StoredImage> {
  const byTag = await store.resolveTag(normalizeTag(name));
  if (byTag) return store.getImage(byTag);
  const hex = name.replace(/^sha256:/, '');
  if (/^[0-9a-f]{12,64}$/.test(hex)) {
    for (const t of await store.listTags()) if (t.digest.slice(7).startsWith(hex)) return store.getImage(t.digest);
    if (hex.length === 64 && (await store.hasBlob(`sha256:${hex}`))) return store.getImage(`sha256:${hex}` as Digest);
  }
  throw new ImageNotFoundError(name);
}

/** Options of {@link verifyStore}. */
export interface VerifyStoreOptions extends StoreOptions, VerifyOptions {}

/**
 * Re-hashes the store's blobs, unpacked layers and records (`kiln store verify`), moving what is wrong to
 * `<root>/quarantine/` unless `quarantine: false`. Resolves to what was checked and found; a problem is no error.
 */
export async function verifyStore(options: VerifyStoreOptions = {}): Promise<VerifyReport> {
  const store = await openStore(options.root);
  const { verifyStore: verify } = await import('../store/verify.js');
  return verify(store, options);
}
