/**
 * The blobs of layers in their variants: `layerinfo/<diffID hex>/<compression>.json` records which blob holds a
 * layer uncompressed, gzipped or zstd-compressed. Layers are kept UNCOMPRESSED locally
 * (`application/vnd.oci.image.layer.v1.tar`, digest = diffID) and compressed lazily, once, by
 * {@link LayerBlobs.compress} at export/push time; the compressed blob is cached and found again by diffID +
 * compression. A layer stored only compressed (pulled) or only unpacked (built) gets its uncompressed tar by
 * decompressing or regenerating it, verified against the diffID.
 */
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { RuntimeError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Digest } from '../oci/types.js';
import type { Blobs } from './blobs.js';
import { zlib, type Compressor } from './compression.js';
import { digestHex, readJson, writeFileAtomic } from './files.js';
import type { Locks } from './locks.js';
import type { Compression, LayerInfo } from './types.js';
import type { UnpackedLayers } from './unpacked-layers.js';

const MEDIA_TYPE_OF: Record<Compression, string> = {
  none: MEDIA_TYPES.ociLayer,
  gzip: MEDIA_TYPES.ociLayerGzip,
  zstd: MEDIA_TYPES.ociLayerZstd,
};

/** Options of {@link LayerBlobs.compress}. */
export interface CompressOptions {
  readonly signal?: AbortSignal;
  /** gzip level. @default 6 (Docker's and BuildKit's default) */
  readonly level?: number;
  /**
   * Called with each piece of the compressed blob, in order, while it is produced and stored (a push streams
   * it to the registry at the same time); awaited, so a slow consumer slows the compression down. Not called
   * at all when the blob was already stored. A throw fails the compression.
   */
  readonly onChunk?: (chunk: Uint8Array) => Promise<void>;
}

/** Passes a stream through, handing each piece to `onChunk` (awaited) before it goes on. */
async function* tapped(source: AsyncIterable<Uint8Array>, onChunk: ((chunk: Uint8Array) => Promise<void>) | undefined): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    if (onChunk !== undefined) await onChunk(chunk);
    yield chunk;
  }
}

export function compressionOf(mediaType: string): Compression {
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.gzip')) return 'gzip';
  if (mediaType.endsWith('+zstd')) return 'zstd';
  return 'none';
}

/** The layer blob variants of the store at `root`. Holds no state: every record is a file. */
export class LayerBlobs {
  readonly #root: string;
  readonly #blobs: Blobs;
  readonly #locks: Locks;
  readonly #unpacked: UnpackedLayers;
  readonly #compressor: Compressor;

  constructor(root: string, parts: { blobs: Blobs; locks: Locks; unpacked: UnpackedLayers; compressor: Compressor }) {
    this.#root = root;
    this.#blobs = parts.blobs;
    this.#locks = parts.locks;
    this.#unpacked = parts.unpacked;
    this.#compressor = parts.compressor;
  }

  #infoPath(diffId: Digest, compression: Compression): string {
    return path.join(this.#root, 'layerinfo', digestHex(diffId), `${compression}.json`);
  }

  /** Records a layer blob's diffID ↔ digest mapping (an uncompressed layer maps to itself). */
  async register(layer: LayerInfo): Promise<void> {
    const compression = compressionOf(layer.mediaType);
    const file = this.#infoPath(layer.diffId, compression);
    const { diffId, digest, size, mediaType } = layer;
    const text = JSON.stringify({ diffId, digest, size, mediaType });
    // Every build re-registers its image's layers; an unchanged record is left alone (a read is far
    // cheaper than a write and rename, and a fully cached rebuild should write next to nothing).
    let stored: string | undefined;
    try {
      stored = readFileSync(file, 'utf8');
    } catch {
      stored = undefined; // not registered yet
    }
    if (stored === text) return;
    await writeFileAtomic(this.#root, file, text);
  }

  /** The stored blob of a layer in `compression`, without regenerating anything. */
  async stored(diffId: Digest, compression: Compression): Promise<LayerInfo | undefined> {
    const info = await readJson<LayerInfo>(this.#infoPath(diffId, compression));
    if (info && (await this.#blobs.hasBlob(info.digest))) return info;
    if (compression === 'none') {
      // An uncompressed layer's blob digest is its diffID, so it needs no record to be found.
      try {
        const st = await fs.stat(this.#blobs.blobPath(diffId));
        return { diffId, digest: diffId, size: st.size, mediaType: MEDIA_TYPES.ociLayer };
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  /** Whether any blob variant of the layer is stored. */
  async hasAny(diffId: Digest): Promise<boolean> {
    for (const compression of ['none', 'gzip', 'zstd'] as const) {
      if (await this.stored(diffId, compression)) return true;
    }
    return false;
  }

  /** See {@link LayerStoreApi.findLayerBlob}. */
  async find(diffId: Digest, compression: Compression = 'none'): Promise<LayerInfo | undefined> {
    const stored = await this.stored(diffId, compression);
    if (stored || compression !== 'none') return stored;
    // Only compressed (a pulled layer, whose diffID is checked on first use): decompress it, verifying the diffID.
    // Preferred to regenerating from an unpacked directory, which reproduces only tars that kiln wrote itself.
    const decompressed = await this.#decompressed(diffId);
    if (decompressed) return decompressed;
    const regenerated = await this.#unpacked.regeneratedTar(diffId);
    if (!regenerated) return undefined;
    // Only unpacked (a lazily snapshotted layer): write the blob now, since the caller wants a file.
    const { size } = await this.#blobs.writeBlob(regenerated, { expectedDigest: diffId });
    return { diffId, digest: diffId, size, mediaType: MEDIA_TYPES.ociLayer };
  }

  /** Writes a layer's uncompressed blob from a stored compressed one, verified against the diffID; undefined when there is none. */
  async #decompressed(diffId: Digest, signal?: AbortSignal): Promise<LayerInfo | undefined> {
    for (const variant of ['zstd', 'gzip'] as const) {
      const info = await this.stored(diffId, variant);
      if (!info) continue;
      try {
        const { size } = await this.#blobs.writeBlob(await this.#variantTar(info, variant, signal), { expectedDigest: diffId, ...(signal ? { signal } : {}) });
        return { diffId, digest: diffId, size, mediaType: MEDIA_TYPES.ociLayer };
      } catch (err) {
        if (!/digest mismatch/.test(messageOf(err))) throw err;
        throw new RuntimeError(`layer ${diffId}: its ${variant} blob ${info.digest} does not decompress to that diffID (${messageOf(err)})`, { cause: err });
      }
    }
    return undefined;
  }

  /** The uncompressed tar of a layer as a stream, from whichever variant is stored (or regenerated from its directory). */
  async openTar(diffId: Digest, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    for (const compression of ['none', 'zstd', 'gzip'] as const) {
      const info = await this.stored(diffId, compression);
      if (info) return this.#variantTar(info, compression, signal);
    }
    const regenerated = await this.#unpacked.regeneratedTar(diffId, signal);
    if (regenerated) return regenerated;
    throw new RuntimeError(`layer ${diffId} is not in the store`);
  }

  /** The uncompressed content of one stored blob variant of a layer (not verified against the diffID here). */
  async #variantTar(info: LayerInfo, compression: Compression, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    if (compression === 'none') return this.#blobs.openBlob(info.digest);
    if (compression === 'gzip') {
      const raw = this.#blobs.openBlob(info.digest);
      const gunzip = zlib().createGunzip({ chunkSize: 256 * 1024 });
      raw.on('error', (err) => gunzip.destroy(err));
      gunzip.on('close', () => raw.destroy());
      return raw.pipe(gunzip);
    }
    const { execa } = await import('execa');
    const child = execa('zstd', ['-d', '-q', '-c'], {
      inputFile: this.#blobs.blobPath(info.digest),
      encoding: 'buffer',
      buffer: false,
      ...(signal ? { cancelSignal: signal } : {}),
    });
    child.catch(() => undefined); // errors surface through the stream
    return child.iterable({ binary: true }) as AsyncIterable<Uint8Array>;
  }

  /**
   * Returns the layer's blob in `compression`, compressing the uncompressed blob once and caching the result
   * (a second call finds the cached blob). gzip is parallel and deterministic (the compressor's gzip: fixed
   * chunks compressed independently, concatenated members, valid per RFC 1952). zstd runs `zstd -3 -T2`.
   */
  async compress(diffId: Digest, compression: Compression, options: CompressOptions = {}): Promise<LayerInfo> {
    const found = await this.find(diffId, compression);
    if (found) return found;
    if (compression === 'none') throw new RuntimeError(`layer ${diffId} is not stored uncompressed`);
    return this.#locks.withLock(`compress-${digestHex(diffId)}-${compression}`, async () => {
      const again = await this.find(diffId, compression);
      if (again) return again;
      const { signal } = options;
      // Only another compressed variant (a pulled layer): decompress it to the uncompressed blob, verifying the diffID.
      let plain = (await this.stored(diffId, 'none')) ?? (await this.#decompressed(diffId, signal));
      // The compressor's gzip copies each chunk before it asks for the next, so the tar may reuse its buffers.
      const regenerated = plain ? undefined : await this.#unpacked.regeneratedTar(diffId, signal, compression === 'gzip');
      if (!plain && !regenerated) throw new RuntimeError(`layer ${diffId} is not stored uncompressed`);
      const writeOptions = signal ? { signal } : {};
      let written: { digest: Digest; size: number };
      if (compression === 'gzip') {
        // A lazily stored layer is compressed straight from its regenerated tar: no uncompressed blob is written.
        const source = regenerated ?? this.#blobs.blobPath(diffId);
        written = await this.#blobs.writeBlob(tapped(this.#compressor.gzip(source, options.level ?? 6, signal), options.onChunk), writeOptions);
      } else {
        // Shortcut: zstd reads a file, so a lazily stored layer gets its uncompressed blob written first.
        plain ??= await this.find(diffId, 'none');
        if (!plain) throw new RuntimeError(`layer ${diffId} is not stored uncompressed`);
        const { execa } = await import('execa');
        const child = execa('zstd', ['-3', '-T2', '-q', '-c'], {
          inputFile: this.#blobs.blobPath(diffId),
          encoding: 'buffer',
          buffer: false,
          ...(signal ? { cancelSignal: signal } : {}),
        });
        const [result] = await Promise.allSettled([this.#blobs.writeBlob(tapped(child.iterable({ binary: true }) as AsyncIterable<Uint8Array>, options.onChunk), writeOptions), child]);
        await child;
        if (result.status === 'rejected') throw result.reason;
        written = result.value;
      }
      const info: LayerInfo = { diffId, digest: written.digest, size: written.size, mediaType: MEDIA_TYPE_OF[compression] };
      await this.register(info);
      return info;
    });
  }
}
