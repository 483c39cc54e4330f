/**
 * Image outputs: an OCI image layout (directory or tar), a docker-archive tar (what `docker save` writes
 * and `docker load` / `podman load` / skopeo read), and the image's final filesystem (directory or tar).
 * Every output is reproducible: the same image gives byte-identical files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { RuntimeError, assertNever, messageOf } from '../errors.js';
import { END_OF_ARCHIVE, encodeHeader, padding, readTar } from '../store/tar.js';
import type { TarHeader } from '../store/tar.js';
import type { Compression, LayerInfo, LayerStoreApi, StoredImage } from '../store/types.js';
import { familiarImageName, fullImageName } from './names.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Descriptor, Digest, ImageIndex, ImageManifest } from '../oci/types.js';

/** Where and how to write an image. */
export type ExportOutput =
  | {
      /**
       * An OCI image layout: a directory, or a tar of one (`tar`; by default when `dest` ends in `.tar`). A stream
       * `dest` (stdout for `-o -`) always gets the tar.
       */
      readonly type: 'oci';
      readonly dest: string | Writable;
      /**
       * Image names, each written as BuildKit writes them: `io.containerd.image.name` (the full name,
       * `docker.io/library/app:1`) and `org.opencontainers.image.ref.name` (its tag) on an index entry. @default []
       */
      readonly tags?: readonly string[];
      /** Layer compression. @default 'gzip' */
      readonly compression?: Compression;
      /** Write a tar (true) or a directory (false). @default whether `dest` ends in `.tar` */
      readonly tar?: boolean;
    }
  | {
      /**
       * A docker-archive tar (`docker save` format, also a valid OCI layout). `tags` become manifest.json's
       * RepoTags (docker's short form, `app:1`) and index.json's names, as for `oci`.
       */
      readonly type: 'docker';
      readonly dest: string | Writable;
      readonly tags: readonly string[];
      /** Layer compression. @default 'none' (the plain layer tars `docker save` writes) */
      readonly compression?: Compression;
    }
  | {
      /** The image's final filesystem, unpacked into a directory. */
      readonly type: 'local';
      readonly dest: string;
    }
  | {
      /** The image's final filesystem as one tar file (or stream). */
      readonly type: 'tar';
      readonly dest: string | Writable;
    };

/** Progress of an export, one event per layer handled. */
export interface ExportProgressEvent {
  readonly kind: 'layer-compress' | 'layer-write';
  readonly index: number;
  readonly total: number;
  readonly diffId: Digest;
}

/** Options of {@link exportImage}. */
export interface ExportOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: ExportProgressEvent) => void;
}

/** What {@link exportImage} wrote. */
export interface ExportResult {
  /**
   * The digest of the manifest as written: it differs from the stored one when the export's layers are compressed
   * otherwise than the store's (the store keeps built layers uncompressed; an OCI export gzips them by default).
   * For `local` and `tar`, which hold no manifest, the stored image's.
   */
  readonly manifestDigest: Digest;
  /** The manifest's descriptor (media type, digest, size) as an index would name it; absent for `local` and `tar`. */
  readonly descriptor?: Descriptor;
  readonly configDigest: Digest;
  /** The image names written into the archive, in their full form (`docker.io/library/app:1`). */
  readonly names: readonly string[];
  /** The destination path, `-` for a stream. */
  readonly dest: string;
}

const LAYER_MEDIA_TYPE: Record<Compression, string> = {
  none: MEDIA_TYPES.ociLayer,
  gzip: MEDIA_TYPES.ociLayerGzip,
  zstd: MEDIA_TYPES.ociLayerZstd,
};

const hexOf = (digest: Digest): string => digest.slice('sha256:'.length);

export { familiarImageName, fullImageName };

/** A reference split into its repository and tag (`busybox` → `busybox`, `latest`; `host:5000/a:v1` → `host:5000/a`, `v1`). */
export function splitReference(ref: string): { repository: string; tag: string } {
  const noDigest = ref.split('@')[0] ?? ref;
  const slash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  if (colon > slash) return { repository: noDigest.slice(0, colon), tag: noDigest.slice(colon + 1) };
  return { repository: noDigest, tag: 'latest' };
}

/** Writes `source` to a stream (left open: stdout outlives the export). */
async function writeStream(dest: Writable, source: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
  await pipeline(Readable.from(source), dest, { end: false, ...(signal ? { signal } : {}) });
}

/** Writes a tar to `dest`: a file (atomically) or a stream. */
async function writeTar(dest: string | Writable, source: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
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
interface ExportManifest {
  readonly bytes: Buffer;
  readonly digest: Digest;
  readonly mediaType: string;
  readonly layers: LayerInfo[];
}

/** The image's manifest with its layers in `compression`, serialised; reuses the stored bytes when nothing changes. */
async function manifestFor(
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
type OutFile = { readonly name: string; readonly bytes: Buffer } | { readonly name: string; readonly path: string; readonly size: number };

const fileHeader = (name: string, size: number): TarHeader => ({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, size, mtime: 0 });
const dirHeader = (name: string): TarHeader => ({ name, type: 'directory', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 });

/** A tar of `files` (sorted by name, parent directories first) with fixed owners, modes and mtimes. */
async function* tarOf(files: readonly OutFile[], signal?: AbortSignal): AsyncGenerator<Buffer> {
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
async function writeDirectory(dest: string, files: readonly OutFile[], signal?: AbortSignal): Promise<void> {
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
function blobFiles(store: LayerStoreApi, image: StoredImage, manifest: ExportManifest): OutFile[] {
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
function indexJson(image: StoredImage, manifest: ExportManifest, names: readonly string[]): Buffer {
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

const OCI_LAYOUT = Buffer.from(`${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);


/**
 * Reads every layer and yields the image's final filesystem as one tar: each path's topmost version,
 * with whiteouts (`.wh.<name>`, `.wh..wh..opq`) applied and left out. Pass 1 reads only headers to
 * decide which entry wins for each path; pass 2 copies the winners in layer order.
 */
export async function* flattenLayers(store: LayerStoreApi, diffIds: readonly Digest[], signal?: AbortSignal): AsyncGenerator<Buffer> {
  const open = async (diffId: Digest): Promise<AsyncIterable<Uint8Array>> => {
    const info = await store.findLayerBlob(diffId, 'none');
    if (!info) throw new RuntimeError(`layer ${diffId} is not in the store`);
    return store.openBlob(info.digest);
  };
  const clean = (name: string): string => name.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
  interface Winner { layer: number; ordinal: number; directory: boolean }
  const final = new Map<string, Winner>();
  const removeBelow = (path: string, layer: number, self: boolean): void => {
    const prefix = path === '' ? '' : `${path}/`;
    for (const [key, w] of final) {
      if (w.layer < layer && ((self && key === path) || key.startsWith(prefix))) final.delete(key);
    }
  };
  for (const [layer, diffId] of diffIds.entries()) {
    let ordinal = 0;
    for await (const { header } of readTar(await open(diffId), signal)) {
      const name = clean(header.name);
      const slash = name.lastIndexOf('/');
      const parent = slash === -1 ? '' : name.slice(0, slash);
      const base = name.slice(slash + 1);
      if (base === '.wh..wh..opq') removeBelow(parent, layer, false);
      else if (base.startsWith('.wh.')) removeBelow(parent === '' ? base.slice(4) : `${parent}/${base.slice(4)}`, layer, true);
      else if (name !== '') {
        const old = final.get(name);
        // A non-directory replacing a directory hides everything the lower layers had under it.
        if (old?.directory && header.type !== 'directory') removeBelow(name, layer, false);
        final.set(name, { layer, ordinal, directory: header.type === 'directory' });
      }
      ordinal++;
    }
  }
  for (const [layer, diffId] of diffIds.entries()) {
    let ordinal = 0;
    for await (const { header, body } of readTar(await open(diffId), signal)) {
      const name = clean(header.name);
      const w = final.get(name);
      if (w?.layer === layer && w.ordinal === ordinal) {
        const out: TarHeader = { ...header, name };
        if (header.type === 'link' && header.linkname !== undefined) out.linkname = clean(header.linkname);
        yield encodeHeader(out);
        if (header.type === 'file') {
          for await (const chunk of body) yield chunk;
          yield padding(header.size);
        }
      }
      ordinal++;
    }
  }
  yield END_OF_ARCHIVE;
}

/**
 * Writes a stored image to `output`. OCI layouts get compressed layers (gzip unless asked otherwise;
 * compressed blobs are cached in the store) and a re-written manifest; docker archives keep the
 * plain layer tars `docker save` writes; `local` and `tar` get the final filesystem.
 */
export async function exportImage(
  image: StoredImage,
  store: LayerStoreApi,
  output: ExportOutput,
  options: ExportOptions = {},
): Promise<ExportResult> {
  const { signal } = options;
  const destName = typeof output.dest === 'string' ? output.dest : '-';
  const names = output.type === 'oci' || output.type === 'docker' ? [...new Set((output.tags ?? []).map(fullImageName))] : [];
  const result = (manifest?: ExportManifest): ExportResult => ({
    manifestDigest: manifest?.digest ?? image.manifestDigest,
    ...(manifest ? { descriptor: { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length } } : {}),
    configDigest: image.configDigest,
    names,
    dest: destName,
  });
  try {
    switch (output.type) {
      case 'oci': {
        const manifest = await manifestFor(image, store, output.compression ?? 'gzip', options);
        const files: OutFile[] = [
          ...blobFiles(store, image, manifest),
          { name: 'index.json', bytes: indexJson(image, manifest, names) },
          { name: 'oci-layout', bytes: OCI_LAYOUT },
        ];
        reportWrites(manifest.layers, options);
        const asTar = typeof output.dest !== 'string' || (output.tar ?? output.dest.endsWith('.tar'));
        if (asTar) await writeTar(output.dest, tarOf(files, signal), signal);
        else await writeDirectory(output.dest as string, files, signal);
        return result(manifest);
      }
      case 'docker': {
        const manifest = await manifestFor(image, store, output.compression ?? 'none', options);
        // docker load reads manifest.json: RepoTags in docker's short form, as `docker save` writes them.
        const tags = names.filter((n) => !n.includes('@')).map(familiarImageName);
        const entry = {
          Config: `blobs/sha256/${hexOf(image.configDigest)}`,
          RepoTags: tags,
          Layers: manifest.layers.map((l) => `blobs/sha256/${hexOf(l.digest)}`),
        };
        const top = manifest.layers.at(-1);
        const repositories: Record<string, Record<string, string>> = {};
        for (const t of tags) {
          const { repository, tag } = splitReference(t);
          if (top) (repositories[repository] ??= {})[tag] = hexOf(top.digest);
        }
        const files: OutFile[] = [
          ...blobFiles(store, image, manifest),
          { name: 'index.json', bytes: indexJson(image, manifest, names) },
          { name: 'manifest.json', bytes: Buffer.from(`${JSON.stringify([entry])}\n`) },
          { name: 'oci-layout', bytes: OCI_LAYOUT },
          { name: 'repositories', bytes: Buffer.from(`${JSON.stringify(repositories)}\n`) },
        ];
        reportWrites(manifest.layers, options);
        await writeTar(output.dest, tarOf(files, signal), signal);
        return result(manifest);
      }
      case 'tar':
        await writeTar(output.dest, flattenLayers(store, image.config.rootfs.diff_ids, signal), signal);
        return result();
      case 'local': {
        const { extractLayer } = await import('../store/extract.js');
        await mkdir(output.dest, { recursive: true });
        await extractLayer(flattenLayers(store, image.config.rootfs.diff_ids, signal), output.dest, {
          mode: 'apply',
          ...(signal ? { signal } : {}),
        });
        return result();
      }
      default:
        return assertNever(output);
    }
  } catch (cause) {
    if (signal?.aborted && cause === signal.reason) throw cause;
    if (cause instanceof RuntimeError) throw cause;
    throw new RuntimeError(`exporting image ${image.manifestDigest} to ${typeof output.dest === 'string' ? output.dest : 'a stream'}: ${messageOf(cause)}`, { cause });
  }
}

function reportWrites(layers: readonly LayerInfo[], options: ExportOptions): void {
  for (const [index, l] of layers.entries()) options.onProgress?.({ kind: 'layer-write', index, total: layers.length, diffId: l.diffId });
}
