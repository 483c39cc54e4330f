/**
 * Pulls an image from a registry into the layer store.
 *
 * Layers are verified twice while they stream in: the blob against its descriptor digest and, after
 * decompression on the fly, the tar against the config's diffID. Both are stored, so the image can be
 * used locally (uncompressed, digest = diffID) and pushed again without recompressing.
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { RegistryError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../image/types.js';
import type { Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Platform } from '../image/types.js';
import type { LayerStoreApi, StoredImage } from '../store/types.js';
import { RegistryClient, checkManifest, hostPlatform, isIndex, parsePlatform, selectPlatform } from './client.js';
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
   * Blobs downloaded at once. Higher than docker's 3: a kiln pull also decompresses and hashes each layer,
   * so more layers in flight overlap one layer's network waits with another's CPU work. @default 4
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

/** The local copy of an image is complete when its manifest, config and every layer's tar are stored. */
async function completeLocally(store: LayerStoreApi, digest: Digest): Promise<StoredImage | undefined> {
  if (!(await store.hasBlob(digest))) return undefined;
  const parsed = JSON.parse((await store.readBlob(digest)).toString('utf8')) as unknown;
  if (isIndex('', parsed)) return undefined; // resolved by the caller through the index
  const manifest = parsed as ImageManifest;
  if (!(await store.hasBlob(manifest.config.digest))) return undefined;
  const image = await store.getImage(digest);
  for (const diffId of image.config.rootfs.diff_ids) {
    if ((await store.findLayerBlob(diffId)) === undefined) return undefined;
  }
  return image;
}

/** Size of the buffers handed to the store's blob writes: one write (one threadpool round trip) per MiB, not per network packet. */
const WRITE_BATCH = 1024 * 1024;

/** Re-chunks a byte stream into buffers of at least `size` bytes (the last may be smaller). */
async function* batched(source: AsyncIterable<Uint8Array>, size = WRITE_BATCH): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of source) {
    if (bytes === 0 && chunk.length >= size) {
      yield chunk;
      continue;
    }
    parts.push(chunk);
    bytes += chunk.length;
    if (bytes >= size) {
      yield Buffer.concat(parts, bytes);
      parts = [];
      bytes = 0;
    }
  }
  if (bytes > 0) yield Buffer.concat(parts, bytes);
}

async function decompressor(compression: 'gzip' | 'zstd', signal: AbortSignal): Promise<Duplex> {
  // zlib's default 16 KiB output chunks cost a callback (and a write) each; it fills 1 MiB ones directly.
  if (compression === 'gzip') return createGunzip({ chunkSize: WRITE_BATCH });
  const { execa } = await import('execa');
  return execa('zstd', ['-d', '-q', '-c'], { cancelSignal: signal, encoding: 'buffer' }).duplex({ binary: true });
}

/**
 * Downloads a layer blob into the store: the blob as sent (verified against `desc.digest`) and, when
 * it is compressed, the uncompressed tar (verified against `diffId`), and registers both forms.
 * Nothing is stored on failure. Also used by the registry build cache to import cached layers.
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
  let received = 0;
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const chunk of client.getBlob(repo, desc.digest, signal)) {
      received += chunk.length;
      if (received > desc.size) throw new RegistryError(`blob ${desc.digest} is larger than its descriptor's ${String(desc.size)} bytes`);
      onBytes(received);
      yield chunk;
    }
  }
  const opts = (expectedDigest: Digest): { expectedDigest: Digest; signal?: AbortSignal } => ({ expectedDigest, ...(signal !== undefined ? { signal } : {}) });
  if (compression === 'none') {
    if (desc.digest !== diffId) throw new RegistryError(`uncompressed layer ${desc.digest} does not match its diffID ${diffId}`);
    await wrapVerify(store.writeBlob(batched(counted()), opts(desc.digest)), desc.digest);
    await store.registerLayer({ diffId, digest: diffId, size: desc.size, mediaType: MEDIA_TYPES.ociLayer });
    return;
  }
  const inner = new AbortController();
  const linked = signal !== undefined ? AbortSignal.any([signal, inner.signal]) : inner.signal;
  const unpack = await decompressor(compression, linked);
  let sourceError: unknown;
  let unpackError: unknown;
  unpack.on('error', (err) => {
    unpackError ??= err;
    inner.abort(err);
  });
  // One pass over the network bytes: each batch goes to the compressed blob's write (this generator
  // is its source) and into the decompressor, whose output is the tar's write. No intermediate streams.
  async function* rawAndUnpack(): AsyncGenerator<Uint8Array> {
    let done = false;
    try {
      for await (const chunk of batched(counted())) {
        linked.throwIfAborted();
        if (!unpack.write(chunk)) await once(unpack, 'drain', { signal: linked });
        yield chunk;
      }
      done = true;
      unpack.end();
    } catch (err) {
      sourceError ??= err;
      throw err;
    } finally {
      if (!done) unpack.destroy();
    }
  }
  const fail = (err: unknown): never => {
    inner.abort(err);
    throw err;
  };
  const [rawResult, tarResult] = await Promise.allSettled([
    store.writeBlob(rawAndUnpack(), opts(desc.digest)).catch(fail),
    store.writeBlob(compression === 'gzip' ? unpack : batched(unpack), opts(diffId)).catch(fail),
  ]);
  if (signal?.aborted === true) throw signal.reason;
  // The most telling failure first: the network, then the blob's own digest, then its content.
  if (sourceError !== undefined && !isAbort(sourceError) && sourceError !== unpackError) throw sourceError;
  if (rawResult.status === 'rejected' && rawResult.reason !== unpackError && !isAbort(rawResult.reason)) throw toVerifyError(rawResult.reason, desc.digest);
  if (unpackError !== undefined) {
    throw new RegistryError(`layer ${desc.digest} does not decompress as ${compression}: ${messageOf(unpackError)}`, undefined, { cause: unpackError });
  }
  if (tarResult.status === 'rejected') throw toVerifyError(tarResult.reason, diffId);
  if (rawResult.status !== 'fulfilled' || tarResult.status !== 'fulfilled') throw new RegistryError(`layer ${desc.digest} could not be stored`);
  if (rawResult.value.size !== desc.size) throw new RegistryError(`blob ${desc.digest} has ${String(rawResult.value.size)} bytes, its descriptor says ${String(desc.size)}`);
  await store.registerLayer({ diffId, digest: diffId, size: tarResult.value.size, mediaType: MEDIA_TYPES.ociLayer });
  await store.registerLayer({ diffId, digest: desc.digest, size: desc.size, mediaType: desc.mediaType });
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || (err as NodeJS.ErrnoException).code === 'ABORT_ERR');
}

function toVerifyError(err: unknown, digest: Digest): unknown {
  if (err instanceof RegistryError || isAbort(err)) return err;
  const msg = messageOf(err);
  return /mismatch/i.test(msg)
    ? new RegistryError(`refused blob ${digest}: content does not match its digest (${msg})`, undefined, { cause: err })
    : err;
}

async function wrapVerify<T>(p: Promise<T>, digest: Digest): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw toVerifyError(err, digest);
  }
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
      const json = JSON.parse((await store.readBlob(digest)).toString('utf8')) as unknown;
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
  if (!(await store.hasBlob(cfgDesc.digest))) {
    onProgress?.({ type: 'blob-start', digest: cfgDesc.digest, size: cfgDesc.size, mediaType: cfgDesc.mediaType });
    await wrapVerify(store.writeBlob(client.getBlob(repo, cfgDesc.digest, signal), { expectedDigest: cfgDesc.digest, ...(signal !== undefined ? { signal } : {}) }), cfgDesc.digest);
    onProgress?.({ type: 'blob-done', digest: cfgDesc.digest, size: cfgDesc.size, how: 'transferred' });
  }
  const config = JSON.parse((await store.readBlob(cfgDesc.digest)).toString('utf8')) as ImageConfig;
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) {
    throw new RegistryError(`${name}: the manifest has ${String(manifest.layers.length)} layers but the config names ${String(diffIds.length)} diffIDs`);
  }

  await mapLimit(manifest.layers, options.concurrency ?? 4, async (desc, i) => {
    const diffId = diffIds[i] as Digest;
    const have = (await store.findLayerBlob(diffId)) !== undefined;
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
