/**
 * Pushes an image from the layer store to a registry: layers compressed once (cached by the store),
 * each blob checked with HEAD first, mounted from another repository of the same registry when one is
 * known to hold it, uploaded otherwise, and the manifest PUT last, so a tag never names missing blobs.
 */
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { RegistryError, RuntimeError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Descriptor, Digest, ImageManifest } from '../oci/types.js';
import type { Compression, LayerInfo, LayerStoreApi, StoredImage } from '../store/types.js';
import { RegistryClient, fileBlobSource } from './client.js';
import type { BlobUploadStream, RegistryClientOptions } from './client.js';
import { blobLocations, recordBlobLocation } from './locations.js';
import { mapLimit } from './pull.js';
import type { TransferEvent } from './pull.js';
import { formatReference, parseReference } from './reference.js';
import type { ImageReference } from './reference.js';

/** Options of {@link pushImage}. */
export interface PushOptions extends RegistryClientOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: TransferEvent) => void;
  /** Compression of the pushed layers. @default 'gzip' */
  readonly compression?: Compression;
  /** Blobs uploaded at once. @default 3 */
  readonly concurrency?: number;
  /** Try cross-repository mounts for blobs known to be in another repository of the registry. @default true */
  readonly mount?: boolean;
  /**
   * Stream a layer to the registry while it is being compressed for the first time (one PATCH as the bytes
   * come), rather than uploading it after. Progress of such an upload is reported only when it completes
   * (its digest is unknown before). @default true
   */
  readonly streamUploads?: boolean;
}

const LAYER_MEDIA_TYPE: Record<Compression, string> = {
  none: MEDIA_TYPES.ociLayer,
  gzip: MEDIA_TYPES.ociLayerGzip,
  zstd: MEDIA_TYPES.ociLayerZstd,
};

/** A store that can compress layers itself (the real LayerStore can; the contract does not require it). */
type CompressingStore = LayerStoreApi & {
  compressLayer?: (
    diffId: Digest,
    compression: Compression,
    options?: { signal?: AbortSignal; onChunk?: (chunk: Uint8Array) => Promise<void> },
  ) => Promise<LayerInfo>;
};

/** The layer's blob in `compression`, compressing it once when the store has none yet. */
async function layerBlob(store: CompressingStore, diffId: Digest, compression: Compression, signal: AbortSignal | undefined): Promise<LayerInfo> {
  const found = await store.findLayerBlob(diffId, compression);
  if (found !== undefined) return found;
  if (typeof store.compressLayer === 'function') return store.compressLayer(diffId, compression, signal !== undefined ? { signal } : {});
  if (compression !== 'gzip') throw new RuntimeError(`layer ${diffId} is not stored with ${compression} compression`);
  // Shortcut for stores without compressLayer: plain single-threaded gzip.
  const plain = await store.findLayerBlob(diffId, 'none');
  if (plain === undefined) throw new RuntimeError(`layer ${diffId} is not in the store`);
  const gzip = createGzip();
  const [written] = await Promise.all([store.writeBlob(gzip, signal !== undefined ? { signal } : {}), pipeline(store.openBlob(plain.digest), gzip, signal !== undefined ? { signal } : {})]);
  const info: LayerInfo = { diffId, digest: written.digest, size: written.size, mediaType: MEDIA_TYPES.ociLayerGzip };
  await store.registerLayer(info);
  return info;
}

async function resolveImage(store: LayerStoreApi, image: StoredImage | string): Promise<StoredImage> {
  if (typeof image !== 'string') return image;
  let digest: Digest | undefined = /^sha256:[a-f0-9]{64}$/.test(image) ? (image as Digest) : await store.resolveTag(image);
  if (digest === undefined) {
    try {
      digest = await store.resolveTag(formatReference(parseReference(image)));
    } catch {
      // not a reference either
    }
  }
  if (digest === undefined || !(await store.hasBlob(digest))) throw new RegistryError(`image ${image} is not in the store`);
  return store.getImage(digest);
}

/**
 * Pushes an image (a stored image, a store tag or a manifest digest) to `ref` and returns the digest
 * of the pushed manifest (an OCI image manifest).
 */
export async function pushImage(image: StoredImage | string, ref: string | ImageReference, store: LayerStoreApi, options: PushOptions = {}): Promise<Digest> {
  const { signal, onProgress } = options;
  let target: ImageReference;
  try {
    target = typeof ref === 'string' ? parseReference(ref) : ref;
  } catch (cause) {
    throw new RegistryError(messageOf(cause), undefined, { cause });
  }
  const source = await resolveImage(store, image);
  const compression = options.compression ?? 'gzip';
  const diffIds = source.config.rootfs.diff_ids;
  const client = new RegistryClient(target.registry, options);
  const repo = target.repository;
  const here = `${target.registry}/`;

  const pushBlob = async (digest: Digest, size: number): Promise<void> => {
    signal?.throwIfAborted();
    if ((await client.headBlob(repo, digest, signal)) !== undefined) {
      onProgress?.({ type: 'blob-done', digest, size, how: 'present' });
      await recordBlobLocation(store, digest, target.registry, repo);
      return;
    }
    let location: string | undefined;
    if (options.mount !== false) {
      const from = (await blobLocations(store, digest)).find((l) => l.startsWith(here) && l !== `${here}${repo}`);
      if (from !== undefined) {
        const r = await client.mountBlob(repo, digest, from.slice(here.length), signal);
        if (r.mounted) {
          onProgress?.({ type: 'blob-done', digest, size, how: 'mounted' });
          await recordBlobLocation(store, digest, target.registry, repo);
          return;
        }
        location = r.location;
      }
    }
    onProgress?.({ type: 'blob-start', digest, size, mediaType: '' });
    await client.uploadBlob(repo, digest, fileBlobSource(store.blobPath(digest), size), {
      ...(signal !== undefined ? { signal } : {}),
      ...(location !== undefined ? { location } : {}),
      onProgress: (bytes) => onProgress?.({ type: 'blob-progress', digest, bytes, size }),
    });
    onProgress?.({ type: 'blob-done', digest, size, how: 'transferred' });
    await recordBlobLocation(store, digest, target.registry, repo);
  };

  /**
   * Compresses a layer (once, cached by the store) while streaming the compressed bytes to the registry, so
   * the upload overlaps the compression instead of following it. The digest is known only at the end, so
   * there is no HEAD check or mount first (nothing can be known about a blob never compressed before). When
   * the streamed upload fails for any reason but cancellation, the stored blob is pushed the ordinary way.
   */
  const compressAndPush = async (diffId: Digest, compressing: Required<Pick<CompressingStore, 'compressLayer'>>): Promise<LayerInfo> => {
    let upload: BlobUploadStream | undefined;
    let failed = false;
    const onChunk = async (chunk: Uint8Array): Promise<void> => {
      if (failed) return;
      try {
        upload ??= await client.openUploadStream(repo, signal);
        await upload.write(chunk);
      } catch {
        failed = true;
      }
    };
    let info: LayerInfo;
    try {
      info = await compressing.compressLayer(diffId, compression, { onChunk, ...(signal !== undefined ? { signal } : {}) });
    } catch (err) {
      await upload?.abort();
      throw err;
    }
    if (upload !== undefined && !failed) {
      try {
        await upload.finish(info.digest, info.size);
        onProgress?.({ type: 'blob-start', digest: info.digest, size: info.size, mediaType: LAYER_MEDIA_TYPE[compression] });
        onProgress?.({ type: 'blob-done', digest: info.digest, size: info.size, how: 'transferred' });
        await recordBlobLocation(store, info.digest, target.registry, repo);
        return info;
      } catch (err) {
        if (signal?.aborted === true) throw signal.reason;
      }
    }
    await upload?.abort();
    await pushBlob(info.digest, info.size);
    return info;
  };

  // Compress (once, cached) and upload layer by layer, a few at a time.
  const layers = await mapLimit(diffIds, options.concurrency ?? 3, async (diffId): Promise<Descriptor> => {
    const cs = store as CompressingStore;
    const cached = await cs.findLayerBlob(diffId, compression);
    let info: LayerInfo;
    if (cached === undefined && compression !== 'none' && typeof cs.compressLayer === 'function' && options.streamUploads !== false) {
      info = await compressAndPush(diffId, { compressLayer: cs.compressLayer.bind(cs) });
    } else {
      info = cached ?? (await layerBlob(cs, diffId, compression, signal));
      await pushBlob(info.digest, info.size);
    }
    return { mediaType: LAYER_MEDIA_TYPE[compression], digest: info.digest, size: info.size };
  });
  const configSize = (await stat(store.blobPath(source.configDigest))).size;
  await pushBlob(source.configDigest, configSize);

  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: source.configDigest, size: configSize },
    layers,
    ...(source.manifest.annotations !== undefined ? { annotations: source.manifest.annotations } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  // Kept locally too: a later pull by this digest then needs no network.
  const { digest } = await store.writeBlobBytes(bytes);
  if (target.digest !== undefined && target.digest !== digest) {
    throw new RegistryError(`the manifest to push has digest ${digest}, not the ${target.digest} the reference names`);
  }
  const pushed = await client.putManifest(repo, target.tag ?? target.digest ?? 'latest', bytes, MEDIA_TYPES.ociManifest, signal);
  onProgress?.({ type: 'manifest', digest: pushed });
  return pushed;
}
