/**
 * ADD's extras over COPY: a local tar archive (plain, gzip, bzip2, xz or zstd) is unpacked into the
 * destination instead of copied, and an http(s) URL is downloaded and verified against `--checksum`.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { open, mkdir, rm, chmod, chown, utimes } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { trustExtraCaCerts } from '../../net/extra-ca.js';
import { messageOf } from '../../errors.js';
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
  yield* child.stdout as Readable;
}

export interface AddOptions {
  readonly dest: string;
  readonly multiple: boolean;
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
  if (plain.length > 0) {
    await copyIntoRootfs(rootfs, {
      sources: plain,
      list: options.list,
      dest: options.dest,
      multiple: options.multiple,
      keepOwner: false,
      ...(options.owner ? { owner: options.owner } : {}),
      ...(options.mode !== undefined ? { mode: options.mode } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }
}

/** ADD of an http(s) URL: downloaded, checked against `sha256:<hex>`, written 0600 like docker does. */
export async function addUrlSource(
  rootfs: string,
  url: string,
  options: { dest: string; checksum: string; owner?: { uid: number; gid: number }; mode?: number; signal?: AbortSignal },
): Promise<void> {
  const m = /^sha256:([0-9a-f]{64})$/.exec(options.checksum);
  if (!m) throw new Error(`unsupported checksum ${options.checksum}: expected sha256:<64 hex digits>`);
  trustExtraCaCerts(); // before the first connection: an http URL may redirect to https
  let res: Response;
  try {
    res = await fetch(url, options.signal ? { signal: options.signal } : {});
  } catch (err) {
    // fetch's own message is just "fetch failed": the reason (DNS, refused, a certificate) is its cause.
    if (options.signal?.aborted === true) throw err;
    const cause = (err as { cause?: unknown }).cause;
    throw new Error(`failed to fetch ${url}: ${cause !== undefined ? messageOf(cause) : messageOf(err)}`, { cause: err });
  }
  if (!res.ok || !res.body) throw new Error(`failed to fetch ${url}: ${res.status} ${res.statusText}`);
  const name = path.posix.basename(new URL(url).pathname) || 'index.html';
  const target = options.dest.endsWith('/') ? path.posix.join(options.dest, name) : options.dest;
  const host = await resolveInRoot(rootfs, target);
  await mkdir(path.dirname(host), { recursive: true });
  await rm(host, { force: true, recursive: true });
  // Streamed to its place while hashing (a download can be large); a mismatch removes it again.
  const hash = createHash('sha256');
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  const hashing = async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      hash.update(chunk);
      yield chunk;
    }
  };
  try {
    await pipeline(body, hashing, createWriteStream(host, { flags: 'wx' }), options.signal ? { signal: options.signal } : {});
  } catch (err) {
    await rm(host, { force: true });
    throw err;
  }
  const got = hash.digest('hex');
  if (got !== m[1]) {
    await rm(host, { force: true });
    throw new Error(`digest mismatch for ${url}: expected ${options.checksum}, got sha256:${got}`);
  }
  await chmod(host, options.mode ?? 0o600);
  await chown(host, options.owner?.uid ?? 0, options.owner?.gid ?? 0);
  const lastModified = res.headers.get('last-modified');
  if (lastModified) {
    const t = new Date(lastModified);
    if (!Number.isNaN(t.getTime())) await utimes(host, t, t);
  }
}
