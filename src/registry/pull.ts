/**
 * Pulls an image from a registry into the layer store.
 *
 * Each layer blob is stored as sent (compressed, as `skopeo copy` does), verified against its descriptor
 * digest while it streams in, and registered under the config's diffID. The diffID is verified when the
 * layer is first used: the store decompresses the blob to unpack or export it and refuses content that
 * does not hash to the diffID. The stored blobs let the image be pushed again without recompressing.
 */
import { parseUntrustedJson } from '../untrusted-json.js';
import { RegistryError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../oci/types.js';
import { IMAGE_JSON_LIMITS, formatLimit } from '../image/limits.js';
import type { Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Platform } from '../oci/types.js';
import type { LayerStoreApi, StoredImage } from '../store/types.js';
import { downloadBlobToStore } from './blob-file.js';
import { RegistryClient, checkManifest, isIndex, parsePlatform, selectPlatform } from './client.js';
import { hostPlatform } from '../oci/platform.js';
import type { RegistryClientOptions } from './client.js';
import { recordBlobLocation } from './locations.js';
import { formatReference, parseReference } from './reference.js';
import type { ImageReference } from './reference.js';

/** Progress of a pull or a push. `bytes` counts the blob's bytes transferred so far. */
export type TransferEvent =
  | { readonly type: 'resolved'; readonly ref: string; readonly digest: Digest }
  | { readonly type: 'blob-start'; readonly digest: Digest; readonly size: number; readonly mediaType: string }
  | { readonly type: 'blob-progress'; readonly digest: Digest; readonly bytes: number; readonly size: number }
  | {
      readonly type: 'blob-done';
      readonly digest: Digest;
      readonly size: number;
      /** transferred; already present (locally for a pull, remotely for a push); mounted from another repository. */
      readonly how: 'transferred' | 'present' | 'mounted';
    }
  | { readonly type: 'manifest'; readonly digest: Digest };

/** Options of {@link pullImage}. */
export interface PullOptions extends RegistryClientOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: TransferEvent) => void;
  /** Platform to pick from an index, as an object or `os/arch[/variant]`. @default the host's (linux/amd64 on x64) */
  readonly platform?: Platform | string;
  /**
   * Blobs downloaded at once. Higher than docker's 3, so one layer's network waits overlap another's
   * hashing and disk writes. @default 4
   */
  readonly concurrency?: number;
}

/** Runs `fn` over items with at most `limit` running at once; the first failure stops new starts. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i] as T, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  const rejected = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (rejected !== undefined) throw rejected.reason;
  return results;
}

function compressionOfMediaType(mediaType: string): 'none' | 'gzip' | 'zstd' {
  if (/gzip$/.test(mediaType)) return 'gzip';
  if (/zstd$/.test(mediaType)) return 'zstd';
  if (mediaType === MEDIA_TYPES.ociLayer || mediaType === 'application/vnd.docker.image.rootfs.diff.tar') return 'none';
  throw new RegistryError(`unsupported layer media type ${mediaType}`);
}

/** The local copy of an image is complete when its manifest, config and every layer (in any form) are stored. */
async function completeLocally(store: LayerStoreApi, digest: Digest): Promise<StoredImage | undefined> {
  if (!(await store.hasBlob(digest))) return undefined;
  const parsed = parseUntrustedJson((await store.readBlob(digest)).toString('utf8'), `manifest ${digest}`);
  if (isIndex('', parsed)) return undefined; // resolved by the caller through the index
  const manifest = parsed as ImageManifest;
  if (!(await store.hasBlob(manifest.config.digest))) return undefined;
  const image = await store.getImage(digest);
  for (const diffId of image.config.rootfs.diff_ids) {
    if (!(await store.hasLayer(diffId))) return undefined;
  }
  return image;
}

/**
 * Downloads a layer blob into the store as sent, verified against `desc.digest` while it streams, and
 * registers it as the layer `diffId`. A compressed blob is not decompressed here: like containerd, the
 * store checks the diffID when the layer is first used (`unpackedLayer`, or `findLayerBlob(diffId, 'none')`
 * at export), and refuses it then if the content does not match. Nothing is stored on failure. Also used by
 * the registry build cache to import cached layers.
 */
export async function pullLayer(
  client: RegistryClient,
  store: LayerStoreApi,
  repo: string,
  desc: Descriptor,
  diffId: Digest,
  signal: AbortSignal | undefined,
  onBytes: (bytes: number) => void,
): Promise<void> {
  const compression = compressionOfMediaType(desc.mediaType);
  if (!/^sha256:[0-9a-f]{64}$/.test(diffId)) throw new RegistryError(`layer ${desc.digest}: invalid diffID ${diffId}`);
  if (compression === 'none' && desc.digest !== diffId) throw new RegistryError(`uncompressed layer ${desc.digest} does not match its diffID ${diffId}`);
  // Through reused read buffers into the store's writeBlob (see blob-file.ts).
  await downloadBlobToStore(client, store, repo, desc, signal, onBytes);
  await store.registerLayer(
    compression === 'none'
      ? { diffId, digest: diffId, size: desc.size, mediaType: MEDIA_TYPES.ociLayer }
      : { diffId, digest: desc.digest, size: desc.size, mediaType: desc.mediaType },
  );
}

/**
 * Pulls `ref` into the store and tags it there under its full reference
 * (`127.0.0.1:5000/app:1.0`). A digest-pinned reference the store already holds costs no network
 * at all; a tag is always resolved, and only missing blobs are downloaded.
 */
export async function pullImage(ref: string | ImageReference, store: LayerStoreApi, options: PullOptions = {}): Promise<StoredImage> {
  const { signal, onProgress } = options;
  let parsed: ImageReference;
  try {
    parsed = typeof ref === 'string' ? parseReference(ref) : ref;
  } catch (cause) {
    throw new RegistryError(messageOf(cause), undefined, { cause });
  }
  const name = formatReference(parsed);
  const platform = typeof options.platform === 'string' ? parsePlatform(options.platform) : (options.platform ?? hostPlatform());

  if (parsed.digest !== undefined) {
    let digest: Digest | undefined = parsed.digest;
    if (await store.hasBlob(digest)) {
      const json = parseUntrustedJson((await store.readBlob(digest)).toString('utf8'), `manifest ${digest}`);
      if (isIndex('', json)) digest = selectPlatform(json as ImageIndex, platform)?.digest;
    }
    const local = digest !== undefined ? await completeLocally(store, digest) : undefined;
    if (local !== undefined) {
      await store.tag(name, local.manifestDigest);
      return local;
    }
  }

  const client = new RegistryClient(parsed.registry, options);
  const repo = parsed.repository;
  const resolved = await client.resolveManifest(repo, parsed.digest ?? parsed.tag ?? 'latest', platform, signal);
  const manifest = checkManifest(resolved.parsed, name);
  onProgress?.({ type: 'resolved', ref: name, digest: resolved.manifest.digest });

  const existing = await completeLocally(store, resolved.manifest.digest);
  if (existing !== undefined) {
    if (resolved.index !== undefined) await store.writeBlobBytes(resolved.index.bytes);
    await store.tag(name, existing.manifestDigest);
    return existing;
  }

  // The config first: it names the diffIDs the layers are checked against.
  const cfgDesc = manifest.config;
  // The config is read into memory whole: refuse a big one before downloading it.
  if (cfgDesc.size > IMAGE_JSON_LIMITS.config) {
    throw new RegistryError(`${name}: its image config ${cfgDesc.digest} is ${String(cfgDesc.size)} bytes, over kiln's limit of ${formatLimit(IMAGE_JSON_LIMITS.config)}`);
  }
  if (!(await store.hasBlob(cfgDesc.digest))) {
    onProgress?.({ type: 'blob-start', digest: cfgDesc.digest, size: cfgDesc.size, mediaType: cfgDesc.mediaType });
    // Exactly the descriptor's size and digest (a registry cannot stream more than it promised).
    await downloadBlobToStore(client, store, repo, cfgDesc, signal, () => {});
    onProgress?.({ type: 'blob-done', digest: cfgDesc.digest, size: cfgDesc.size, how: 'transferred' });
  }
  let config: ImageConfig;
  try {
    config = parseUntrustedJson((await store.readBlob(cfgDesc.digest)).toString('utf8'), `image config ${cfgDesc.digest}`) as ImageConfig;
  } catch (cause) {
    // parseUntrustedJson's message never quotes the bytes; no cause is attached for the same reason.
    throw new RegistryError(`${name}: ${messageOf(cause)}`);
  }
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) {
    throw new RegistryError(`${name}: the manifest has ${String(manifest.layers.length)} layers but the config names ${String(diffIds.length)} diffIDs`);
  }

  await mapLimit(manifest.layers, options.concurrency ?? 4, async (desc, i) => {
    const diffId = diffIds[i] as Digest;
    const have = await store.hasLayer(diffId);
    if (have && (compressionOfMediaType(desc.mediaType) === 'none' || (await store.hasBlob(desc.digest)))) {
      onProgress?.({ type: 'blob-done', digest: desc.digest, size: desc.size, how: 'present' });
      return;
    }
    onProgress?.({ type: 'blob-start', digest: desc.digest, size: desc.size, mediaType: desc.mediaType });
    let last = 0;
    await pullLayer(client, store, repo, desc, diffId, signal, (bytes) => {
      // A progress event per 256 KiB is enough for any display.
      if (bytes - last >= 256 * 1024 || bytes === desc.size) {
        last = bytes;
        onProgress?.({ type: 'blob-progress', digest: desc.digest, bytes, size: desc.size });
      }
    });
    onProgress?.({ type: 'blob-done', digest: desc.digest, size: desc.size, how: 'transferred' });
    await recordBlobLocation(store, desc.digest, parsed.registry, repo);
  });

  await recordBlobLocation(store, cfgDesc.digest, parsed.registry, repo);
  if (resolved.index !== undefined) await store.writeBlobBytes(resolved.index.bytes);
  // Kept byte for byte, so the local image has the registry's digest.
  await store.writeBlobBytes(resolved.manifest.bytes);
  const image = await store.getImage(resolved.manifest.digest);
  await store.tag(name, image.manifestDigest);
  onProgress?.({ type: 'manifest', digest: image.manifestDigest });
  return image;
}
