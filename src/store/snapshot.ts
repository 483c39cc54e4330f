/**
 * The upperdir snapshotter: turns an overlayfs upperdir (or any plain directory) into an uncompressed OCI
 * layer tar, streamed through sha256 in one pass, never holding a large file in memory. The tar is either
 * written into the store as a blob, or (lazy layers, {@link snapshotIntoLayer}) only hashed: the directory
 * itself becomes the stored layer and the store regenerates the identical tar from it when an export or
 * push needs one (verified against the diffID while streaming).
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
 *   (Node has no xattr API; `getfattr` is in Debian's `attr` package, which bootstrap must install), which
 *   runs in its own process while the tree is being stat'ed;
 * - headers: numeric uid/gid, empty uname/gname, mode & 07777, whole-second mtime (clamped to
 *   `sourceDateEpoch` when given), PAX records only when a field does not fit ustar or for xattrs.
 *
 * Speed: the tree is listed and lstat'ed with many calls in flight (libuv's threadpool), small files are read
 * a window ahead of the consumer (open + one read + close), big files with large reads one chunk ahead, and
 * small pieces (headers, small files, padding) are coalesced into ~1 MiB chunks so the consumer (sha256,
 * and a blob write) sees few, large buffers.
 */
import * as fsCb from 'node:fs';
import * as fs from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { RuntimeError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../image/types.js';
import type { Digest } from '../image/types.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from './tar.js';
import type { TarHeader } from './tar.js';
import type { LayerInfo, LayerStoreApi } from './types.js';

/** Progress of a snapshot, reported after each entry. */
export interface SnapshotProgress {
  readonly entries: number;
  /** Uncompressed tar bytes produced so far. */
  readonly bytes: number;
}

/** Options of {@link snapshotDirectory} and {@link layerTarStream}. */
export interface SnapshotOptions {
  readonly signal?: AbortSignal;
  /** Seconds since the epoch; later mtimes are clamped to it. @default no clamping */
  readonly sourceDateEpoch?: number;
  readonly onProgress?: (progress: SnapshotProgress) => void;
  /**
   * Whether to write the uncompressed layer blob into the store and register it. `false` only computes the
   * diffID and size (the caller keeps the directory as the layer: see {@link snapshotIntoLayer}).
   * @default true
   */
  readonly blob?: boolean;
  /**
   * `'none'` skips reading xattrs (no `getfattr` run): for a tree the caller wrote itself and knows to carry
   * no xattrs, no overlay whiteouts and no opaque directories (e.g. files copied from a build context without
   * their xattrs). Never use it for a RUN step's upperdir: capabilities and opaque markers live in xattrs.
   * @default 'all'
   */
  readonly xattrs?: 'all' | 'none';
}

/** Absolute path → xattr name → value. */
export type XattrTree = Map<string, Map<string, Buffer>>;

const READ_CHUNK = 2 * 1024 * 1024;
/** Files up to this size are read whole, ahead of the consumer. */
const SMALL_FILE = 512 * 1024;
/** Small pieces are batched into chunks of about this size. */
const COALESCE = 1024 * 1024;
/** Entries listed or read synchronously between two turns of the event loop. */
const SCAN_SLICE = 512;
const OPAQUE_XATTR = 'trusted.overlay.opaque';
const OVERLAY_PREFIX = 'trusted.overlay.';

/** Reads all xattrs under `dir` with one `getfattr -R` run: absolute path → name → value. */
export async function readXattrTree(dir: string, signal?: AbortSignal, match = '-'): Promise<XattrTree> {
  const { execa } = await import('execa');
  let stdout: Uint8Array;
  try {
    const r = await execa('getfattr', ['-R', '-P', '-d', '-m', match, '-e', 'hex', '--absolute-names', '--', dir], {
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
  const result: XattrTree = new Map();
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

/**
 * Removes overlay's private xattrs (`trusted.overlay.*` except `opaque`: impure, origin, uuid, …) listed in
 * `xattrs` from the files under `dir`, with one `setfattr` run per xattr name (batched by argument length),
 * so a former upperdir is a clean lowerdir. Does nothing (runs nothing) when there are none.
 */
export async function stripOverlayXattrs(xattrs: XattrTree, signal?: AbortSignal): Promise<void> {
  const byName = new Map<string, string[]>();
  for (const [file, attrs] of xattrs) {
    for (const name of attrs.keys()) {
      if (name.startsWith(OVERLAY_PREFIX) && name !== OPAQUE_XATTR) {
        const files = byName.get(name) ?? [];
        files.push(file);
        byName.set(name, files);
      }
    }
  }
  if (byName.size === 0) return;
  const { execa } = await import('execa');
  for (const [name, files] of byName) {
    for (let i = 0; i < files.length; ) {
      const batch: string[] = [];
      let length = 0;
      while (i < files.length && length < 100_000) {
        const f = files[i++] as string;
        batch.push(f);
        length += f.length + 1;
      }
      try {
        await execa('setfattr', ['-h', '-x', name, '--', ...batch], signal ? { cancelSignal: signal } : {});
      } catch (cause) {
        signal?.throwIfAborted();
        throw new RuntimeError(`cannot remove xattr ${name} with setfattr: ${messageOf(cause)}`, { cause });
      }
    }
  }
}

const isWhiteout = (st: Stats): boolean => st.isCharacterDevice() && st.rdev === 0;

function devNumbers(rdev: number): { devmajor: number; devminor: number } {
  // glibc's encoding of dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
  const hi = Math.floor(rdev / 2 ** 32);
  const lo = rdev >>> 0;
  return { devmajor: ((lo >>> 8) & 0xfff) | ((hi & 0xfffff000) >>> 0), devminor: (lo & 0xff) | ((lo >>> 12) & 0xfff00) };
}

/**
 * Snapshots `upperDir` into a layer and returns its LayerInfo (uncompressed: digest = diffID). By default the
 * layer blob is written into `store` and registered; with `blob: false` only the diffID and size are computed.
 * Works the same on an overlay upperdir and on a plain directory.
 */
export async function snapshotDirectory(upperDir: string, store: LayerStoreApi, options: SnapshotOptions = {}): Promise<LayerInfo> {
  const { signal } = options;
  const root = path.resolve(upperDir);
  if (options.blob === false) {
    const { digest, size } = await hashStream(layerTarPieces(root, options, undefined), signal);
    return { diffId: digest, digest, size, mediaType: MEDIA_TYPES.ociLayer };
  }
  const { digest, size } = await store.writeBlob(layerTarStream(root, options), signal ? { signal } : {});
  const layer: LayerInfo = { diffId: digest, digest, size, mediaType: MEDIA_TYPES.ociLayer };
  await store.registerLayer(layer);
  return layer;
}

/** Alias of {@link snapshotDirectory}, for callers that think of it as "write a layer from a directory". */
export const writeLayerFromDirectory = snapshotDirectory;

/**
 * Makes `dir` (a finished step's upperdir, on the store's filesystem) a stored layer without writing a blob:
 * hashes its tar to get the diffID, strips overlay's private xattrs, and adopts the directory as the layer's
 * unpacked form (the next step's lowerdir). The store regenerates the tar from it on demand. `dir` is gone
 * afterwards (moved into the store, or removed when the store already had the layer).
 */
export async function snapshotIntoLayer(
  dir: string,
  store: LayerStoreApi,
  options: Omit<SnapshotOptions, 'blob'> = {},
): Promise<{ layer: LayerInfo; rootfs: string }> {
  const { signal } = options;
  const root = path.resolve(dir);
  const xattrs = options.xattrs === 'none' ? new Map() : readXattrTree(root, signal);
  const { digest, size } = await hashStream(layerTarPieces(root, options, xattrs), signal);
  const layer: LayerInfo = { diffId: digest, digest, size, mediaType: MEDIA_TYPES.ociLayer };
  const rootfs = await store.adoptUnpackedLayer(digest, root, {
    size,
    ...(options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {}),
    xattrs: await xattrs,
  });
  return { layer, rootfs };
}

/** sha256 and size of a tar's batches, hashing each piece where it lies (no copying into chunks). */
async function hashStream(source: AsyncIterable<Buffer[]>, signal?: AbortSignal): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const batch of source) {
    signal?.throwIfAborted();
    for (const piece of batch) {
      hash.update(piece);
      size += piece.length;
    }
  }
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

/** One tar entry to emit, in order. */
interface Entry {
  readonly abs: string;
  readonly rel: string;
  readonly name: string;
  readonly relDir: string;
  readonly st: Stats;
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Lets the event loop run (other stages, the getfattr child's output) between slices of synchronous work. */
const breathe = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Lists and lstat's the whole tree under `root`, in emission order. Synchronous calls in slices: the tree was
 * just written (page cache), and a threadpool round trip per call costs 2-3× the CPU of the call itself.
 */
async function scanTree(root: string, signal: AbortSignal | undefined): Promise<Entry[]> {
  const out: Entry[] = [];
  let sinceBreak = 0;
  const scan = async (abs: string, rel: string): Promise<void> => {
    const names = fsCb.readdirSync(abs).sort(byName);
    for (const name of names) {
      if (++sinceBreak >= SCAN_SLICE) {
        sinceBreak = 0;
        await breathe();
        signal?.throwIfAborted();
      }
      const entryAbs = `${abs}/${name}`;
      const entryRel = rel === '' ? name : `${rel}/${name}`;
      const st = fsCb.lstatSync(entryAbs);
      out.push({ abs: entryAbs, rel: entryRel, name, relDir: rel, st });
      if (st.isDirectory()) await scan(entryAbs, entryRel);
    }
  };
  await scan(root, '');
  return out;
}

/** Reads a whole small file with open + one read + close, synchronously (see {@link scanTree}). */
function readSmallFile(file: string, size: number): Buffer {
  const fd = fsCb.openSync(file, 'r');
  try {
    // One byte more than expected, so a file that grew is noticed.
    const buf = Buffer.allocUnsafe(size + 1);
    let filled = 0;
    for (;;) {
      const n = fsCb.readSync(fd, buf, filled, size + 1 - filled, filled);
      if (n === 0) break;
      filled += n;
      if (filled > size) break;
    }
    return buf.subarray(0, filled);
  } finally {
    fsCb.closeSync(fd);
  }
}

/**
 * The layer tar of `dir` as a stream of chunks (see the module comment for what goes in). `xattrs` may be given
 * when the caller already started reading them; otherwise they are read here (unless `options.xattrs` is 'none').
 */
export async function* layerTarStream(
  dir: string,
  options: SnapshotOptions = {},
  xattrs?: Promise<XattrTree> | XattrTree,
): AsyncGenerator<Buffer> {
  for await (const batch of layerTarPieces(dir, options, xattrs)) {
    yield batch.length === 1 ? (batch[0] as Buffer) : Buffer.concat(batch);
  }
}

/** The layer tar as batches of pieces (about {@link COALESCE} bytes each, or one big-file chunk). */
async function* layerTarPieces(
  dir: string,
  options: SnapshotOptions,
  xattrs: Promise<XattrTree> | XattrTree | undefined,
): AsyncGenerator<Buffer[]> {
  const { signal, sourceDateEpoch, onProgress } = options;
  const root = path.resolve(dir);
  const xattrsPending = xattrs ?? (options.xattrs === 'none' ? new Map<string, Map<string, Buffer>>() : readXattrTree(root, signal));
  // getfattr runs in its own process while the tree is listed; both finish before the first entry.
  if (xattrsPending instanceof Promise) xattrsPending.catch(() => undefined);
  const entries = await scanTree(root, signal);
  const xattrMap = await xattrsPending;
  checkOverlayFeatures(root, xattrMap.get(root));

  const seenInodes = new Map<string, string>();
  let bytes = 0;
  const mtimeOf = (st: Stats): number => {
    const t = Math.floor(st.mtimeMs / 1000);
    return sourceDateEpoch !== undefined && t > sourceDateEpoch ? sourceDateEpoch : t;
  };

  // Coalescing output buffer for small pieces.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const put = (buf: Buffer): void => {
    if (buf.length === 0) return;
    pending.push(buf);
    pendingBytes += buf.length;
    bytes += buf.length;
  };
  const take = (): Buffer[] => {
    const out = pending;
    pending = [];
    pendingBytes = 0;
    return out;
  };
  let sinceBreak = 0;

  for (const [i, e] of entries.entries()) {
    const { st, rel, relDir, name, abs } = e;
    if (++sinceBreak >= SCAN_SLICE) {
      // Batches are usually consumed synchronously (hashing), so give the event loop a turn now and then.
      sinceBreak = 0;
      await breathe();
      signal?.throwIfAborted();
    }
    if (name.startsWith('.wh.')) throw new RuntimeError(`cannot snapshot ${rel}: names starting with ".wh." are reserved for whiteouts`);
    const attrs = xattrMap.get(abs);
    checkOverlayFeatures(abs, attrs);
    const base = { uid: st.uid, gid: st.gid, mtime: mtimeOf(st), size: 0 };
    if (isWhiteout(st)) {
      put(encodeHeader({ ...base, name: relDir === '' ? `.wh.${name}` : `${relDir}/.wh.${name}`, type: 'file', mode: 0 }));
    } else {
      const header: TarHeader = { ...base, name: rel, type: 'file', mode: st.mode & 0o7777 };
      if (attrs) {
        const kept = new Map<string, Buffer>();
        for (const [k, v] of attrs) if (!k.startsWith(OVERLAY_PREFIX) && k !== 'security.selinux') kept.set(k, v);
        if (kept.size > 0) header.xattrs = kept;
      }
      const inode = `${st.dev}:${st.ino}`;
      const first = !st.isDirectory() && st.nlink > 1 ? seenInodes.get(inode) : undefined;
      if (first !== undefined) {
        put(encodeHeader({ ...header, type: 'link', linkname: first }));
      } else {
        if (!st.isDirectory() && st.nlink > 1) seenInodes.set(inode, rel);
        if (st.isDirectory()) {
          put(encodeHeader({ ...header, type: 'directory' }));
          if (attrs?.get(OPAQUE_XATTR)?.toString() === 'y') {
            put(encodeHeader({ ...base, name: `${rel}/.wh..wh..opq`, type: 'file', mode: 0 }));
          }
        } else if (st.isFile()) {
          put(encodeHeader({ ...header, size: st.size }));
          if (st.size <= SMALL_FILE) {
            if (st.size > 0) {
              const data = readSmallFile(abs, st.size);
              if (data.length !== st.size) throw new RuntimeError(`file ${rel} changed while it was being snapshotted`);
              put(data);
            }
          } else {
            if (pendingBytes > 0) yield take();
            for await (const chunk of bigFileContent(abs, st.size, rel, signal)) {
              bytes += chunk.length;
              yield [chunk];
            }
          }
          put(padding(st.size));
        } else if (st.isSymbolicLink()) {
          put(encodeHeader({ ...header, type: 'symlink', linkname: fsCb.readlinkSync(abs) }));
        } else if (st.isCharacterDevice() || st.isBlockDevice()) {
          put(encodeHeader({ ...header, type: st.isCharacterDevice() ? 'char' : 'block', ...devNumbers(st.rdev) }));
        } else if (st.isFIFO()) {
          put(encodeHeader({ ...header, type: 'fifo' }));
        }
        // Sockets cannot be represented in a tar; like Docker, they are left out.
      }
    }
    if (pendingBytes >= COALESCE) yield take();
    onProgress?.({ entries: i + 1, bytes });
  }
  put(END_OF_ARCHIVE);
  yield take();
}

/** A big file's content in READ_CHUNK pieces, the next read already running while a piece is consumed. */
async function* bigFileContent(abs: string, size: number, rel: string, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  const fh = await fs.open(abs, 'r');
  try {
    let position = 0;
    const readAt = async (pos: number): Promise<Buffer> => {
      const want = Math.min(READ_CHUNK, size - pos);
      const buf = Buffer.allocUnsafe(want);
      let filled = 0;
      while (filled < want) {
        const { bytesRead } = await fh.read(buf, filled, want - filled, pos + filled);
        if (bytesRead === 0) throw new RuntimeError(`file ${rel} shrank while it was being snapshotted`);
        filled += bytesRead;
      }
      return buf;
    };
    let next: Promise<Buffer> | undefined = size > 0 ? readAt(0) : undefined;
    while (next) {
      signal?.throwIfAborted();
      const buf: Buffer = await next;
      position += buf.length;
      next = position < size ? readAt(position) : undefined;
      next?.catch(() => undefined);
      yield buf;
    }
  } finally {
    await fh.close();
  }
}

function checkOverlayFeatures(abs: string, attrs: Map<string, Buffer> | undefined): void {
  // redirect_dir and metacopy keep data outside the upperdir, so an upperdir alone is not the layer.
  if (attrs?.has('trusted.overlay.redirect') || attrs?.has('trusted.overlay.metacopy')) {
    throw new RuntimeError(`${abs} uses overlay redirect_dir/metacopy; mount with redirect_dir=off,metacopy=off`);
  }
}
