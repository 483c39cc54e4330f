/**
 * The upperdir snapshotter: turns an overlayfs upperdir (or any plain directory) into an uncompressed OCI
 * layer tar, streamed through sha256 into the store in one pass, never holding a file in memory.
 *
 * What goes into the layer:
 * - every entry of the directory, depth first, entries sorted by name (byte order of their UTF-16 names);
 *   the directory itself is not an entry;
 * - overlay whiteouts (0/0 character devices) become empty `.wh.<name>` files, and a directory with
 *   `trusted.overlay.opaque=y` is written followed by an empty `<dir>/.wh..wh..opq` (OCI image-spec changesets);
 * - directories that overlay copied up only because a child changed are included as they are (Docker does the
 *   same); they carry the lower directory's metadata with the copied-up mtime;
 * - hardlinks within the layer: the second path of an inode already written becomes a hardlink entry;
 * - xattrs except overlay's own `trusted.overlay.*` and `security.selinux`, read in ONE `getfattr -R` run
 *   (Node has no xattr API; `getfattr` is in Debian's `attr` package, which bootstrap must install);
 * - headers: numeric uid/gid, empty uname/gname, mode & 07777, whole-second mtime (clamped to
 *   `sourceDateEpoch` when given), PAX records only when a field does not fit ustar or for xattrs.
 */
import * as fs from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { RuntimeError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../image/types.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from './tar.js';
import type { TarHeader } from './tar.js';
import type { LayerInfo, LayerStoreApi } from './types.js';

/** Progress of a snapshot, reported after each entry. */
export interface SnapshotProgress {
  readonly entries: number;
  /** Uncompressed tar bytes produced so far. */
  readonly bytes: number;
}

/** Options of {@link snapshotDirectory}. */
export interface SnapshotOptions {
  readonly signal?: AbortSignal;
  /** Seconds since the epoch; later mtimes are clamped to it. @default no clamping */
  readonly sourceDateEpoch?: number;
  readonly onProgress?: (progress: SnapshotProgress) => void;
}

const READ_CHUNK = 1024 * 1024;
const PREFETCH_WINDOW = 16;
const PREFETCH_MAX = 256 * 1024;
const OPAQUE_XATTR = 'trusted.overlay.opaque';

/** Reads all xattrs under `dir` with one `getfattr -R` run: absolute path → name → value. */
export async function readXattrTree(dir: string, signal?: AbortSignal): Promise<Map<string, Map<string, Buffer>>> {
  const { execa } = await import('execa');
  let stdout: Uint8Array;
  try {
    const r = await execa('getfattr', ['-R', '-P', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '--', dir], {
      encoding: 'buffer',
      reject: false,
      stripFinalNewline: false,
      ...(signal ? { cancelSignal: signal } : {}),
    });
    if (r.failed && (r.exitCode === undefined || r.code === 'ENOENT')) throw r;
    stdout = r.stdout as Uint8Array;
  } catch (cause) {
    signal?.throwIfAborted();
    throw new RuntimeError(`cannot read xattrs with getfattr (Debian package "attr"): ${messageOf(cause)}`, { cause });
  }
  const result = new Map<string, Map<string, Buffer>>();
  let current: Map<string, Buffer> | undefined;
  for (const line of Buffer.from(stdout).toString('latin1').split('\n')) {
    if (line.startsWith('# file: ')) {
      // getfattr escapes unprintable bytes and backslashes as \ooo.
      const raw = line.slice(8).replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
      current = new Map();
      result.set(Buffer.from(raw, 'latin1').toString('utf8'), current);
    } else if (current && line.includes('=')) {
      const eq = line.indexOf('=');
      const name = line.slice(0, eq);
      const value = line.slice(eq + 1);
      current.set(name, value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex') : Buffer.from(value.replace(/^"|"$/g, ''), 'latin1'));
    }
  }
  return result;
}

const isWhiteout = (st: Stats): boolean => st.isCharacterDevice() && st.rdev === 0;

function devNumbers(rdev: number): { devmajor: number; devminor: number } {
  // glibc's encoding of dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  return { devmajor: ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0), devminor: (lo & 0xff) | ((lo >>> 12) & 0xfff00) };
}

/**
 * Snapshots `upperDir` into a layer blob in `store` and returns its LayerInfo (uncompressed: digest = diffID).
 * Works the same on an overlay upperdir and on a plain directory.
 */
export async function snapshotDirectory(upperDir: string, store: LayerStoreApi, options: SnapshotOptions = {}): Promise<LayerInfo> {
  const { signal } = options;
  const root = path.resolve(upperDir);
  const xattrs = await readXattrTree(root, signal);
  const { digest, size } = await store.writeBlob(layerTar(root, xattrs, options), signal ? { signal } : {});
  const layer: LayerInfo = { diffId: digest, digest, size, mediaType: MEDIA_TYPES.ociLayer };
  await store.registerLayer(layer);
  return layer;
}

/** Alias of {@link snapshotDirectory}, for callers that think of it as "write a layer from a directory". */
export const writeLayerFromDirectory = snapshotDirectory;

async function* layerTar(root: string, xattrs: Map<string, Map<string, Buffer>>, options: SnapshotOptions): AsyncGenerator<Buffer> {
  const { signal, sourceDateEpoch, onProgress } = options;
  const seenInodes = new Map<string, string>();
  let entries = 0;
  let bytes = 0;
  const mtimeOf = (st: Stats): number => {
    const t = Math.floor(st.mtimeMs / 1000);
    return sourceDateEpoch !== undefined && t > sourceDateEpoch ? sourceDateEpoch : t;
  };
  const emit = (buf: Buffer): Buffer => {
    bytes += buf.length;
    return buf;
  };

  const rootAttrs = xattrs.get(root);
  checkOverlayFeatures(root, rootAttrs);

  async function* walk(absDir: string, relDir: string): AsyncGenerator<Buffer> {
    const names = (await fs.readdir(absDir)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    // Read-ahead: stat the directory's entries concurrently and read small files a window ahead, so the
    // threadpool works while the consumer hashes and writes (per-file latency dominates small-file trees).
    const stats = await Promise.all(names.map((name) => fs.lstat(path.join(absDir, name))));
    const prefetched = new Map<number, Promise<Buffer>>();
    const prefetch = (from: number): void => {
      for (let j = from; j < Math.min(names.length, from + PREFETCH_WINDOW); j++) {
        const st = stats[j];
        if (!prefetched.has(j) && st?.isFile() && st.size <= PREFETCH_MAX && !(st.nlink > 1)) {
          const p = fs.readFile(path.join(absDir, names[j] as string));
          p.catch(() => undefined);
          prefetched.set(j, p);
        }
      }
    };
    for (const [i, name] of names.entries()) {
      signal?.throwIfAborted();
      prefetch(i);
      const abs = path.join(absDir, name);
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      if (name.startsWith('.wh.')) throw new RuntimeError(`cannot snapshot ${rel}: names starting with ".wh." are reserved for whiteouts`);
      const st = stats[i] as Stats;
      const early = prefetched.get(i);
      prefetched.delete(i);
      const attrs = xattrs.get(abs);
      checkOverlayFeatures(abs, attrs);
      const base = { uid: st.uid, gid: st.gid, mtime: mtimeOf(st), size: 0 };
      if (isWhiteout(st)) {
        yield emit(encodeHeader({ ...base, name: relDir === '' ? `.wh.${name}` : `${relDir}/.wh.${name}`, type: 'file', mode: 0 }));
      } else {
        const kept = new Map<string, Buffer>();
        for (const [k, v] of attrs ?? []) if (!k.startsWith('trusted.overlay.') && k !== 'security.selinux') kept.set(k, v);
        const header: TarHeader = { ...base, name: rel, type: 'file', mode: st.mode & 0o7777 };
        if (kept.size > 0) header.xattrs = kept;
        const inode = `${st.dev}:${st.ino}`;
        const first = !st.isDirectory() && st.nlink > 1 ? seenInodes.get(inode) : undefined;
        if (first !== undefined) {
          yield emit(encodeHeader({ ...header, type: 'link', linkname: first }));
        } else {
          if (!st.isDirectory() && st.nlink > 1) seenInodes.set(inode, rel);
          if (st.isDirectory()) {
            yield emit(encodeHeader({ ...header, type: 'directory' }));
            if (attrs?.get(OPAQUE_XATTR)?.toString() === 'y') {
              yield emit(encodeHeader({ ...base, name: `${rel}/.wh..wh..opq`, type: 'file', mode: 0 }));
            }
            yield* walk(abs, rel);
          } else if (st.isFile()) {
            yield emit(encodeHeader({ ...header, size: st.size }));
            if (early) {
              const data = await early;
              if (data.length !== st.size) throw new RuntimeError(`file ${rel} changed while it was being snapshotted`);
              if (data.length > 0) yield emit(data);
            } else yield* fileContent(abs, st.size, rel);
            yield emit(padding(st.size));
          } else if (st.isSymbolicLink()) {
            yield emit(encodeHeader({ ...header, type: 'symlink', linkname: await fs.readlink(abs) }));
          } else if (st.isCharacterDevice() || st.isBlockDevice()) {
            yield emit(encodeHeader({ ...header, type: st.isCharacterDevice() ? 'char' : 'block', ...devNumbers(st.rdev) }));
          } else if (st.isFIFO()) {
            yield emit(encodeHeader({ ...header, type: 'fifo' }));
          }
          // Sockets cannot be represented in a tar; like Docker, they are left out.
        }
      }
      entries++;
      onProgress?.({ entries, bytes });
    }
  }

  async function* fileContent(abs: string, size: number, rel: string): AsyncGenerator<Buffer> {
    const fh = await fs.open(abs, 'r');
    try {
      let position = 0;
      while (position < size) {
        signal?.throwIfAborted();
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - position));
        const { bytesRead } = await fh.read(buf, 0, buf.length, position);
        if (bytesRead === 0) throw new RuntimeError(`file ${rel} shrank while it was being snapshotted`);
        position += bytesRead;
        yield emit(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
      }
    } finally {
      await fh.close();
    }
  }

  yield* walk(root, '');
  yield emit(END_OF_ARCHIVE);
}

function checkOverlayFeatures(abs: string, attrs: Map<string, Buffer> | undefined): void {
  // redirect_dir and metacopy keep data outside the upperdir, so an upperdir alone is not the layer.
  if (attrs?.has('trusted.overlay.redirect') || attrs?.has('trusted.overlay.metacopy')) {
    throw new RuntimeError(`${abs} uses overlay redirect_dir/metacopy; mount with redirect_dir=off,metacopy=off`);
  }
}
