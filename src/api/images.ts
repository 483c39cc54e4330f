/**
 * The images API: list, inspect, tag, remove, prune, save and load the images of a store, as `kiln images`,
 * `inspect`, `rmi` and `prune` do (and `docker tag`, `save`, `load` would).
 */
import { normalizeTag, validateTag } from '../builder/tags.js';
import { BuildError, ImageNotFoundError } from '../errors.js';
import type { ExportOutput, ExportProgressEvent, ExportResult } from '../outputs/index.js';
import type { ImportSource } from '../image/import.js';
import type { Digest } from '../oci/types.js';
import type { StoredImage } from '../store/types.js';
import { findImage, openStore, type StoreOptions } from './store.js';

/** A tag in the store, as {@link listImages} lists it. */
export interface ImageSummary {
  /** The tag as the store keys it (`app:1`, `127.0.0.1:5000/app:1`). */
  readonly name: string;
  readonly manifestDigest: Digest;
  /** The sum of the manifest's layer sizes in bytes (as stored: built layers are uncompressed). */
  readonly size: number;
}

/** The store's tags with their images, sorted by tag. */
export async function listImages(options: StoreOptions = {}): Promise<ImageSummary[]> {
  const store = await openStore(options.root);
  const out: ImageSummary[] = [];
  for (const { name, digest } of await store.listTags()) {
    const image = await store.getImage(digest);
    out.push({ name, manifestDigest: digest, size: image.manifest.layers.reduce((n, l) => n + l.size, 0) });
  }
  return out;
}

/**
 * An image's manifest and config with their digests. `name` is a tag (`app` means `app:latest`), a manifest
 * digest, or a digest prefix of at least 12 hex digits of a tagged image.
 * @throws ImageNotFoundError
 */
export async function inspectImage(name: string, options: StoreOptions = {}): Promise<StoredImage> {
  return findImage(await openStore(options.root), name);
}

/** What {@link tag} and {@link removeImage} changed. */
export interface TagResult {
  /** The tag as the store keys it (`app` → `app:latest`). */
  readonly name: string;
  readonly manifestDigest: Digest;
}

/**
 * Gives the image `source` names (see {@link inspectImage}) another tag, as `docker tag` does; an existing tag
 * of that name moves to it.
 * @throws ImageNotFoundError; BuildError (code INVALID_OPTION) for a name docker would refuse
 */
export async function tag(source: string, target: string, options: StoreOptions = {}): Promise<TagResult> {
  const bad = validateTag(target);
  if (bad !== undefined) throw new BuildError('INVALID_OPTION', bad);
  const store = await openStore(options.root);
  const image = await findImage(store, source);
  const name = normalizeTag(target);
  await store.tag(name, image.manifestDigest);
  return { name, manifestDigest: image.manifestDigest };
}

/**
 * Removes a tag (`kiln rmi`). The image's blobs and layers stay until {@link prune} finds nothing using them.
 * @throws ImageNotFoundError when the store has no such tag
 */
export async function removeImage(name: string, options: StoreOptions = {}): Promise<TagResult> {
  const store = await openStore(options.root);
  const key = normalizeTag(name);
  const digest = await store.resolveTag(key);
  if (digest === undefined || !(await store.untag(key))) throw new ImageNotFoundError(name);
  return { name: key, manifestDigest: digest };
}

/** Options of {@link prune}. */
export interface PruneOptions extends StoreOptions {
  readonly signal?: AbortSignal;
}

/** What {@link prune} removed. */
export interface PruneResult {
  readonly removedBlobs: number;
  readonly freedBytes: number;
}

/**
 * Removes the blobs and unpacked layers no tag or cache record uses (`kiln prune`), and the cache of parsed
 * Dockerfiles. Safe while other kiln processes build in the same store (see `LayerStore.prune`).
 */
export async function prune(options: PruneOptions = {}): Promise<PruneResult> {
  const store = await openStore(options.root);
  const result = await store.prune(options.signal ? { signal: options.signal } : {});
  await (await import('../builder/parse-cache.js')).clearParseCache(store.root);
  return result;
}

/** Options of {@link save}. */
export interface SaveOptions extends StoreOptions {
  readonly signal?: AbortSignal;
  /** One event per layer compressed or written. */
  readonly onProgress?: (event: ExportProgressEvent) => void;
}

/**
 * Writes an image (see {@link inspectImage} for `name`) as an OCI layout (directory or tar), a docker-archive tar
 * (`docker save`'s format), its final filesystem as a directory, or one tar of it: the formats of a build's
 * outputs (`-o type=oci|docker|local|tar`).
 * @throws ImageNotFoundError
 */
export async function save(name: string, output: ExportOutput, options: SaveOptions = {}): Promise<ExportResult> {
  const store = await openStore(options.root);
  const image = await findImage(store, name);
  const { exportImage } = await import('../outputs/index.js');
  return exportImage(image, store, output, {
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
}

/** Options of {@link load}. */
export interface LoadOptions extends StoreOptions {
  /** The tag the image gets. @default the name the archive gives it (RepoTags, `io.containerd.image.name`); none for a rootfs */
  readonly tag?: string;
  readonly signal?: AbortSignal;
}

/**
 * Imports an OCI layout (directory or tar), a docker-archive tar or a root filesystem into the store and tags it.
 * Every blob is checked against its digest and every layer against the config's diff_ids before any tag is set.
 * @throws RuntimeError naming the file for a corrupt or incomplete archive
 */
export async function load(source: ImportSource, options: LoadOptions = {}): Promise<StoredImage> {
  const store = await openStore(options.root);
  const { importImage } = await import('../image/import.js');
  return importImage(source, store, {
    ...(options.tag !== undefined ? { tag: options.tag } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
