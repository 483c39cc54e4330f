/**
 * Image inputs: an OCI image layout (directory or tar), a docker-archive tar (`docker save`), or a root
 * filesystem (directory or tar) that becomes a one-layer image. Layers are stored uncompressed (digest =
 * diffID); every blob is verified against its digest while it streams, and a failure leaves no tag and
 * no partial blob behind.
 */
import { parseUntrustedJson } from '../untrusted-json.js';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, lstat, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { RuntimeError, messageOf } from '../errors.js';
import { readTar } from '../store/tar.js';
import type { Compression, LayerInfo, LayerStoreApi, StoredImage } from '../store/types.js';
import { DEFAULT_PATH_ENV, hostPlatform } from '../oci/platform.js';
import { IMAGE_JSON_LIMITS, formatLimit } from './limits.js';
import { familiarImageName, fullImageName } from './names.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest } from '../oci/types.js';
import { makeOwnedTempDir } from '../store/owner.js';

/** Where an image comes from. */
export type ImportSource =
  | {
      /** An OCI image layout, as a directory or a `.tar` of one. */
      readonly type: 'oci-layout';
      readonly path: string;
      /** The `org.opencontainers.image.ref.name` to import. @default the only image, else `latest` */
      readonly ref?: string;
    }
  | {
      /** A `docker save` tar (possibly gzipped). */
      readonly type: 'docker-archive';
      readonly path: string;
      /** Which of the archive's images (a RepoTag) to import. @default the only image */
      readonly tag?: string;
    }
  | {
      /** A root filesystem, as a directory or a tar (plain, gzip or zstd): becomes a one-layer image. */
      readonly type: 'rootfs';
      readonly path: string;
    };

/** Options of {@link importImage}. */
export interface ImportOptions {
  /** The tag the image gets in the store. @default the archive's tag (RepoTags, io.containerd.image.name); none for a rootfs */
  readonly tag?: string;
  readonly signal?: AbortSignal;
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

/** The compression of a file, from its first bytes. */
async function sniffCompression(file: string): Promise<Compression> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    if (bytesRead >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) return 'gzip';
    if (bytesRead === 4 && buf.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    if (bytesRead >= 3 && buf.toString('latin1', 0, 3) === 'BZh') throw new RuntimeError(`${file}: bzip2-compressed tars are not supported`);
    if (bytesRead >= 4 && buf[0] === 0xfd && buf.toString('latin1', 1, 4) === '7zX') throw new RuntimeError(`${file}: xz-compressed tars are not supported`);
    return 'none';
  } finally {
    await fh.close();
  }
}

/** The file's content, decompressed (gzip via zlib, zstd via the `zstd` tool). */
async function openDecompressed(file: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
  const compression = await sniffCompression(file);
  if (compression === 'none') return createReadStream(file, signal ? { signal } : {});
  if (compression === 'gzip') {
    const out = new PassThrough();
    pipeline(createReadStream(file), createGunzip(), out, signal ? { signal } : {}).catch((err: unknown) => out.destroy(err as Error));
    return out;
  }
  const { execa } = await import('execa');
  const child = execa('zstd', ['-d', '-q', '-c'], {
    inputFile: file,
    encoding: 'buffer',
    buffer: false,
    ...(signal ? { cancelSignal: signal } : {}),
  });
  child.catch(() => undefined); // the iterable below throws the same failure
  return child.iterable({ binary: true }) as AsyncIterable<Uint8Array>;
}

/** Hashes a file; checks its digest and (when given) size. */
async function verifyFile(file: string, expected: Digest, size: number | undefined, what: string, signal?: AbortSignal): Promise<void> {
  let st;
  try {
    st = await stat(file);
  } catch {
    throw new RuntimeError(`${what} ${expected} is missing (${file})`);
  }
  if (size !== undefined && st.size !== size) {
    throw new RuntimeError(`${what} ${file} has ${st.size} bytes, its descriptor says ${size}`);
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, signal ? { signal } : {})) hash.update(chunk as Buffer);
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== expected) throw new RuntimeError(`${what} ${file} has digest ${got}, expected ${expected}`);
}

/** What {@link validatedTar} saw: the sha256 of everything it passed on, once the tar ended cleanly. */
interface TarCheck {
  digest?: Digest;
}

/**
 * Passes `source` through unchanged while parsing it as a tar, so that a corrupt or truncated tar fails
 * the stream (and with it the blob write) instead of being stored. The parser runs in lockstep with the
 * consumer: each chunk is handed to it before it is passed on, so memory stays at a chunk or two whatever the
 * tar holds (an entry the parser skips is not queued up).
 */
async function* validatedTar(source: AsyncIterable<Uint8Array>, check: TarCheck, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256');
  // The hand-over: `offer` gives the parser one chunk and waits until it asks for the next (or stops).
  let waiting: ((r: IteratorResult<Uint8Array>) => void) | undefined;
  let asked: (() => void) | undefined;
  let parserDone = false;
  const askedOnce = (): Promise<void> => new Promise((r) => { asked = r; });
  let nextAsk = askedOnce();
  const feed: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: () =>
        new Promise<IteratorResult<Uint8Array>>((resolve) => {
          waiting = resolve;
          asked?.();
        }),
      // readTar closes its source at the end of the archive: the padding after it is still passed on.
      return: async () => {
        parserDone = true;
        asked?.();
        return { done: true as const, value: undefined };
      },
    }),
  };
  let entries = 0;
  let bytes = 0;
  const parser = (async () => {
    for await (const entry of readTar(feed, signal)) {
      entries++;
      for await (const _ of entry.body) { /* validated as it streams */ }
    }
  })();
  let failure: { error: unknown } | undefined;
  parser.then(() => { parserDone = true; asked?.(); }, (error: unknown) => { failure = { error }; parserDone = true; asked?.(); });
  const offer = async (r: IteratorResult<Uint8Array>): Promise<void> => {
    await Promise.race([nextAsk, parser.catch(() => undefined)]);
    if (failure) throw failure.error;
    if (parserDone) return;
    nextAsk = askedOnce();
    const give = waiting;
    waiting = undefined;
    // readTar scribbles on header blocks (checksum), so it gets a copy.
    give?.(r.done ? r : { done: false, value: Buffer.from(r.value) });
  };
  for await (const chunk of source) {
    hash.update(chunk);
    bytes += chunk.byteLength;
    await offer({ done: false, value: chunk });
    yield chunk;
  }
  await offer({ done: true, value: undefined });
  await parser;
  // A tar of only its end-of-archive blocks is a valid empty layer: BuildKit and docker write one for a step that
  // changes nothing (sha256:5f70bf18…, 1,024 zero bytes). An empty file is not a tar.
  if (entries === 0 && bytes === 0) throw new RuntimeError('tar: empty file (not a tar)');
  check.digest = `sha256:${hash.digest('hex')}`;
}

/** Stores a layer file as an uncompressed blob, checked against `diffId` when given (nothing is stored on a mismatch). */
async function storeLayerFile(
  store: LayerStoreApi,
  file: string,
  diffId: Digest | undefined,
  signal?: AbortSignal,
): Promise<LayerInfo> {
  const check: TarCheck = {};
  let written: { digest: Digest; size: number };
  try {
    const content = validatedTar(await openDecompressed(file, signal), check, signal);
    written = await store.writeBlob(content, { ...(diffId ? { expectedDigest: diffId } : {}), ...(signal ? { signal } : {}) });
  } catch (cause) {
    if (signal?.aborted && cause === signal.reason) throw cause;
    if (check.digest !== undefined && diffId !== undefined && check.digest !== diffId) {
      throw new RuntimeError(`layer ${file} unpacks to ${check.digest}, but the image config's diff_id is ${diffId}`, { cause });
    }
    throw new RuntimeError(`layer ${file} is not a valid tar: ${messageOf(cause)}`, { cause });
  }
  const layer: LayerInfo = { diffId: written.digest, digest: written.digest, size: written.size, mediaType: MEDIA_TYPES.ociLayer };
  await store.registerLayer(layer);
  return layer;
}

/** Also keeps a layer's verified compressed blob, so that a later push or export does not compress again. */
async function keepCompressed(store: LayerStoreApi, file: string, layer: LayerInfo, digest: Digest, signal?: AbortSignal): Promise<void> {
  const compression = await sniffCompression(file);
  if (compression === 'none') return;
  const written = await store.writeBlob(createReadStream(file), { expectedDigest: digest, ...(signal ? { signal } : {}) });
  const mediaType = compression === 'gzip' ? MEDIA_TYPES.ociLayerGzip : MEDIA_TYPES.ociLayerZstd;
  await store.registerLayer({ diffId: layer.diffId, digest: written.digest, size: written.size, mediaType });
}

/** Reads a JSON file of at most `limit` bytes (see {@link IMAGE_JSON_LIMITS}), naming the file when it is too big or missing. */
async function readJsonBytes(file: string, what: string, limit: number): Promise<Buffer> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch {
    throw new RuntimeError(`${what} ${file} is missing`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new RuntimeError(`${what} ${file} is not a regular file`);
    if (st.size > limit) throw new RuntimeError(`${what} ${file} is ${st.size} bytes, over kiln's limit of ${formatLimit(limit)}`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

/** Parses JSON bytes, naming the file when they are not JSON. */
function parseJson<T>(bytes: Buffer, file: string, what: string): T {
  try {
    return parseUntrustedJson(bytes.toString('utf8'), `${what} ${file}`) as T;
  } catch (cause) {
    // Never the text itself, nor a cause that quotes it: the file may be a symlink to something private.
    throw new RuntimeError(messageOf(cause));
  }
}

/** Parses a JSON file of at most `limit` bytes. */
async function readJson<T>(file: string, what: string, limit: number): Promise<T> {
  return parseJson<T>(await readJsonBytes(file, what, limit), file, what);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks a descriptor's shape (a JSON document from an archive is untrusted). */
function checkDescriptor(value: unknown, file: string, what: string): Descriptor {
  if (!isObject(value) || typeof value.digest !== 'string' || typeof value.mediaType !== 'string') {
    throw new RuntimeError(`${file}: ${what} is not a descriptor with a mediaType and a digest`);
  }
  if (value.size !== undefined && !(typeof value.size === 'number' && Number.isSafeInteger(value.size) && value.size >= 0)) {
    throw new RuntimeError(`${file}: ${what} has an invalid size`);
  }
  if (value.annotations !== undefined && !isObject(value.annotations)) throw new RuntimeError(`${file}: ${what} has invalid annotations`);
  if (value.platform !== undefined && !isObject(value.platform)) throw new RuntimeError(`${file}: ${what} has an invalid platform`);
  return value as unknown as Descriptor;
}

/** Checks an index's shape: an object whose `manifests` are descriptors. */
function checkIndex(value: unknown, file: string): ImageIndex {
  if (!isObject(value) || !Array.isArray(value.manifests)) throw new RuntimeError(`${file} is not an image index (no manifests list)`);
  value.manifests.forEach((d, i) => checkDescriptor(d, file, `manifests[${i}]`));
  return value as unknown as ImageIndex;
}

/** Checks the parts of a config that kiln relies on. */
function checkConfig(config: ImageConfig, file: string, layerCount: number): void {
  if (!isObject(config) || !isObject(config.rootfs) || config.rootfs.type !== 'layers' || !Array.isArray(config.rootfs.diff_ids)) {
    throw new RuntimeError(`image config ${file} has no rootfs.diff_ids`);
  }
  for (const d of config.rootfs.diff_ids) {
    if (typeof d !== 'string' || !DIGEST_RE.test(d)) throw new RuntimeError(`image config ${file} has an invalid diff_id: ${String(JSON.stringify(d)).slice(0, 80)}`);
  }
  if (config.rootfs.diff_ids.length !== layerCount) {
    throw new RuntimeError(`image config ${file} lists ${config.rootfs.diff_ids.length} diff_ids for ${layerCount} layers`);
  }
}

/**
 * Unpacks an archive's regular files (and symlinks between them) into `dir`. Only relative paths that stay
 * inside are accepted; anything else is an error, since image archives never need it.
 */
async function unpackArchive(archive: string, dir: string, signal?: AbortSignal): Promise<void> {
  const links: Array<{ name: string; target: string }> = [];
  try {
    for await (const { header, body } of readTar(await openDecompressed(archive, signal), signal)) {
      const name = header.name.replace(/^(\.\/)+/, '');
      const parts = name.split('/');
      if (name === '' || name.startsWith('/') || parts.some((p) => p === '..' || p === '')) {
        if (header.type === 'directory' && (name === '' || name === '.')) continue;
        throw new RuntimeError(`unsafe path in archive: ${header.name}`);
      }
      if (header.type === 'directory') {
        await mkdir(join(dir, ...parts), { recursive: true });
      } else if (header.type === 'file') {
        await mkdir(join(dir, ...parts.slice(0, -1)), { recursive: true });
        await pipeline(Readable.from(body), createWriteStream(join(dir, ...parts), { flags: 'wx' }), signal ? { signal } : {});
      } else if (header.type === 'symlink' || header.type === 'link') {
        // docker save links repeated layers to the first copy (`../<id>/layer.tar`).
        const base = header.type === 'symlink' ? parts.slice(0, -1) : [];
        const resolved: string[] = [];
        for (const p of [...base, ...(header.linkname ?? '').split('/')]) {
          if (p === '' || p === '.') continue;
          if (p === '..') {
            if (resolved.pop() === undefined) throw new RuntimeError(`unsafe link in archive: ${header.name} -> ${header.linkname ?? ''}`);
          } else resolved.push(p);
        }
        links.push({ name, target: resolved.join('/') });
      }
    }
  } catch (cause) {
    if (signal?.aborted && cause === signal.reason) throw cause;
    throw new RuntimeError(`${archive} is not a valid image archive: ${messageOf(cause)}`, { cause });
  }
  for (const l of links) {
    await mkdir(join(dir, ...l.name.split('/').slice(0, -1)), { recursive: true });
    await link(join(dir, ...l.target.split('/')), join(dir, ...l.name.split('/'))).catch((cause: unknown) => {
      throw new RuntimeError(`${archive}: link ${l.name} -> ${l.target} points to nothing (${messageOf(cause)})`, { cause });
    });
  }
}

/** Runs `fn` on a directory: `path` itself, or a temp dir the archive at `path` is unpacked into. */
async function withDirectory<T>(path: string, signal: AbortSignal | undefined, fn: (dir: string) => Promise<T>): Promise<T> {
  let st;
  try {
    st = await stat(path);
  } catch (cause) {
    throw new RuntimeError(`${path} does not exist`, { cause });
  }
  if (st.isDirectory()) return fn(path);
  const dir = makeOwnedTempDir('import');
  try {
    await unpackArchive(path, dir, signal);
    return await fn(dir);
  } catch (cause) {
    // Name files as `archive.tar:path/inside`, not by the temp dir they were unpacked into.
    if (cause instanceof RuntimeError && cause.message.includes(dir)) {
      throw new RuntimeError(cause.message.split(`${dir}/`).join(`${path}:`).split(dir).join(path), { cause });
    }
    throw cause;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const blobFile = (layout: string, digest: Digest): string => {
  if (!DIGEST_RE.test(digest)) throw new RuntimeError(`invalid digest in ${layout}: ${String(digest)}`);
  return join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length));
};

const MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);

/** Picks the image descriptor of an OCI layout's index.json. */
function pickDescriptor(index: ImageIndex, ref: string | undefined, file: string): Descriptor {
  const manifests = Array.isArray(index.manifests) ? index.manifests : [];
  const names = manifests.map((d) => d.annotations?.[REF_NAME]).filter((n): n is string => n !== undefined);
  if (ref !== undefined) {
    // By the OCI ref name (a tag), or by image name in either form (`app` finds docker.io/library/app:latest).
    const full = /^[a-z0-9]/.test(ref) ? fullImageName(ref) : undefined;
    const found = manifests.find((d) => {
      const name = d.annotations?.[CONTAINERD_NAME];
      return d.annotations?.[REF_NAME] === ref || name === ref || (name !== undefined && full !== undefined && fullImageName(name) === full);
    });
    if (!found) throw new RuntimeError(`${file} has no image named "${ref}" (it has: ${names.join(', ') || 'no names'})`);
    return found;
  }
  // One image under several names (an entry per name, as containerd and BuildKit write them) is still one image.
  if (manifests[0] && manifests.every((d) => d.digest === manifests[0]!.digest)) return manifests[0];
  const latest = manifests.find((d) => d.annotations?.[REF_NAME] === 'latest');
  if (latest) return latest;
  throw new RuntimeError(`${file} holds ${manifests.length} images; choose one by ref (${names.join(', ') || 'none are named'})`);
}

/** Picks the host's platform from an image index (linux and the host architecture). */
function pickPlatform(index: ImageIndex, file: string): Descriptor {
  const host = hostPlatform();
  const candidates = (index.manifests ?? []).filter((d) => d.platform?.os === host.os && d.platform.architecture === host.architecture);
  const best = candidates.find((d) => host.variant === undefined || d.platform?.variant === undefined || d.platform.variant === host.variant) ?? candidates[0];
  if (!best) throw new RuntimeError(`${file} has no image for ${host.os}/${host.architecture}`);
  return best;
}

/**
 * A layout's files must be its own: a symlink in it could make kiln read (and report on: a size, a digest, a parse
 * error) any file of the host. Layouts written by image tools hold only directories and regular files.
 */
async function refuseLinksInLayout(layout: string): Promise<void> {
  const check = async (rel: string): Promise<boolean> => {
    const st = await lstat(join(layout, rel)).catch(() => undefined);
    if (st?.isSymbolicLink()) throw new RuntimeError(`OCI layout ${layout}: ${rel} is a symbolic link; kiln reads only the layout's own files`);
    return st?.isDirectory() ?? false;
  };
  for (const rel of ['oci-layout', 'index.json']) await check(rel);
  if (!(await check('blobs'))) return;
  for (const algo of await readdir(join(layout, 'blobs'))) {
    if (!(await check(`blobs/${algo}`))) continue;
    for (const name of await readdir(join(layout, 'blobs', algo))) await check(`blobs/${algo}/${name}`);
  }
}

async function importOciLayout(layout: string, ref: string | undefined, store: LayerStoreApi, tag: string | undefined, signal?: AbortSignal): Promise<{ image: StoredImage; tag: string | undefined }> {
  await refuseLinksInLayout(layout);
  const layoutFile = join(layout, 'oci-layout');
  const marker = await readJson<{ imageLayoutVersion?: string } | null>(layoutFile, 'OCI layout marker', IMAGE_JSON_LIMITS.small);
  if (!isObject(marker) || typeof marker.imageLayoutVersion !== 'string') throw new RuntimeError(`${layoutFile} has no imageLayoutVersion`);
  const indexFile = join(layout, 'index.json');
  const index = checkIndex(await readJson<unknown>(indexFile, 'OCI index', IMAGE_JSON_LIMITS.manifest), indexFile);
  let desc = pickDescriptor(index, ref, indexFile);
  const containerdName = desc.annotations?.[CONTAINERD_NAME];
  // containerd names are full (docker.io/library/app:1); the store keys docker's short form, as `-t` writes it.
  const name = tag ?? (containerdName !== undefined ? familiarImageName(containerdName) : undefined);
  for (let depth = 0; INDEX_TYPES.has(desc.mediaType); depth++) {
    if (depth > 4) throw new RuntimeError(`${indexFile}: image indexes nest too deeply`);
    const file = blobFile(layout, desc.digest);
    await verifyFile(file, desc.digest, desc.size, 'image index', signal);
    desc = pickPlatform(checkIndex(await readJson<unknown>(file, 'image index', IMAGE_JSON_LIMITS.manifest), file), file);
  }
  if (!MANIFEST_TYPES.has(desc.mediaType)) throw new RuntimeError(`${indexFile}: unsupported manifest media type ${desc.mediaType}`);
  const manifestFile = blobFile(layout, desc.digest);
  await verifyFile(manifestFile, desc.digest, desc.size, 'manifest', signal);
  const manifest = await readJson<ImageManifest | null>(manifestFile, 'manifest', IMAGE_JSON_LIMITS.manifest);
  if (!isObject(manifest) || !isObject(manifest.config) || !Array.isArray(manifest.layers)) throw new RuntimeError(`manifest ${manifestFile} has no config or layers`);
  checkDescriptor(manifest.config, manifestFile, 'config');
  manifest.layers.forEach((l, i) => checkDescriptor(l, manifestFile, `layers[${i}]`));
  const configFile = blobFile(layout, manifest.config.digest);
  if (manifest.config.size > IMAGE_JSON_LIMITS.config) {
    throw new RuntimeError(`image config ${configFile} is ${manifest.config.size} bytes, over kiln's limit of ${formatLimit(IMAGE_JSON_LIMITS.config)}`);
  }
  await verifyFile(configFile, manifest.config.digest, manifest.config.size, 'image config', signal);
  const configBytes = await readJsonBytes(configFile, 'image config', IMAGE_JSON_LIMITS.config);
  const config = parseJson<ImageConfig>(configBytes, configFile, 'image config');
  checkConfig(config, configFile, manifest.layers.length);
  // Check every blob is there before storing anything.
  for (const l of manifest.layers) {
    const file = blobFile(layout, l.digest);
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile()) throw new RuntimeError(`layer blob ${l.digest} is missing (${file})`);
    if (st.size !== l.size) throw new RuntimeError(`layer blob ${file} has ${st.size} bytes, its descriptor says ${l.size}`);
  }
  const layers: LayerInfo[] = [];
  for (const [i, l] of manifest.layers.entries()) {
    signal?.throwIfAborted();
    const file = blobFile(layout, l.digest);
    await verifyFile(file, l.digest, l.size, 'layer blob', signal);
    const layer = await storeLayerFile(store, file, config.rootfs.diff_ids[i], signal);
    await keepCompressed(store, file, layer, l.digest, signal);
    layers.push(layer);
  }
  return { image: await store.putImage(configBytes, layers), tag: name };
}

interface DockerManifestEntry {
  Config?: string;
  RepoTags?: string[] | null;
  Layers?: string[];
}

/** A path named in a docker archive's manifest.json, kept inside the archive. */
function archivePath(dir: string, name: unknown, file: string): string {
  if (typeof name !== 'string' || name === '' || name.startsWith('/') || name.split('/').includes('..')) {
    throw new RuntimeError(`${file} names an invalid path: ${String(name)}`);
  }
  return join(dir, ...name.split('/'));
}

/** The digest a docker-archive path claims (`<hex>.json`, `blobs/sha256/<hex>`), if any. */
function claimedDigest(name: string): Digest | undefined {
  const m = /(?:^|\/)(?:sha256[:/])?([0-9a-f]{64})(?:\.json)?$/.exec(name);
  return m?.[1] ? `sha256:${m[1]}` : undefined;
}

async function importDockerArchive(dir: string, archive: string, wanted: string | undefined, store: LayerStoreApi, tag: string | undefined, signal?: AbortSignal): Promise<{ image: StoredImage; tag: string | undefined }> {
  const manifestFile = join(dir, 'manifest.json');
  const entries = await readJson<DockerManifestEntry[]>(manifestFile, 'docker archive manifest', IMAGE_JSON_LIMITS.manifest);
  if (!Array.isArray(entries) || entries.length === 0) throw new RuntimeError(`${archive}: manifest.json lists no images`);
  for (const e of entries as unknown[]) {
    const ok =
      isObject(e) &&
      (e.RepoTags === undefined || e.RepoTags === null || (Array.isArray(e.RepoTags) && e.RepoTags.every((t) => typeof t === 'string'))) &&
      (e.Layers === undefined || (Array.isArray(e.Layers) && e.Layers.every((l) => typeof l === 'string')));
    if (!ok) throw new RuntimeError(`${archive}: manifest.json has an invalid entry (want Config, RepoTags and Layers)`);
  }
  const normal = (t: string): string => (/:[^/]*$/.test(t) ? t : `${t}:latest`);
  let entry: DockerManifestEntry | undefined;
  if (wanted !== undefined) entry = entries.find((e) => (e.RepoTags ?? []).some((t) => normal(t) === normal(wanted)));
  else if (entries.length === 1) entry = entries[0];
  if (!entry) {
    const all = entries.flatMap((e) => e.RepoTags ?? []);
    throw new RuntimeError(`${archive}: ${wanted !== undefined ? `no image tagged "${wanted}"` : `${entries.length} images`}; it has: ${all.join(', ') || 'untagged images'}`);
  }
  const configFile = archivePath(dir, entry.Config, `${archive}:manifest.json`);
  const configDigest = claimedDigest(entry.Config ?? '');
  if (configDigest) await verifyFile(configFile, configDigest, undefined, 'image config', signal);
  const configBytes = await readJsonBytes(configFile, 'image config', IMAGE_JSON_LIMITS.config);
  const config = parseJson<ImageConfig>(configBytes, configFile, 'image config');
  const layerNames = entry.Layers ?? [];
  checkConfig(config, configFile, layerNames.length);
  const files = layerNames.map((n) => archivePath(dir, n, `${archive}:manifest.json`));
  for (const [i, f] of files.entries()) {
    if (!(await stat(f).catch(() => undefined))?.isFile()) throw new RuntimeError(`layer ${f} is missing`);
  }
  const layers: LayerInfo[] = [];
  for (const [i, file] of files.entries()) {
    signal?.throwIfAborted();
    // Only `blobs/sha256/<hex>` names promise a digest; legacy `<id>/layer.tar` ids are not content digests.
    const claimed = /blobs\/sha256\//.test(layerNames[i] ?? '') ? claimedDigest(layerNames[i] ?? '') : undefined;
    if (claimed) await verifyFile(file, claimed, undefined, 'layer', signal);
    const layer = await storeLayerFile(store, file, config.rootfs.diff_ids[i], signal);
    if (claimed && claimed !== layer.diffId) await keepCompressed(store, file, layer, claimed, signal);
    layers.push(layer);
  }
  const image = await store.putImage(configBytes, layers);
  return { image, tag: tag ?? wanted ?? entry.RepoTags?.[0] };
}

async function importRootfs(path: string, store: LayerStoreApi, tag: string | undefined, signal?: AbortSignal): Promise<{ image: StoredImage; tag: string | undefined }> {
  const st = await stat(path).catch((cause: unknown) => {
    throw new RuntimeError(`${path} does not exist`, { cause });
  });
  let layer: LayerInfo;
  if (st.isDirectory()) {
    const { snapshotDirectory } = await import('../store/snapshot.js');
    layer = await snapshotDirectory(path, store, signal ? { signal } : {});
  } else {
    layer = await storeLayerFile(store, path, undefined, signal);
  }
  const platform = hostPlatform();
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    config: { Env: [DEFAULT_PATH_ENV] },
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    history: [{ created_by: `kiln import rootfs ${basename(path)}`, comment: 'imported root filesystem' }],
  };
  return { image: await store.putImage(config, [layer]), tag };
}

/**
 * Imports an image into the store and tags it (`options.tag`, else the name the archive gives it).
 * Every blob is checked against its digest and every layer against the config's diff_ids; a corrupt
 * tar, a digest mismatch or a missing blob throws a RuntimeError naming the file, before any tag is set.
 */
export async function importImage(source: ImportSource, store: LayerStoreApi, options: ImportOptions = {}): Promise<StoredImage> {
  const { signal } = options;
  let result: { image: StoredImage; tag: string | undefined };
  switch (source.type) {
    case 'oci-layout':
      result = await withDirectory(source.path, signal, (dir) => importOciLayout(dir, source.ref, store, options.tag, signal));
      break;
    case 'docker-archive':
      result = await withDirectory(source.path, signal, (dir) => importDockerArchive(dir, source.path, source.tag, store, options.tag, signal));
      break;
    case 'rootfs':
      result = await importRootfs(source.path, store, options.tag, signal);
      break;
  }
  if (result.tag !== undefined) await store.tag(result.tag, result.image.manifestDigest);
  return result.image;
}
