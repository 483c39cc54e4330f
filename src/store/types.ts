/**
 * The layer store's contract, shared by the snapshotter, image import/export, the registry
 * client and the builder. The implementation is `layer-store.ts`, a facade over the parts it lists.
 *
 * On disk (default `~/.cache/kiln`, `KILN_ROOT` or an option moves it):
 *   blobs/sha256/<hex>          content-addressed blobs (layers, configs, manifests): an OCI-layout-compatible tree
 *   layers/<diffID hex>/rootfs  each layer unpacked once, used read-only as an overlayfs lowerdir
 *   images.json                 tag → manifest digest
 *   cache/<key>.json            build-cache records (step cache key → result)
 *   tmp/                        temp files, renamed into place when complete
 */
import type { Readable } from 'node:stream';
import type { Digest, ImageConfig, ImageManifest } from '../oci/types.js';

/** How a layer blob is compressed. Local layers are kept uncompressed; compression happens at export/push. */
export type Compression = 'none' | 'gzip' | 'zstd';

/** A layer as the store knows it. */
export interface LayerInfo {
  /** sha256 of the uncompressed tar. */
  readonly diffId: Digest;
  /** sha256 of the blob as stored (equals diffId when uncompressed). */
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
}

/** An image in the store: its manifest, config and their digests. */
export interface StoredImage {
  readonly manifestDigest: Digest;
  readonly manifest: ImageManifest;
  readonly configDigest: Digest;
  readonly config: ImageConfig;
}

export interface WriteBlobOptions {
  /** When given, the write fails (and nothing is stored) if the content's digest differs. */
  readonly expectedDigest?: Digest;
  readonly signal?: AbortSignal;
  /**
   * Called with chunks once they are in the file: the store keeps no reference to them after that, so the
   * caller may reuse their memory (a download into pooled read buffers).
   */
  readonly onWritten?: (chunks: readonly Uint8Array[]) => void;
}

/**
 * Options of {@link LayerStoreApi.adoptUnpackedLayer} (added for lazy layer blobs). A layer adopted from a
 * directory has no blob until one is needed: the store regenerates its tar from the directory (with these
 * snapshot settings), verifying the diffID while streaming.
 */
export interface AdoptOptions {
  /** Size in bytes of the layer's uncompressed tar, when the caller knows it. */
  readonly size?: number;
  /** The `sourceDateEpoch` the layer's tar was made with (mtimes clamped to it); needed to regenerate it. */
  readonly sourceDateEpoch?: number;
  /**
   * The directory's xattrs (absolute path → name → value) when the caller already read them, so adoption
   * need not read the tree again to strip overlay's private `trusted.overlay.*` xattrs (all but `opaque`).
   */
  readonly xattrs?: ReadonlyMap<string, ReadonlyMap<string, Buffer>>;
}

export interface LayerStoreApi {
  readonly root: string;

  // Blobs, content-addressed
  hasBlob(digest: Digest): Promise<boolean>;
  blobPath(digest: Digest): string;
  /** Streams into tmp/, hashing on the way, fsyncs, then renames to blobs/sha256/<hex>. */
  writeBlob(source: Readable | AsyncIterable<Uint8Array>, options?: WriteBlobOptions): Promise<{ digest: Digest; size: number }>;
  writeBlobBytes(data: Uint8Array | string): Promise<{ digest: Digest; size: number }>;
  readBlob(digest: Digest): Promise<Buffer>;
  openBlob(digest: Digest): Readable;

  // Layers
  /** Records a layer blob's diffID ↔ digest mapping (an uncompressed layer maps to itself). */
  registerLayer(layer: LayerInfo): Promise<void>;
  /** The unpacked rootfs directory of a layer, unpacking the blob once if needed (safe extraction). */
  unpackedLayer(diffId: Digest, options?: { signal?: AbortSignal }): Promise<string>;
  /**
   * Takes a directory that already holds a layer's unpacked content in overlay form (a RUN step's
   * upperdir, snapshotted to `diffId`) and renames it into place as `layers/<diffID hex>/rootfs`, so the
   * next step can use it as a lowerdir without extracting the tar again. Overlay's private xattrs
   * (`trusted.overlay.*` except `opaque`) are stripped first. `dir` must be on the store's filesystem
   * (e.g. under `tmp/`). When the layer is already unpacked, `dir` is removed instead. Returns the rootfs
   * path. The layer's blob need not exist: it is regenerated from the directory when needed (`options`).
   */
  adoptUnpackedLayer(diffId: Digest, dir: string, options?: AdoptOptions): Promise<string>;
  /**
   * Whether the store holds the layer's content in any form: its uncompressed or a compressed blob, or its
   * unpacked directory (a lazily snapshotted layer has only that). Use this, not `hasBlob`, to accept a
   * cache hit on a locally built layer.
   */
  hasLayer(diffId: Digest): Promise<boolean>;
  /**
   * Finds the stored blob of a layer by diffID, in the wanted compression; undefined when none is stored.
   * For `'none'`, a layer stored only compressed (a pulled one) or only unpacked (a locally built one) gets
   * its uncompressed blob written first, by decompressing or regenerating it, verified against the diffID,
   * so the returned blob exists at `blobPath(digest)`.
   */
  findLayerBlob(diffId: Digest, compression?: Compression): Promise<LayerInfo | undefined>;

  // Images and tags
  /**
   * Writes config + manifest blobs and returns the stored image. Config bytes (an imported image's
   * config as it was written) are stored unchanged, so the config keeps its digest.
   */
  putImage(config: ImageConfig | Uint8Array, layers: readonly LayerInfo[]): Promise<StoredImage>;
  getImage(manifestDigest: Digest): Promise<StoredImage>;
  tag(name: string, manifestDigest: Digest): Promise<void>;
  resolveTag(name: string): Promise<Digest | undefined>;
  untag(name: string): Promise<boolean>;
  listTags(): Promise<Array<{ name: string; digest: Digest }>>;

  // Build cache
  getCache<T>(key: string): Promise<T | undefined>;
  putCache(key: string, value: unknown): Promise<void>;

  /** Holds an exclusive lock on `name` (a file lock under locks/) while `fn` runs; safe across processes. */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** Removes blobs, unpacked layers and temp files no tag or cache record reaches. */
  prune(options?: { signal?: AbortSignal }): Promise<{ removedBlobs: number; freedBytes: number }>;
}
