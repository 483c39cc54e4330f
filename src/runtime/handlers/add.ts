/**
 * ADD's extras over COPY: a local tar archive (plain, gzip, bzip2, xz or zstd) is unpacked into the
 * destination instead of copied, and an http(s) URL is downloaded (src/net/http-source.ts: kept in the store,
 * revalidated with the server on a rebuild, verified against `--checksum` when given) and copied in as a file.
 */
import { createReadStream } from 'node:fs';
import { open, mkdir, copyFile, chmod, lstat, utimes, constants as fsConstants } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { fetchUrlSource, type UrlSource, type UrlFetchOptions } from '../../net/http-source.js';
import type { LayerStoreApi } from '../../store/types.js';
import { extractLayer } from '../../store/extract.js';
import { resolveInRoot } from '../user.js';
import { copyIntoRootfs, type CopySource } from './copy.js';

type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'none';

/** Detects a tar archive by its magic bytes (after decompression for compressed ones). */
async function archiveKind(file: string): Promise<Compression | undefined> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    if (bytesRead >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) return 'gzip';
    if (bytesRead >= 3 && buf.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
    if (bytesRead >= 6 && buf.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    if (bytesRead >= 4 && buf.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    if (bytesRead >= 262 && buf.subarray(257, 262).toString('latin1') === 'ustar') return 'none';
    return undefined;
  } finally {
    await fh.close();
  }
}

function decompressed(file: string, kind: Compression, signal?: AbortSignal): AsyncIterable<Uint8Array> {
  if (kind === 'none') return createReadStream(file);
  if (kind === 'gzip') return createReadStream(file).pipe(createGunzip());
  return viaTool({ bzip2: 'bzip2', xz: 'xz', zstd: 'zstd' }[kind], file, signal);
}

/** `TOOL -dc FILE`'s output; execa is loaded on first use, like everywhere in kiln (most builds never need it). */
async function* viaTool(tool: string, file: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const { execa } = await import('execa');
  const child = execa(tool, ['-dc', file], { stdout: 'pipe', buffer: false, ...(signal ? { cancelSignal: signal } : {}) });
  // The tar reader stops at the archive's end blocks and closes this stream, which may end the tool early (EPIPE,
  // or the build's signal later): that is no failure, and must not surface as an unhandled rejection.
  let ended = false;
  try {
    yield* child.stdout as Readable;
    ended = true;
  } finally {
    if (!ended) child.kill();
    await child.catch(() => undefined);
  }
}

export interface AddOptions {
  readonly dest: string;
  readonly list: (dir: CopySource) => Promise<readonly CopySource[]>;
  readonly owner?: { uid: number; gid: number };
  readonly mode?: number;
  readonly signal?: AbortSignal;
}

/** ADD of context files: archives are unpacked into `dest` (a directory), everything else is copied. */
export async function addLocalSources(rootfs: string, sources: readonly CopySource[], options: AddOptions): Promise<void> {
  const plain: CopySource[] = [];
  for (const src of sources) {
    const kind = src.type === 'file' ? await archiveKind(src.abs) : undefined;
    if (kind === undefined) {
      plain.push(src);
      continue;
    }
    const destDir = await resolveInRoot(rootfs, options.dest);
    await mkdir(destDir, { recursive: true });
    // The extractor refuses entries that would land outside destDir, as for layers.
    await extractLayer(decompressed(src.abs, kind, options.signal), destDir, { mode: 'apply', ...(options.signal ? { signal: options.signal } : {}) });
  }
  if (plain.length > 0) await copyAsAdded(rootfs, plain, options.list, options);
}

/** COPY's file work for what ADD brings in: owned by root unless --chown, --chmod applied. */
function copyAsAdded(rootfs: string, sources: readonly CopySource[], list: AddOptions['list'], options: Omit<AddOptions, 'list'>): Promise<number> {
  return copyIntoRootfs(rootfs, {
    sources,
    list,
    dest: options.dest,
    keepOwner: false,
    ...(options.owner ? { owner: options.owner } : {}),
    ...(options.mode !== undefined ? { mode: options.mode } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * ADD of http(s) URLs, given what {@link fetchUrlSource} resolved them to: each download becomes a file named as
 * BuildKit's Dockerfile frontend names it (the URL path's last segment, `__unnamed__` without one), mode 0600
 * unless `--chmod` says otherwise, mtime the response's Last-Modified (the epoch without one), owned by root unless
 * `--chown`; it is then copied by COPY's rules (`dest/` or an existing directory: into it, else to `dest`).
 * Remote archives are never unpacked, as in docker. `scratch` is an empty directory of the step.
 */
export async function addUrlSources(
  rootfs: string,
  scratch: string,
  store: LayerStoreApi,
  sources: readonly UrlSource[],
  options: Omit<AddOptions, 'list'> & { readonly fetch?: Omit<UrlFetchOptions, 'checksum' | 'signal'> },
): Promise<void> {
  const staged: CopySource[] = [];
  for (const [i, src] of sources.entries()) {
    // The key named this content: the store's record gives its Last-Modified without a request; a source keyed by
    // --checksum alone, or whose blob is gone, is downloaded now and must match.
    const content = await fetchUrlSource(store, src.url, { ...options.fetch, checksum: src.digest, ...(options.signal ? { signal: options.signal } : {}) });
    const dir = path.join(scratch, `url-${i}`);
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, src.name);
    // A clone where the filesystem can, so a large download is not copied twice.
    await copyFile(store.blobPath(content.digest), file, fsConstants.COPYFILE_FICLONE);
    await chmod(file, 0o600);
    // BuildKit: the Last-Modified time, else the epoch.
    const parsed = content.lastModified !== undefined ? new Date(content.lastModified) : undefined;
    const mtime = parsed !== undefined && !Number.isNaN(parsed.getTime()) ? parsed : new Date(0);
    await utimes(file, mtime, mtime);
    staged.push({ abs: file, rel: src.name, stats: await lstat(file), type: 'file' });
  }
  await copyAsAdded(rootfs, staged, async () => [], options);
}
