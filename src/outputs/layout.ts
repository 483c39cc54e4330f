/**
 * The pieces the `oci` and `docker` exporters share: the manifest with the layers in the wanted compression, the
 * layout's files (blobs, index.json, oci-layout) and writing them as a reproducible tar or a directory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { RuntimeError } from '../errors.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Descriptor, Digest, ImageIndex, ImageManifest } from '../oci/types.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../store/tar.js';
import type { TarHeader } from '../store/tar.js';
import type { Compression, LayerInfo, LayerStoreApi, StoredImage } from '../store/types.js';
import type { ExportOptions } from './types.js';

const LAYER_MEDIA_TYPE: Record<Compression, string> = {
  none: MEDIA_TYPES.ociLayer,
  gzip: MEDIA_TYPES.ociLayerGzip,
  zstd: MEDIA_TYPES.ociLayerZstd,
};

export const hexOf = (digest: Digest): string => digest.slice('sha256:'.length);

/** A reference split into its repository and tag (`busybox` → `busybox`, `latest`; `host:5000/a:v1` → `host:5000/a`, `v1`). */
export function splitReference(ref: string): { repository: string; tag: string } {
  const noDigest = ref.split('@')[0] ?? ref;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  if (colon > slash) return { repository: noDigest.slice(0, colon), tag: noDigest.slice(colon + 1) };
  return { repository: noDigest, tag: 'latest' };
}

export function reportWrites(layers: readonly LayerInfo[], options: ExportOptions): void {
  for (const [index, l] of layers.entries()) options.onProgress?.({ kind: 'layer-write', index, total: layers.length, diffId: l.diffId });
}

/** Writes `source` to a stream (left open: stdout outlives the export). */
async function writeStream(dest: Writable, source: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
  await pipeline(Readable.from(source), dest, { end: false, ...(signal ? { signal } : {}) });
}

/** Writes a tar to `dest`: a file (atomically) or a stream. */
export async function writeTar(dest: string | Writable, source: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
  if (typeof dest === 'string') await writeFileAtomically(dest, source, signal);
  else await writeStream(dest, source, signal);
}

/** Writes into a temp file beside `dest` and renames it into place, so `dest` is never half-written. */
async function writeFileAtomically(dest: string, source: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
  await mkdir(dirname(dest), { recursive: true });
  const tmp = `${dest}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await pipeline(Readable.from(source), createWriteStream(tmp), signal ? { signal } : {});
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Compresses a stored uncompressed layer, stores the result and registers it (the cache for the next export). */
async function compressLayer(store: LayerStoreApi, diffId: Digest, compression: 'gzip' | 'zstd', signal?: AbortSignal): Promise<LayerInfo> {
  // The real store compresses in parallel and caches under a lock; use it when it is there.
  const withCompress = store as LayerStoreApi & {
    compressLayer?: (d: Digest, c: Compression, o?: { signal?: AbortSignal }) => Promise<LayerInfo>;
  };
  if (typeof withCompress.compressLayer === 'function') {
    return withCompress.compressLayer(diffId, compression, signal ? { signal } : {});
  }
  const plain = await store.findLayerBlob(diffId, 'none');
  if (!plain) throw new RuntimeError(`layer ${diffId} is not in the store uncompressed`);
  let written: { digest: Digest; size: number };
  if (compression === 'gzip') {
    const gzip = createGzip({ level: 6 });
    const done = pipeline(store.openBlob(plain.digest), gzip, signal ? { signal } : {});
    [written] = await Promise.all([store.writeBlob(gzip, signal ? { signal } : {}), done]);
  } else {
    const { execa } = await import('execa');
    const child = execa('zstd', ['-3', '-T2', '-q', '-c'], {
      inputFile: store.blobPath(plain.digest),
      encoding: 'buffer',
      buffer: false,
      ...(signal ? { cancelSignal: signal } : {}),
    });
    [written] = await Promise.all([store.writeBlob(child.iterable({ binary: true }) as AsyncIterable<Uint8Array>), child]);
  }
  const info: LayerInfo = { diffId, digest: written.digest, size: written.size, mediaType: LAYER_MEDIA_TYPE[compression] };
  await store.registerLayer(info);
  return info;
}

/** A manifest as an export writes it. */
export interface ExportManifest {
  readonly bytes: Buffer;
  readonly digest: Digest;
  readonly mediaType: string;
  readonly layers: LayerInfo[];
}

/** The image's manifest with its layers in `compression`, serialised; reuses the stored bytes when nothing changes. */
export async function manifestFor(
  image: StoredImage,
  store: LayerStoreApi,
  compression: Compression,
  options: ExportOptions,
): Promise<ExportManifest> {
  const diffIds = image.config.rootfs.diff_ids;
  if (diffIds.length !== image.manifest.layers.length) {
    throw new RuntimeError(`image ${image.manifestDigest}: the config lists ${diffIds.length} layers, the manifest ${image.manifest.layers.length}`);
  }
  const layers: LayerInfo[] = [];
  for (const [index, diffId] of diffIds.entries()) {
    options.signal?.throwIfAborted();
    let info = await store.findLayerBlob(diffId, compression);
    if (!info) {
      if (compression === 'none') throw new RuntimeError(`layer ${diffId} of image ${image.manifestDigest} is not in the store`);
      options.onProgress?.({ kind: 'layer-compress', index, total: diffIds.length, diffId });
      info = await compressLayer(store, diffId, compression, options.signal);
    }
    layers.push(info);
  }
  const same = layers.every((l, i) => l.digest === image.manifest.layers[i]?.digest && l.mediaType === image.manifest.layers[i]?.mediaType);
  if (same) return { bytes: await store.readBlob(image.manifestDigest), digest: image.manifestDigest, mediaType: image.manifest.mediaType ?? MEDIA_TYPES.ociManifest, layers };
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: image.manifest.config.mediaType, digest: image.configDigest, size: image.manifest.config.size },
    layers: layers.map((l): Descriptor => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    ...(image.manifest.annotations ? { annotations: image.manifest.annotations } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, mediaType: MEDIA_TYPES.ociManifest, layers };
}

/** A file of an archive or a layout being written: bytes in memory or a blob of the store. */
export type OutFile = { readonly name: string; readonly bytes: Buffer } | { readonly name: string; readonly path: string; readonly size: number };

const fileHeader = (name: string, size: number): TarHeader => ({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, size, mtime: 0 });
const dirHeader = (name: string): TarHeader => ({ name, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 });

/** A tar of `files` (sorted by name, parent directories first) with fixed owners, modes and mtimes. */
export async function* tarOf(files: readonly OutFile[], signal?: AbortSignal): AsyncGenerator<Buffer> {
  const sorted = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const dirs = new Set<string>();
  for (const f of sorted) {
    const parts = f.name.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        yield encodeHeader(dirHeader(d));
      }
    }
    if ('bytes' in f) {
      yield encodeHeader(fileHeader(f.name, f.bytes.length));
      yield f.bytes;
      yield padding(f.bytes.length);
    } else {
      yield encodeHeader(fileHeader(f.name, f.size));
      let n = 0;
      for await (const chunk of createReadStream(f.path, signal ? { signal } : {})) {
        n += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      if (n !== f.size) throw new RuntimeError(`${f.path} changed size while it was exported`);
      yield padding(f.size);
    }
  }
  yield END_OF_ARCHIVE;
}

/** Writes `files` into the directory `dest` (blobs are copied; existing blobs of the same size are kept). */
export async function writeDirectory(dest: string, files: readonly OutFile[], signal?: AbortSignal): Promise<void> {
  for (const f of files) {
    signal?.throwIfAborted();
    const target = join(dest, ...f.name.split('/'));
    await mkdir(dirname(target), { recursive: true });
    if ('bytes' in f) {
      await writeFile(`${target}.tmp-${process.pid}`, f.bytes);
      await rename(`${target}.tmp-${process.pid}`, target);
    } else {
      const existing = await stat(target).catch(() => undefined);
      if (existing?.isFile() && existing.size === f.size && f.name.startsWith('blobs/')) continue;
      await copyFile(f.path, `${target}.tmp-${process.pid}`);
      await rename(`${target}.tmp-${process.pid}`, target);
    }
  }
}

/** The blob files of an image's layout: config, manifest and layers (deduplicated). */
export function blobFiles(store: LayerStoreApi, image: StoredImage, manifest: ExportManifest): OutFile[] {
  const files = new Map<string, OutFile>();
  const configName = `blobs/sha256/${hexOf(image.configDigest)}`;
  files.set(configName, { name: configName, path: store.blobPath(image.configDigest), size: image.manifest.config.size });
  const manifestName = `blobs/sha256/${hexOf(manifest.digest)}`;
  files.set(manifestName, { name: manifestName, bytes: manifest.bytes });
  for (const l of manifest.layers) {
    const name = `blobs/sha256/${hexOf(l.digest)}`;
    files.set(name, { name, path: store.blobPath(l.digest), size: l.size });
  }
  return [...files.values()];
}

/** `index.json` of a layout holding one image under `names` (full names: one entry each, as containerd's archive writer). */
export function indexJson(image: StoredImage, manifest: ExportManifest, names: readonly string[]): Buffer {
  const platform = {
    architecture: image.config.architecture,
    os: image.config.os,
    ...(image.config.variant !== undefined ? { variant: image.config.variant } : {}),
  };
  const base = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length };
  const manifests: Descriptor[] = [];
  for (const name of new Set(names)) {
    // The OCI ref name is the tag alone; containerd's annotation carries the whole name.
    const ref = name.includes('@') ? name.slice(name.lastIndexOf('/') + 1).replace(/^[^:@]*[:]?/, '') : splitReference(name).tag;
    manifests.push({ ...base, annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': ref }, platform });
  }
  if (manifests.length === 0) manifests.push({ ...base, platform });
  const index: ImageIndex = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests };
  return Buffer.from(`${JSON.stringify(index)}\n`);
}

export const OCI_LAYOUT = Buffer.from(`${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
