/**
 * A small temp-dir implementation of LayerStoreApi for unit tests that should not depend on the real
 * store's details. Blobs are written to tmp/ and renamed into place, like the real store.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest, ImageConfig, ImageManifest } from '../../src/image/types.js';
import { MEDIA_TYPES } from '../../src/image/types.js';
import type { Compression, LayerInfo, LayerStoreApi, StoredImage, WriteBlobOptions } from '../../src/store/types.js';

const hexOf = (d: Digest): string => d.slice('sha256:'.length);

/** Compression of a layer media type. */
function compressionOf(mediaType: string): Compression {
  if (mediaType.endsWith('gzip')) return 'gzip';
  if (mediaType.endsWith('zstd')) return 'zstd';
  return 'none';
}

/** Creates a fake store in a fresh temp dir; call `dispose()` to remove it. */
export async function createFakeStore(): Promise<LayerStoreApi & { dispose(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'kiln-fake-store-'));
  await mkdir(join(root, 'blobs', 'sha256'), { recursive: true });
  await mkdir(join(root, 'tmp'), { recursive: true });
  const layers: LayerInfo[] = [];
  const tags = new Map<string, Digest>();
  const cache = new Map<string, unknown>();
  const blobPath = (d: Digest): string => join(root, 'blobs', 'sha256', hexOf(d));

  const store = {
    root,
    async hasBlob(d: Digest) {
      return stat(blobPath(d)).then(() => true, () => false);
    },
    blobPath,
    async writeBlob(source: Readable | AsyncIterable<Uint8Array>, options: WriteBlobOptions = {}) {
      const tmp = join(root, 'tmp', randomUUID());
      const hash = createHash('sha256');
      let size = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          size += chunk.length;
          cb(null, chunk);
        },
      });
      try {
        const input = source instanceof Readable ? source : Readable.from(source);
        await pipeline(input, tap, createWriteStream(tmp), options.signal ? { signal: options.signal } : {});
        const digest: Digest = `sha256:${hash.digest('hex')}`;
        if (options.expectedDigest && options.expectedDigest !== digest) {
          throw new Error(`digest mismatch: expected ${options.expectedDigest}, got ${digest}`);
        }
        await rename(tmp, blobPath(digest));
        return { digest, size };
      } finally {
        await rm(tmp, { force: true });
      }
    },
    async writeBlobBytes(data: Uint8Array | string) {
      const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
      const digest: Digest = `sha256:${createHash('sha256').update(buf).digest('hex')}`;
      await writeFile(blobPath(digest), buf);
      return { digest, size: buf.length };
    },
    readBlob: (d: Digest) => readFile(blobPath(d)),
    openBlob: (d: Digest) => createReadStream(blobPath(d)),
    async registerLayer(layer: LayerInfo) {
      if (!layers.some((l) => l.digest === layer.digest)) layers.push(layer);
    },
    async unpackedLayer(): Promise<string> {
      throw new Error('fake store: unpackedLayer is not implemented');
    },
    async findLayerBlob(diffId: Digest, compression: Compression = 'none') {
      return layers.find((l) => l.diffId === diffId && compressionOf(l.mediaType) === compression);
    },
    async putImage(config: ImageConfig, imageLayers: readonly LayerInfo[]) {
      const configBlob = await store.writeBlobBytes(JSON.stringify(config));
      const manifest: ImageManifest = {
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.ociManifest,
        config: { mediaType: MEDIA_TYPES.ociConfig, digest: configBlob.digest, size: configBlob.size },
        layers: imageLayers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      };
      const m = await store.writeBlobBytes(JSON.stringify(manifest));
      return store.getImage(m.digest);
    },
    async getImage(manifestDigest: Digest): Promise<StoredImage> {
      const manifest = JSON.parse((await readFile(blobPath(manifestDigest))).toString()) as ImageManifest;
      const config = JSON.parse((await readFile(blobPath(manifest.config.digest))).toString()) as ImageConfig;
      return { manifestDigest, manifest, configDigest: manifest.config.digest, config };
    },
    async tag(name: string, d: Digest) {
      tags.set(name, d);
    },
    async resolveTag(name: string) {
      return tags.get(name);
    },
    async untag(name: string) {
      return tags.delete(name);
    },
    async listTags() {
      return [...tags].map(([name, digest]) => ({ name, digest }));
    },
    async getCache<T>(key: string) {
      return cache.get(key) as T | undefined;
    },
    async putCache(key: string, value: unknown) {
      cache.set(key, value);
    },
    async withLock<T>(_name: string, fn: () => Promise<T>) {
      return fn();
    },
    async prune() {
      return { removedBlobs: 0, freedBytes: 0 };
    },
    async dispose() {
      await rm(root, { recursive: true, force: true });
    },
  };
  return store;
}
