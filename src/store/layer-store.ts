/**
 * The content-addressed layer store (see `types.ts` for the on-disk layout and the contract): a facade over its
 * parts, each keeping one kind of thing and understandable alone:
 *   blobs.ts            content-addressed blobs, written durably (Blobs)
 *   layer-blobs.ts      a layer's blob variants (uncompressed, gzip, zstd), decompressed or compressed on demand (LayerBlobs)
 *   unpacked-layers.ts  unpacked layer directories: unpack, adopt, regenerate a tar, make durable (UnpackedLayers)
 *   records.ts          tags and build-cache records (Records); locks.ts the cross-process locks (Locks)
 *   leases.ts           "this process writes" leases (Leases); prune.ts the garbage collector of them all
 *   compression.ts      the gzip slots, buffer pool and member compressor, shared by the stores given one (Compressor)
 *
 * Layers are kept UNCOMPRESSED locally (`application/vnd.oci.image.layer.v1.tar`, digest = diffID) and
 * compressed lazily, once, by {@link LayerStore.compressLayer} at export/push time; the compressed blob is
 * cached and found again by diffID + compression.
 *
 * Lazy layer blobs: a layer built locally (a step's upperdir, adopted by {@link LayerStore.adoptUnpackedLayer})
 * is stored only unpacked. Its tar is regenerated from `layers/<hex>/rootfs` when something needs it
 * ({@link LayerStore.openLayerTar}, {@link LayerStore.compressLayer}, `findLayerBlob(d, 'none')`, which writes
 * the blob), and the regenerated stream is verified against the diffID as it goes: a tampered directory
 * makes the read fail, never yields a wrong blob. Extra layout beyond `types.ts`:
 *   layerinfo/<diffID hex>/<compression>.json   LayerInfo of each stored blob variant of a layer
 *   layers/<diffID hex>/snapshot.json           how an adopted layer's tar is regenerated (size, sourceDateEpoch)
 *   locks/<name>.lock                           cross-process lock files (pid inside)
 *   leases/<pid>                                "this process writes to the store since <time>" (see prune)
 *   layers/<diffID hex>/durable                 the layer directory was synced to disk (see durability.ts)
 *   boot                                        the boot id of the last boot that used the store (durability.ts)
 *   quarantine/                                 what `kiln store verify` or a recovery found wrong (verify.ts)
 *
 * The store root is private to its owner (0700): unpacked layers hold setuid binaries and device nodes from
 * images nobody vetted, which any host user could otherwise run (see {@link ensurePrivateRoot}).
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { defaultStoreRoot } from './default-root.js';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { RuntimeError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Descriptor, Digest, ImageConfig, ImageManifest } from '../oci/types.js';
import { Blobs } from './blobs.js';
import { createCompressor, type Compressor } from './compression.js';
import { bootId, needsBootRecovery, recoverAfterBoot } from './durability.js';
import { LayerBlobs, type CompressOptions } from './layer-blobs.js';
import { Leases } from './leases.js';
import { Locks } from './locks.js';
import { prune } from './prune.js';
import { Records } from './records.js';
import { recoverDeadOwners } from './recovery.js';
import type { AdoptOptions, Compression, LayerInfo, LayerStoreApi, StoredImage, WriteBlobOptions } from './types.js';
import { UnpackedLayers, extractHashed } from './unpacked-layers.js';

export { digestHex } from './files.js';
export type { CompressOptions } from './layer-blobs.js';

/**
 * Makes the store root reachable by its owner only, whatever `KILN_ROOT` is: unpacked layers hold setuid-root
 * binaries and device nodes from untrusted images, and a world-traversable store let any host user run them.
 * A looser mode is fixed (chmod 0700); a root that belongs to another user is refused.
 */
export function ensurePrivateRoot(dir: string): void {
  const st = statSync(dir);
  if (!st.isDirectory()) throw new RuntimeError(`the store root ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new RuntimeError(
      `the store root ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid}); kiln keeps unpacked layers there (setuid binaries, device nodes) and needs a store only its user can reach: use a directory you own (KILN_ROOT or --root)`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    try {
      chmodSync(dir, 0o700);
    } catch (cause) {
      throw new RuntimeError(`the store root ${dir} has mode ${(st.mode & 0o777).toString(8)} and cannot be made private (0700): ${messageOf(cause)}`, { cause });
    }
  }
}

/** Options of {@link LayerStore.open}. */
export interface OpenStoreOptions {
  /**
   * The compression resources (gzip slots, buffers) to share with other stores: pass the same one to every store
   * a process uses at once so the slot limit holds for all of them. @default a compressor of this store's own
   */
  readonly compressor?: Compressor;
}

/** The content-addressed store of blobs, unpacked layers, tags and build-cache records. */
export class LayerStore implements LayerStoreApi {
  readonly root: string;
  readonly #blobs: Blobs;
  readonly #layerBlobs: LayerBlobs;
  readonly #unpacked: UnpackedLayers;
  readonly #records: Records;
  readonly #locks: Locks;
  readonly #leases: Leases;

  private constructor(root: string, compressor: Compressor) {
    this.root = root;
    this.#locks = new Locks(root);
    this.#leases = new Leases(root);
    this.#blobs = new Blobs(root, this.#leases);
    this.#records = new Records(root, this.#locks);
    this.#unpacked = new UnpackedLayers(root, this.#locks, this.#leases);
    this.#layerBlobs = new LayerBlobs(root, { blobs: this.#blobs, locks: this.#locks, unpacked: this.#unpacked, compressor });
  }

  /**
   * Opens (creating if needed) a store.
   * @param root @default `$KILN_ROOT`, else `~/.cache/kiln`
   */
  static async open(root?: string, options: OpenStoreOptions = {}): Promise<LayerStore> {
    const dir = path.resolve(root ?? defaultStoreRoot());
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    ensurePrivateRoot(dir);
    // Synchronous: seven awaited mkdir calls were seven threadpool round trips at every kiln start.
    for (const sub of ['blobs/sha256', 'layers', 'layerinfo', 'cache', 'tmp', 'locks', 'leases']) {
      mkdirSync(path.join(dir, sub), { recursive: true });
    }
    const store = new LayerStore(dir, options.compressor ?? createCompressor());
    // Every open recovers what dead kiln processes left (a few directory listings when there is nothing),
    // and the first open of a new boot drops what was not durable, before this process writes anything.
    await recoverDeadOwners(dir);
    await store.#locks.breakStale();
    const boot = bootId();
    if (needsBootRecovery(dir, boot)) {
      await store.withLock('recovery', async () => {
        if (boot !== undefined && needsBootRecovery(dir, boot)) await recoverAfterBoot(dir, boot);
      });
    }
    return store;
  }

  /**
   * Syncs the store's filesystem once and marks every layer directory put in place before that as durable
   * (see durability.ts); nothing to do when this instance wrote no layer. The builder calls it at the end of
   * a build. Returns how many layers it marked.
   */
  makeDurable(): Promise<number> {
    return this.#unpacked.makeDurable();
  }

  // ---------------------------------------------------------------- blobs (blobs.ts)

  blobPath(digest: Digest): string {
    return this.#blobs.blobPath(digest);
  }

  hasBlob(digest: Digest): Promise<boolean> {
    return this.#blobs.hasBlob(digest);
  }

  writeBlob(source: Readable | AsyncIterable<Uint8Array>, options: WriteBlobOptions = {}): Promise<{ digest: Digest; size: number }> {
    return this.#blobs.writeBlob(source, options);
  }

  writeBlobBytes(data: Uint8Array | string): Promise<{ digest: Digest; size: number }> {
    return this.#blobs.writeBlobBytes(data);
  }

  readBlob(digest: Digest): Promise<Buffer> {
    return this.#blobs.readBlob(digest);
  }

  openBlob(digest: Digest): Readable {
    return this.#blobs.openBlob(digest);
  }

  // ---------------------------------------------------------------- layers (layer-blobs.ts, unpacked-layers.ts)

  registerLayer(layer: LayerInfo): Promise<void> {
    return this.#layerBlobs.register(layer);
  }

  findLayerBlob(diffId: Digest, compression: Compression = 'none'): Promise<LayerInfo | undefined> {
    return this.#layerBlobs.find(diffId, compression);
  }

  async hasLayer(diffId: Digest): Promise<boolean> {
    return (await this.#unpacked.has(diffId)) || this.#layerBlobs.hasAny(diffId);
  }

  /** The uncompressed tar of a layer as a stream, from whichever variant is stored (or regenerated from its directory). */
  openLayerTar(diffId: Digest, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    return this.#layerBlobs.openTar(diffId, signal);
  }

  /**
   * Extracts a layer's tar (overlay form: whiteouts as 0/0 devices) into `dest` and returns the sha256 of the whole
   * stream, also what follows the tar's end marker (extraction stops there), for the caller to check against the
   * diffID. Used to unpack a layer and by `store verify` to rebuild one for comparison.
   */
  async extractLayerTar(diffId: Digest, dest: string, signal?: AbortSignal): Promise<Digest> {
    return extractHashed(await this.#layerBlobs.openTar(diffId, signal), dest, signal);
  }

  unpackedLayer(diffId: Digest, options: { signal?: AbortSignal } = {}): Promise<string> {
    return this.#unpacked.unpack(diffId, (signal) => this.#layerBlobs.openTar(diffId, signal), options.signal);
  }

  adoptUnpackedLayer(diffId: Digest, dir: string, options: AdoptOptions = {}): Promise<string> {
    return this.#unpacked.adopt(diffId, dir, options);
  }

  /** See {@link LayerBlobs.compress}. */
  compressLayer(diffId: Digest, compression: Compression, options: CompressOptions = {}): Promise<LayerInfo> {
    return this.#layerBlobs.compress(diffId, compression, options);
  }

  // ---------------------------------------------------------------- images (blobs and layer records)

  async putImage(config: ImageConfig | Uint8Array, layers: readonly LayerInfo[]): Promise<StoredImage> {
    const bytes = config instanceof Uint8Array;
    const configBlob = await this.writeBlobBytes(bytes ? config : JSON.stringify(config));
    for (const layer of layers) await this.registerLayer(layer);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: MEDIA_TYPES.ociConfig, digest: configBlob.digest, size: configBlob.size },
      layers: layers.map((l): Descriptor => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    };
    const manifestBlob = await this.writeBlobBytes(JSON.stringify(manifest));
    const parsed = bytes ? (JSON.parse(Buffer.from(config).toString('utf8')) as ImageConfig) : config;
    return { manifestDigest: manifestBlob.digest, manifest, configDigest: configBlob.digest, config: parsed };
  }

  async getImage(manifestDigest: Digest): Promise<StoredImage> {
    const manifest = JSON.parse((await this.readBlob(manifestDigest)).toString('utf8')) as ImageManifest;
    const configDigest = manifest.config.digest;
    const config = JSON.parse((await this.readBlob(configDigest)).toString('utf8')) as ImageConfig;
    return { manifestDigest, manifest, configDigest, config };
  }

  // ---------------------------------------------------------------- records (records.ts, locks.ts)

  tag(name: string, manifestDigest: Digest): Promise<void> {
    return this.#records.tag(name, manifestDigest);
  }

  resolveTag(name: string): Promise<Digest | undefined> {
    return this.#records.resolveTag(name);
  }

  untag(name: string): Promise<boolean> {
    return this.#records.untag(name);
  }

  listTags(): Promise<Array<{ name: string; digest: Digest }>> {
    return this.#records.listTags();
  }

  getCache<T>(key: string): Promise<T | undefined> {
    return this.#records.getCache<T>(key);
  }

  putCache(key: string, value: unknown): Promise<void> {
    return this.#records.putCache(key, value);
  }

  withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.withLock(name, fn);
  }

  // ---------------------------------------------------------------- garbage collection (prune.ts)

  /** See {@link prune}. */
  prune(options: { signal?: AbortSignal } = {}): Promise<{ removedBlobs: number; freedBytes: number }> {
    return prune({ root: this.root, records: this.#records, locks: this.#locks, leases: this.#leases }, options);
  }
}
