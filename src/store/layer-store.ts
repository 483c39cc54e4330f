/**
 * The content-addressed layer store (see `types.ts` for the on-disk layout and the contract).
 *
 * Layers are kept UNCOMPRESSED locally (`application/vnd.oci.image.layer.v1.tar`, digest = diffID) and
 * compressed lazily, once, by {@link LayerStore.compressLayer} at export/push time; the compressed blob is
 * cached and found again by diffID + compression.
 *
 * Lazy layer blobs: a layer built locally (a step's upperdir, adopted by {@link LayerStore.adoptUnpackedLayer})
 * is stored only unpacked. Its tar is regenerated from `layers/<hex>/rootfs` when something needs it
 * ({@link LayerStore.openLayerTar}, {@link LayerStore.compressLayer}, `findLayerBlob(d, 'none')`, which writes
 * the blob), and the regenerated stream is verified against the diffID as it goes: a tampered directory
 * makes the read fail, never yields a wrong blob. Extra layout beyond `types.ts`:
 *   layerinfo/<diffID hex>/<compression>.json   LayerInfo of each stored blob variant of a layer
 *   layers/<diffID hex>/snapshot.json           how an adopted layer's tar is regenerated (size, sourceDateEpoch)
 *   locks/<name>.lock                           cross-process lock files (pid inside)
 *   leases/<pid>                                "this process writes to the store since <time>" (see prune)
 *   layers/<diffID hex>/durable                 the layer directory was synced to disk (see durability.ts)
 *   boot                                        the boot id of the last boot that used the store (durability.ts)
 *   quarantine/                                 what `kiln store verify` or a recovery found wrong (verify.ts)
 *
 * The store root is private to its owner (0700): unpacked layers hold setuid binaries and device nodes from
 * images nobody vetted, which any host user could otherwise run (see {@link ensurePrivateRoot}).
 */
import { BufferPool } from '../buffer-pool.js';
import { crypto, randomHex, sha256Hex } from '../oci/digest.js';
import { chmodSync, createReadStream, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { availableParallelism, hostname } from 'node:os';
import { defaultStoreRoot } from './default-root.js';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createRequire } from 'node:module';
import { RuntimeError, messageOf } from '../errors.js';
import { spreadSubdirs } from '../native/sys.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Descriptor, Digest, ImageConfig, ImageManifest } from '../oci/types.js';
// extract.js and snapshot.js are loaded on use (unpacking, adopting, regenerating a layer): a fully cached
// build needs none of them, and every module costs start-up time.
const snapshotModule = () => import('./snapshot.js');
import type { XattrTree } from './snapshot.js';
import type { AdoptOptions, Compression, LayerInfo, LayerStoreApi, StoredImage, WriteBlobOptions } from './types.js';
import { ownedName, ownerAlive, ownerOfName, processStartTime, selfOwner } from './owner.js';
import { detachMountsBelow, mountPoints, recoverDeadOwners } from './recovery.js';
import { bootId, markLayersDurable, needsBootRecovery, recoverAfterBoot } from './durability.js';

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;
// node:zlib is loaded on first use: a cached build never compresses, and loading it costs ~4 ms of start-up.
let zlibModule: typeof import('node:zlib') | undefined;
const zlib = (): typeof import('node:zlib') => (zlibModule ??= createRequire(import.meta.url)('node:zlib') as typeof import('node:zlib'));
let gzipAsyncFn: ((chunk: Buffer, options: import('node:zlib').ZlibOptions) => Promise<Buffer>) | undefined;
const gzipAsync = (chunk: Buffer, options: import('node:zlib').ZlibOptions): Promise<Buffer> =>
  (gzipAsyncFn ??= promisify(zlib().gzip) as (chunk: Buffer, options: import('node:zlib').ZlibOptions) => Promise<Buffer>)(chunk, options);

/** A blob write flushes what it has written so far each time this much more was written (see writeBlob; 4 MiB beat 8 MiB and none for 200 MB pulls here). */
const EARLY_SYNC_BYTES = 4 * 1024 * 1024;

/** A blob write stops reading its source while this many bytes wait for the disk (see writeBlob). */
const WRITE_BACKLOG_BYTES = 4 * 1024 * 1024;

/** Size of the independently compressed gzip members; fixed, so the output is deterministic. */
export const GZIP_CHUNK_SIZE = 4 * 1024 * 1024;

/** Output buffer of each member's compression (does not change the output bytes, only the work per call). */
const GZIP_OUTPUT_BUFFER = 1024 * 1024;

const MEDIA_TYPE_OF: Record<Compression, string> = {
  none: MEDIA_TYPES.ociLayer,
  gzip: MEDIA_TYPES.ociLayerGzip,
  zstd: MEDIA_TYPES.ociLayerZstd,
};

/** The hex part of a digest, validated (a digest is also a file name, so it must never contain a path). */
export function digestHex(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m?.[1]) throw new RuntimeError(`invalid digest: ${digest}`);
  return m[1];
}

const isErrno = (err: unknown, ...codes: string[]): boolean =>
  typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');

/**
 * Makes the store root reachable by its owner only, whatever `KILN_ROOT` is: unpacked layers hold setuid-root
 * binaries and device nodes from untrusted images, and a world-traversable store let any host user run them.
 * A looser mode is fixed (chmod 0700); a root that belongs to another user is refused.
 */
export function ensurePrivateRoot(dir: string): void {
  const st = statSync(dir);
  if (!st.isDirectory()) throw new RuntimeError(`the store root ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new RuntimeError(
      `the store root ${dir} belongs to uid ${st.uid}, not to this user (uid ${uid}); kiln keeps unpacked layers there (setuid binaries, device nodes) and needs a store only its user can reach: use a directory you own (KILN_ROOT or --root)`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    try {
      chmodSync(dir, 0o700);
    } catch (cause) {
      throw new RuntimeError(`the store root ${dir} has mode ${(st.mode & 0o777).toString(8)} and cannot be made private (0700): ${messageOf(cause)}`, { cause });
    }
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A unique temp name carrying its owner (pid and start time), so that a later process can tell abandoned temp files from live ones. */
const tempName = (prefix: string): string => ownedName(prefix);

/** Options of {@link LayerStore.compressLayer}. */
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

/** The content-addressed store of blobs, unpacked layers, tags and build-cache records. */
export class LayerStore implements LayerStoreApi {
  readonly root: string;

  /** Whether this instance has written its process's lease file (see {@link LayerStore.prune}). */
  private leased = false;

  /** Whether this instance put a layer directory into the store since its last {@link LayerStore.makeDurable}. */
  private layersWritten = false;

  private constructor(root: string) {
    this.root = root;
  }

  /**
   * Opens (creating if needed) a store.
   * @param root @default `$KILN_ROOT`, else `~/.cache/kiln`
   */
  static async open(root?: string): Promise<LayerStore> {
    const dir = path.resolve(root ?? defaultStoreRoot());
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    ensurePrivateRoot(dir);
    // Synchronous: seven awaited mkdir calls were seven threadpool round trips at every kiln start.
    for (const sub of ['blobs/sha256', 'layers', 'layerinfo', 'cache', 'tmp', 'locks', 'leases']) {
      mkdirSync(path.join(dir, sub), { recursive: true });
    }
    const store = new LayerStore(dir);
    // Every open recovers what dead kiln processes left (a few directory listings when there is nothing),
    // and the first open of a new boot drops what was not durable, before this process writes anything.
    await recoverDeadOwners(dir);
    // Locks a dead process held (a released lock is removed, so there are normally none): broken the safe way.
    for (const name of readdirSync(path.join(dir, 'locks'))) {
      if (name.endsWith('.lock')) await store.breakIfStale(path.join(dir, 'locks', name));
    }
    const boot = bootId();
    if (needsBootRecovery(dir, boot)) {
      await store.withLock('recovery', async () => {
        if (boot !== undefined && needsBootRecovery(dir, boot)) await recoverAfterBoot(dir, boot);
      });
    }
    return store;
  }

  /**
   * Syncs the store's filesystem once and marks every layer directory put in place before that as durable
   * (see durability.ts); nothing to do when this instance wrote no layer. The builder calls it at the end of
   * a build. Returns how many layers it marked.
   */
  async makeDurable(): Promise<number> {
    if (!this.layersWritten) return 0;
    this.layersWritten = false;
    return markLayersDurable(this.root);
  }

  // ---------------------------------------------------------------- blobs

  blobPath(digest: Digest): string {
    return path.join(this.root, 'blobs', 'sha256', digestHex(digest));
  }

  async hasBlob(digest: Digest): Promise<boolean> {
    // A synchronous stat without an exception for a missing file: a cached build asks this for every step,
    // mostly of layers kept only unpacked, and a rejected promise with its Error costs far more than the stat.
    try {
      return statSync(this.blobPath(digest), { throwIfNoEntry: false })?.isFile() ?? false;
    } catch {
      return false;
    }
  }

  async writeBlob(
    source: Readable | AsyncIterable<Uint8Array>,
    options: WriteBlobOptions = {},
  ): Promise<{ digest: Digest; size: number }> {
    const { signal, expectedDigest } = options;
    if (expectedDigest !== undefined) digestHex(expectedDigest);
    await this.takeLease();
    const tmp = path.join(this.root, 'tmp', tempName('blob'));
    const hash = crypto().createHash('sha256');
    let size = 0;
    const fh = await fs.open(tmp, 'wx', 0o644);
    let digest: Digest;
    /** Writes buffers in one writev (a short write, rare on a file, is finished chunk by chunk). */
    const writeAll = async (chunks: Uint8Array[]): Promise<void> => {
      const total = chunks.reduce((n, c) => n + c.byteLength, 0);
      let done = (await fh.writev(chunks)).bytesWritten;
      for (const chunk of chunks) {
        if (done >= chunk.byteLength) {
          done -= chunk.byteLength;
          continue;
        }
        let off = done;
        done = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
      }
      written += total;
    };
    let written = 0;
    // Chunks are hashed as they arrive and gathered while a write is in flight; each write takes all that
    // gathered in one writev, so small chunks (64 KiB network reads) cost neither copies nor a threadpool
    // round trip each. The source is awaited only when WRITE_BACKLOG_BYTES wait (sources yield fresh buffers).
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let writing: Promise<void> | undefined;
    let writeError: { error: unknown } | undefined;
    // Data already written is flushed in the background every EARLY_SYNC_BYTES, so the final fsync has
    // little left to wait for: disk writeback overlaps the rest of the stream (e.g. the network). One flush
    // at a time, and writes never wait for it; a writeback error is reported to one fsync only, so it is kept.
    let flushing: Promise<void> | undefined;
    let flushError: { error: unknown } | undefined;
    let flushedAt = 0;
    const drain = async (): Promise<void> => {
      try {
        while (pending.length > 0) {
          const chunks = pending;
          pending = [];
          pendingBytes = 0;
          await writeAll(chunks);
          options.onWritten?.(chunks);
          if (flushing === undefined && written - flushedAt >= EARLY_SYNC_BYTES) {
            flushedAt = written;
            flushing = fh.datasync().then(
              () => {
                flushing = undefined;
              },
              (error: unknown) => {
                flushError ??= { error };
                flushing = undefined;
              },
            );
          }
        }
      } catch (error) {
        writeError = { error };
      } finally {
        writing = undefined;
      }
    };
    try {
      try {
        for await (const chunk of source as AsyncIterable<Uint8Array>) {
          signal?.throwIfAborted();
          if (writeError !== undefined) throw writeError.error;
          if (chunk.byteLength === 0) continue;
          hash.update(chunk);
          size += chunk.byteLength;
          pending.push(chunk);
          pendingBytes += chunk.byteLength;
          writing ??= drain();
          if (pendingBytes >= WRITE_BACKLOG_BYTES) await writing;
        }
        await writing;
        if (writeError !== undefined) throw writeError.error;
        await flushing;
        signal?.throwIfAborted();
        await fh.sync();
        if (flushError !== undefined) throw flushError.error;
      } finally {
        await writing;
        await flushing;
        await fh.close();
      }
      digest = `sha256:${hash.digest('hex')}`;
      if (expectedDigest !== undefined && digest !== expectedDigest) {
        throw new RuntimeError(`blob digest mismatch: expected ${expectedDigest}, got ${digest}`);
      }
      // Blobs appear only by rename, so a crash leaves nothing but a temp file behind.
      await fs.rename(tmp, this.blobPath(digest));
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    await this.syncDir(path.dirname(this.blobPath(digest)));
    return { digest, size };
  }

  async writeBlobBytes(data: Uint8Array | string): Promise<{ digest: Digest; size: number }> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const digest: Digest = `sha256:${sha256Hex(bytes)}`;
    if (await this.hasBlob(digest)) return { digest, size: bytes.byteLength };
    return this.writeBlob((async function* () {
      yield bytes;
    })());
  }

  async readBlob(digest: Digest): Promise<Buffer> {
    try {
      return await fs.readFile(this.blobPath(digest));
    } catch (cause) {
      throw new RuntimeError(`blob ${digest} not found in the store`, { cause });
    }
  }

  openBlob(digest: Digest): Readable {
    return createReadStream(this.blobPath(digest), { highWaterMark: 1024 * 1024 });
  }

  private async syncDir(dir: string): Promise<void> {
    const fh = await fs.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Writes a small file atomically (temp in tmp/, then rename). */
  // The store's small files (records, tags, locks) are read and written with synchronous calls: each is a few
  // µs, where an awaited one costs a threadpool round trip (0.1–0.3 ms), and a build makes hundreds of them.

  private async writeFileAtomic(file: string, data: string): Promise<void> {
    const tmp = path.join(this.root, 'tmp', tempName('file'));
    try {
      writeFileSync(tmp, data, { flag: 'wx' });
      mkdirSync(path.dirname(file), { recursive: true });
      renameSync(tmp, file);
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
  }

  private async readJson<T>(file: string): Promise<T | undefined> {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as T;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw new RuntimeError(`cannot read ${file}: ${messageOf(err)}`, { cause: err });
    }
  }

  // ---------------------------------------------------------------- layers

  private layerInfoPath(diffId: Digest, compression: Compression): string {
    return path.join(this.root, 'layerinfo', digestHex(diffId), `${compression}.json`);
  }

  async registerLayer(layer: LayerInfo): Promise<void> {
    const compression = compressionOf(layer.mediaType);
    const file = this.layerInfoPath(layer.diffId, compression);
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
    await this.writeFileAtomic(file, text);
  }

  /** The stored blob of a layer in `compression`, without regenerating anything. */
  private async storedLayerBlob(diffId: Digest, compression: Compression): Promise<LayerInfo | undefined> {
    const info = await this.readJson<LayerInfo>(this.layerInfoPath(diffId, compression));
    if (info && (await this.hasBlob(info.digest))) return info;
    if (compression === 'none') {
      // An uncompressed layer's blob digest is its diffID, so it needs no record to be found.
      try {
        const st = await fs.stat(this.blobPath(diffId));
        return { diffId, digest: diffId, size: st.size, mediaType: MEDIA_TYPES.ociLayer };
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  async findLayerBlob(diffId: Digest, compression: Compression = 'none'): Promise<LayerInfo | undefined> {
    const stored = await this.storedLayerBlob(diffId, compression);
    if (stored || compression !== 'none') return stored;
    // Only compressed (a pulled layer, whose diffID is checked on first use): decompress it, verifying the diffID.
    // Preferred to regenerating from an unpacked directory, which reproduces only tars that kiln wrote itself.
    const decompressed = await this.decompressedLayerBlob(diffId);
    if (decompressed) return decompressed;
    const regenerated = await this.regeneratedLayerTar(diffId);
    if (!regenerated) return undefined;
    // Only unpacked (a lazily snapshotted layer): write the blob now, since the caller wants a file.
    const { size } = await this.writeBlob(regenerated, { expectedDigest: diffId });
    return { diffId, digest: diffId, size, mediaType: MEDIA_TYPES.ociLayer };
  }

  /** Writes a layer's uncompressed blob from a stored compressed one, verified against the diffID; undefined when there is none. */
  private async decompressedLayerBlob(diffId: Digest, signal?: AbortSignal): Promise<LayerInfo | undefined> {
    for (const variant of ['zstd', 'gzip'] as const) {
      const info = await this.storedLayerBlob(diffId, variant);
      if (!info) continue;
      try {
        const { size } = await this.writeBlob(await this.variantTar(info, variant, signal), { expectedDigest: diffId, ...(signal ? { signal } : {}) });
        return { diffId, digest: diffId, size, mediaType: MEDIA_TYPES.ociLayer };
      } catch (err) {
        if (!/digest mismatch/.test(messageOf(err))) throw err;
        throw new RuntimeError(`layer ${diffId}: its ${variant} blob ${info.digest} does not decompress to that diffID (${messageOf(err)})`, { cause: err });
      }
    }
    return undefined;
  }

  async hasLayer(diffId: Digest): Promise<boolean> {
    const hex = digestHex(diffId);
    if (await exists(path.join(this.root, 'layers', hex, 'rootfs'))) return true;
    for (const compression of ['none', 'gzip', 'zstd'] as const) {
      if (await this.storedLayerBlob(diffId, compression)) return true;
    }
    return false;
  }

  /**
   * The layer's tar regenerated from its unpacked directory, hashed as it streams: the stream fails (at the
   * end, or as soon as it exceeds the recorded size) when the directory no longer produces `diffId`.
   * Undefined when the layer is not unpacked. `consumedAtOnce`: the consumer is done with each chunk before it
   * asks for the next, so the tar stream may reuse its buffers (see layerTarStream).
   */
  private async regeneratedLayerTar(diffId: Digest, signal?: AbortSignal, consumedAtOnce = false): Promise<AsyncIterable<Buffer> | undefined> {
    const dir = path.join(this.root, 'layers', digestHex(diffId));
    const rootfs = path.join(dir, 'rootfs');
    if (!(await exists(rootfs))) return undefined;
    const meta = (await this.readJson<{ size?: number; sourceDateEpoch?: number }>(path.join(dir, 'snapshot.json'))) ?? {};
    const tampered = (detail: string): RuntimeError =>
      new RuntimeError(`layer ${diffId}: its unpacked directory ${rootfs} no longer matches the layer (${detail}); remove it (kiln prune after untagging) and rebuild`);
    return (async function* () {
      const hash = crypto().createHash('sha256');
      let size = 0;
      const options = {
        ...(signal ? { signal } : {}),
        ...(typeof meta.sourceDateEpoch === 'number' ? { sourceDateEpoch: meta.sourceDateEpoch } : {}),
      };
      const { layerTarStream } = await snapshotModule();
      for await (const chunk of layerTarStream(rootfs, options, undefined, undefined, consumedAtOnce)) {
        hash.update(chunk);
        size += chunk.length;
        if (typeof meta.size === 'number' && size > meta.size) throw tampered(`more than ${meta.size} bytes`);
        yield chunk;
      }
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== diffId) throw tampered(`it now gives ${got}`);
    })();
  }

  /** The uncompressed tar of a layer as a stream, from whichever variant is stored (or regenerated from its directory). */
  async openLayerTar(diffId: Digest, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    for (const compression of ['none', 'zstd', 'gzip'] as const) {
      const info = await this.storedLayerBlob(diffId, compression);
      if (info) return this.variantTar(info, compression, signal);
    }
    const regenerated = await this.regeneratedLayerTar(diffId, signal);
    if (regenerated) return regenerated;
    throw new RuntimeError(`layer ${diffId} is not in the store`);
  }

  /** The uncompressed content of one stored blob variant of a layer (not verified against the diffID here). */
  private async variantTar(info: LayerInfo, compression: Compression, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    if (compression === 'none') return this.openBlob(info.digest);
    if (compression === 'gzip') {
      const raw = this.openBlob(info.digest);
      const gunzip = zlib().createGunzip({ chunkSize: 256 * 1024 });
      raw.on('error', (err) => gunzip.destroy(err));
      gunzip.on('close', () => raw.destroy());
      return raw.pipe(gunzip);
    }
    const { execa } = await import('execa');
    const child = execa('zstd', ['-d', '-q', '-c'], {
      inputFile: this.blobPath(info.digest),
      encoding: 'buffer',
      buffer: false,
      ...(signal ? { cancelSignal: signal } : {}),
    });
    child.catch(() => undefined); // errors surface through the stream
    return child.iterable({ binary: true }) as AsyncIterable<Uint8Array>;
  }

  /**
   * Extracts a layer's tar (overlay form: whiteouts as 0/0 devices) into `dest` and returns the sha256 of the whole
   * stream, also what follows the tar's end marker (extraction stops there), for the caller to check against the
   * diffID. Used to unpack a layer and by `store verify` to rebuild one for comparison.
   */
  async extractLayerTar(diffId: Digest, dest: string, signal?: AbortSignal): Promise<Digest> {
    const hash = crypto().createHash('sha256');
    const source = (await this.openLayerTar(diffId, signal))[Symbol.asyncIterator]();
    const read = async (): Promise<IteratorResult<Uint8Array>> => {
      const r = await source.next();
      if (r.done !== true) hash.update(r.value);
      return r;
    };
    // `return` is not forwarded, so stopping extraction early does not close the source before it is drained.
    const hashing: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({ next: read, return: async () => ({ done: true, value: undefined }) }),
    };
    try {
      await (await import('./extract.js')).extractLayer(hashing, dest, { mode: 'overlay', ...(signal ? { signal } : {}) });
      while ((await read()).done !== true) signal?.throwIfAborted();
    } catch (err) {
      await source.return?.();
      throw err;
    }
    return `sha256:${hash.digest('hex')}`;
  }

  async unpackedLayer(diffId: Digest, options: { signal?: AbortSignal } = {}): Promise<string> {
    const hex = digestHex(diffId);
    const dir = path.join(this.root, 'layers', hex);
    const rootfs = path.join(dir, 'rootfs');
    if (await exists(rootfs)) return rootfs;
    return this.withLock(`layer-${hex}`, async () => {
      if (await exists(rootfs)) return rootfs;
      const tmpDir = path.join(this.root, 'layers', tempName(`${hex}.tmp`));
      spreadSubdirs(path.join(this.root, 'layers'));
      try {
        await fs.mkdir(path.join(tmpDir, 'rootfs'), { recursive: true });
        // The diffID is checked before the directory is renamed into place: a pulled layer is verified here, on first use.
        const got = await this.extractLayerTar(diffId, path.join(tmpDir, 'rootfs'), options.signal);
        if (got !== diffId) {
          throw new RuntimeError(`layer ${diffId}: its stored content has diffID ${got}, not the one the image names; refused (pull the image again from a trustworthy source)`);
        }
        await fs.rename(tmpDir, dir);
        this.layersWritten = true;
      } catch (err) {
        await fs.rm(tmpDir, { recursive: true, force: true });
        throw err;
      }
      return rootfs;
    });
  }

  /**
   * Marks this process as writing to the store, once: `leases/<pid>` holds the pid, host and the time of its
   * first write. A concurrent prune keeps unreferenced blobs and layers newer than the oldest live lease,
   * because they may belong to a build that has not tagged or cached them yet. A lease of a dead process is
   * void (prune deletes it); an earlier lease of the same pid is kept (it only protects more).
   */
  private async takeLease(): Promise<void> {
    if (this.leased) return;
    const file = path.join(this.root, 'leases', String(process.pid));
    mkdirSync(path.dirname(file), { recursive: true });
    try {
      writeFileSync(file, `${process.pid} ${hostname()} ${Date.now()} ${processStartTime('self') ?? 0}\n`, { flag: 'wx' });
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    this.leased = true;
  }

  /** The start time (ms) of the oldest live lease of another process, deleting dead ones. */
  private async oldestForeignLease(): Promise<number | undefined> {
    const dir = path.join(this.root, 'leases');
    let oldest: number | undefined;
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      const text = await fs.readFile(path.join(dir, name), 'utf8').catch(() => undefined);
      const [pid, host, since] = (text ?? '').trim().split(' ');
      if (Number(pid) === process.pid && host === hostname()) continue;
      if (host === hostname() && !pidAlive(Number(pid))) {
        await fs.rm(path.join(dir, name), { force: true });
        continue;
      }
      const t = Number(since);
      // Unreadable or half-written, or another host's: protect everything for now.
      const start = Number.isFinite(t) && text !== undefined ? t : 0;
      oldest = oldest === undefined ? start : Math.min(oldest, start);
    }
    return oldest;
  }

  async adoptUnpackedLayer(diffId: Digest, dir: string, options: AdoptOptions = {}): Promise<string> {
    await this.takeLease();
    const hex = digestHex(diffId);
    const target = path.join(this.root, 'layers', hex);
    const rootfs = path.join(target, 'rootfs');
    return this.withLock(`layer-${hex}`, async () => {
      if (await exists(rootfs)) {
        await fs.rm(dir, { recursive: true, force: true });
        return rootfs;
      }
      // A former upperdir carries overlay's private xattrs (origin, impure, …); a lowerdir should not.
      const source = path.resolve(dir);
      const { readXattrTree, stripOverlayXattrs } = await snapshotModule();
      const xattrs = (options.xattrs as XattrTree | undefined) ?? (await readXattrTree(source, undefined, '^trusted\\.overlay\\.'));
      await stripOverlayXattrs(xattrs);
      // layers/<hex> appears complete or not at all: assemble it under a temp name, then rename.
      const tmpDir = path.join(this.root, 'layers', tempName(`${hex}.tmp`));
      mkdirSync(tmpDir);
      try {
        const meta = {
          ...(options.size !== undefined ? { size: options.size } : {}),
          ...(options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {}),
        };
        writeFileSync(path.join(tmpDir, 'snapshot.json'), JSON.stringify(meta));
        renameSync(dir, path.join(tmpDir, 'rootfs'));
        renameSync(tmpDir, target);
        this.layersWritten = true;
      } catch (err) {
        await fs.rm(tmpDir, { recursive: true, force: true });
        throw new RuntimeError(`cannot adopt ${dir} as layer ${diffId}: ${messageOf(err)}`, { cause: err });
      }
      return rootfs;
    });
  }

  /**
   * Returns the layer's blob in `compression`, compressing the uncompressed blob once and caching the result
   * (a second call finds the cached blob). gzip is parallel and deterministic: the tar is cut into fixed
   * {@link GZIP_CHUNK_SIZE} chunks, each compressed independently on libuv's threadpool, and the members are
   * concatenated (a multi-member gzip stream is valid per RFC 1952). zstd runs `zstd -3 -T2`.
   */
  async compressLayer(diffId: Digest, compression: Compression, options: CompressOptions = {}): Promise<LayerInfo> {
    const found = await this.findLayerBlob(diffId, compression);
    if (found) return found;
    if (compression === 'none') throw new RuntimeError(`layer ${diffId} is not stored uncompressed`);
    return this.withLock(`compress-${digestHex(diffId)}-${compression}`, async () => {
      const again = await this.findLayerBlob(diffId, compression);
      if (again) return again;
      const { signal } = options;
      // Only another compressed variant (a pulled layer): decompress it to the uncompressed blob, verifying the diffID.
      let plain = (await this.storedLayerBlob(diffId, 'none')) ?? (await this.decompressedLayerBlob(diffId, signal));
      // parallelGzip copies each chunk before it asks for the next, so the tar may reuse its buffers.
      const regenerated = plain ? undefined : await this.regeneratedLayerTar(diffId, signal, compression === 'gzip');
      if (!plain && !regenerated) throw new RuntimeError(`layer ${diffId} is not stored uncompressed`);
      const writeOptions = signal ? { signal } : {};
      let written: { digest: Digest; size: number };
      if (compression === 'gzip') {
        // A lazily stored layer is compressed straight from its regenerated tar: no uncompressed blob is written.
        const source = regenerated ?? this.blobPath(diffId);
        written = await this.writeBlob(tapped(parallelGzip(source, options.level ?? 6, signal), options.onChunk), writeOptions);
      } else {
        // Shortcut: zstd reads a file, so a lazily stored layer gets its uncompressed blob written first.
        plain ??= await this.findLayerBlob(diffId, 'none');
        if (!plain) throw new RuntimeError(`layer ${diffId} is not stored uncompressed`);
        const { execa } = await import('execa');
        const child = execa('zstd', ['-3', '-T2', '-q', '-c'], {
          inputFile: this.blobPath(diffId),
          encoding: 'buffer',
          buffer: false,
          ...(signal ? { cancelSignal: signal } : {}),
        });
        const [result] = await Promise.allSettled([this.writeBlob(tapped(child.iterable({ binary: true }) as AsyncIterable<Uint8Array>, options.onChunk), writeOptions), child]);
        await child;
        if (result.status === 'rejected') throw result.reason;
        written = result.value;
      }
      const info: LayerInfo = { diffId, digest: written.digest, size: written.size, mediaType: MEDIA_TYPE_OF[compression] };
      await this.registerLayer(info);
      return info;
    });
  }

  // ---------------------------------------------------------------- images and tags

  async putImage(config: ImageConfig | Uint8Array, layers: readonly LayerInfo[]): Promise<StoredImage> {
    const bytes = config instanceof Uint8Array;
    const configBlob = await this.writeBlobBytes(bytes ? config : JSON.stringify(config));
    for (const layer of layers) await this.registerLayer(layer);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: MEDIA_TYPES.ociConfig, digest: configBlob.digest, size: configBlob.size },
      layers: layers.map((l): Descriptor => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    };
    const manifestBlob = await this.writeBlobBytes(JSON.stringify(manifest));
    const parsed = bytes ? (JSON.parse(Buffer.from(config).toString('utf8')) as ImageConfig) : config;
    return { manifestDigest: manifestBlob.digest, manifest, configDigest: configBlob.digest, config: parsed };
  }

  async getImage(manifestDigest: Digest): Promise<StoredImage> {
    const manifest = JSON.parse((await this.readBlob(manifestDigest)).toString('utf8')) as ImageManifest;
    const configDigest = manifest.config.digest;
    const config = JSON.parse((await this.readBlob(configDigest)).toString('utf8')) as ImageConfig;
    return { manifestDigest, manifest, configDigest, config };
  }

  private get imagesFile(): string {
    return path.join(this.root, 'images.json');
  }

  private async readTags(): Promise<Record<string, Digest>> {
    return (await this.readJson<Record<string, Digest>>(this.imagesFile)) ?? {};
  }

  async tag(name: string, manifestDigest: Digest): Promise<void> {
    digestHex(manifestDigest);
    // A rebuild usually re-tags the same image: nothing to write, no lock to take.
    if ((await this.readTags())[name] === manifestDigest) return;
    await this.withLock('images', async () => {
      const tags = await this.readTags();
      tags[name] = manifestDigest;
      await this.writeFileAtomic(this.imagesFile, `${JSON.stringify(sortKeys(tags), null, 2)}\n`);
    });
  }

  async resolveTag(name: string): Promise<Digest | undefined> {
    const tags = await this.readTags();
    return Object.hasOwn(tags, name) ? tags[name] : undefined;
  }

  async untag(name: string): Promise<boolean> {
    return this.withLock('images', async () => {
      const tags = await this.readTags();
      if (!Object.hasOwn(tags, name)) return false;
      delete tags[name];
      await this.writeFileAtomic(this.imagesFile, `${JSON.stringify(sortKeys(tags), null, 2)}\n`);
      return true;
    });
  }

  async listTags(): Promise<Array<{ name: string; digest: Digest }>> {
    const tags = await this.readTags();
    return Object.keys(tags).sort().map((name) => ({ name, digest: tags[name] as Digest }));
  }

  // ---------------------------------------------------------------- build cache

  private cachePath(key: string): string {
    const safe = /^[A-Za-z0-9._-]{1,128}$/.test(key) && !key.startsWith('.') ? key : sha256Hex(key);
    return path.join(this.root, 'cache', `${safe}.json`);
  }

  async getCache<T>(key: string): Promise<T | undefined> {
    return this.readJson<T>(this.cachePath(key));
  }

  async putCache(key: string, value: unknown): Promise<void> {
    await this.writeFileAtomic(this.cachePath(key), JSON.stringify(value));
  }

  // ---------------------------------------------------------------- locking

  /**
   * Runs `fn` holding an exclusive cross-process lock on `name`: `locks/<name>.lock` created with O_EXCL and
   * holding the owner's pid. A lock whose owner is dead is stale and gets broken; breaking is itself
   * serialised by a short-lived `<name>.lock.break` file, so two waiters can never both break a lock and
   * delete the fresh one the other just took. Not reentrant: nesting the same name in one process deadlocks.
   */
  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new RuntimeError(`invalid lock name: ${name}`);
    const file = path.join(this.root, 'locks', `${name}.lock`);
    // The owner's start time too: after a reboot a stale lock's pid may belong to an unrelated live process.
    const token = `${process.pid} ${hostname()} ${randomHex(8)} ${selfOwner().split('.')[1] ?? ''}\n`;
    for (let attempt = 0; ; attempt++) {
      try {
        writeFileSync(file, token, { flag: 'wx' });
        break;
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err;
      }
      await this.breakIfStale(file);
      await sleep(Math.min(2 + attempt * 2, 50));
    }
    try {
      return await fn();
    } finally {
      // Remove the lock only if it is still ours.
      try {
        if (readFileSync(file, 'utf8') === token) rmSync(file, { force: true });
      } catch {
        /* already gone */
      }
    }
  }

  private async breakIfStale(file: string): Promise<void> {
    const owner = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (owner === undefined || !owner.includes(' ')) return; // gone, or being written right now
    const [pid, host, , start] = owner.trim().split(' ');
    if (host !== hostname() || (start ? ownerAlive(`${pid}.${start}`) : pidAlive(Number(pid)))) return;
    const breaker = `${file}.break`;
    try {
      await fs.writeFile(breaker, String(process.pid), { flag: 'wx' });
    } catch {
      // Someone else is breaking it; a breaker that died holding .break is cleared after a few seconds.
      const st = await fs.stat(breaker).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 5000) await fs.rm(breaker, { force: true });
      return;
    }
    try {
      if ((await fs.readFile(file, 'utf8').catch(() => undefined)) === owner) await fs.rm(file, { force: true });
    } finally {
      await fs.rm(breaker, { force: true });
    }
  }

  // ---------------------------------------------------------------- garbage collection

  /**
   * Mark and sweep: marks from tags and cache records (every `sha256:` digest a record mentions), follows
   * manifests/indexes to configs and layers and layers to all their stored variants, then removes unmarked
   * blobs, unpacked layers, layer records and the temp files of processes that no longer run.
   * While other processes write to the store (their `leases/<pid>`), unreferenced blobs and unpacked layers
   * at least as new as the oldest such lease are kept: a build's layer is unreferenced until its cache record
   * or tag is written. Shortcut: the lease lasts as long as the writing process, not just its build, and a
   * prune inside a writing process does not protect that process's own unreferenced writes.
   */
  async prune(options: { signal?: AbortSignal } = {}): Promise<{ removedBlobs: number; freedBytes: number }> {
    const { signal } = options;
    return this.withLock('gc', async () => {
      const blobs = new Set<string>();
      const diffIds = new Set<string>();
      const pending: string[] = [];
      const mark = (digest: string): void => {
        const m = DIGEST_RE.exec(digest);
        if (m?.[1] && !blobs.has(m[1])) {
          blobs.add(m[1]);
          pending.push(m[1]);
        }
      };
      const collect = (value: unknown): void => {
        if (typeof value === 'string') mark(value);
        else if (Array.isArray(value)) value.forEach(collect);
        else if (value && typeof value === 'object') Object.values(value).forEach(collect);
      };
      for (const { digest } of await this.listTags()) mark(digest);
      for (const name of await fs.readdir(path.join(this.root, 'cache'))) {
        if (name.endsWith('.json')) collect(await this.readJson(path.join(this.root, 'cache', name)).catch(() => undefined));
      }
      while (pending.length > 0) {
        signal?.throwIfAborted();
        const hex = pending.pop() as string;
        diffIds.add(hex); // a marked uncompressed layer digest is its own diffID
        const file = path.join(this.root, 'blobs', 'sha256', hex);
        const st = await fs.stat(file).catch(() => undefined);
        if (st && st.size < 4 * 1024 * 1024) {
          const doc = await fs.readFile(file, 'utf8').then(parseJsonOrUndefined, () => undefined);
          if (doc && typeof doc === 'object') {
            const m = doc as Partial<ImageManifest> & { manifests?: Descriptor[]; rootfs?: { diff_ids?: string[] } };
            if (m.config?.digest) mark(m.config.digest);
            for (const l of Array.isArray(m.layers) ? m.layers : []) mark(l.digest);
            for (const d of Array.isArray(m.manifests) ? m.manifests : []) mark(d.digest);
            for (const d of Array.isArray(m.rootfs?.diff_ids) ? m.rootfs.diff_ids : []) mark(d);
          }
        }
        // Every stored variant of a live layer stays (the compressed ones are the export cache).
        const infoDir = path.join(this.root, 'layerinfo', hex);
        for (const name of await fs.readdir(infoDir).catch(() => [] as string[])) {
          const info = await this.readJson<LayerInfo>(path.join(infoDir, name)).catch(() => undefined);
          if (info) mark(info.digest);
        }
      }
      // A marked compressed blob keeps its diffID's records and unpacked layer too.
      for (const hex of await fs.readdir(path.join(this.root, 'layerinfo'))) {
        for (const name of await fs.readdir(path.join(this.root, 'layerinfo', hex)).catch(() => [] as string[])) {
          const info = await this.readJson<LayerInfo>(path.join(this.root, 'layerinfo', hex, name)).catch(() => undefined);
          if (info && blobs.has(digestHex(info.digest))) diffIds.add(hex);
        }
      }

      // Items at least as new as the oldest live lease of another process may be an unfinished build's (with
      // a second of slack for coarse mtimes).
      const lease = await this.oldestForeignLease();
      const leased = (st: { mtimeMs: number } | undefined): boolean => lease !== undefined && st !== undefined && st.mtimeMs >= lease - 1000;
      let removedBlobs = 0;
      let freedBytes = 0;
      const blobDir = path.join(this.root, 'blobs', 'sha256');
      for (const hex of await fs.readdir(blobDir)) {
        signal?.throwIfAborted();
        if (blobs.has(hex)) continue;
        const st = await fs.stat(path.join(blobDir, hex)).catch(() => undefined);
        if (leased(st)) continue;
        await fs.rm(path.join(blobDir, hex), { force: true });
        removedBlobs++;
        freedBytes += st?.size ?? 0;
      }
      for (const hex of await fs.readdir(path.join(this.root, 'layerinfo'))) {
        if (!diffIds.has(hex)) await fs.rm(path.join(this.root, 'layerinfo', hex), { recursive: true, force: true });
      }
      const mounts = mountPoints();
      const removeTree = async (p: string): Promise<void> => {
        // A dead build's mounts are detached first; never recurse into a live mount (a merged rootfs would
        // expose its lower layers to the rm).
        if (mounts.some((m) => m === p || m.startsWith(`${p}/`))) {
          const ok = await detachMountsBelow(p, mounts).then(
            () => true,
            () => false,
          );
          if (!ok) return;
        }
        await fs.rm(p, { recursive: true, force: true });
      };
      const abandoned = async (p: string, name: string): Promise<boolean> => {
        const owner = ownerOfName(name);
        if (owner !== undefined) return !ownerAlive(owner);
        // Temp entries of other components (e.g. step scratch dirs) carry no pid: old ones only.
        const st = await fs.lstat(p).catch(() => undefined);
        return st !== undefined && Date.now() - st.mtimeMs > TEMP_GRACE_MS;
      };
      for (const name of await fs.readdir(path.join(this.root, 'layers'))) {
        signal?.throwIfAborted();
        const p = path.join(this.root, 'layers', name);
        const remove = name.includes('.tmp-') ? await abandoned(p, name) : !diffIds.has(name) && !leased(await fs.lstat(p).catch(() => undefined));
        if (remove) await removeTree(p);
      }
      for (const name of await fs.readdir(path.join(this.root, 'tmp'))) {
        const p = path.join(this.root, 'tmp', name);
        if (await abandoned(p, name)) await removeTree(p);
      }
      return { removedBlobs, freedBytes };
    });
  }
}

function parseJsonOrUndefined(text: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function compressionOf(mediaType: string): Compression {
  if (mediaType.endsWith('+gzip') || mediaType.endsWith('.gzip')) return 'gzip';
  if (mediaType.endsWith('+zstd')) return 'zstd';
  return 'none';
}

function sortKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.keys(record).sort().map((k) => [k, record[k] as T]));
}

/** Temp entries without an owner pid in their name are removed by prune only after this long. */
const TEMP_GRACE_MS = 60 * 60 * 1000;


async function exists(p: string): Promise<boolean> {
  // A synchronous stat without an exception for a missing entry (see hasBlob).
  try {
    return statSync(p, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return false; // ENOTDIR, EACCES: not there for us either
  }
}

/**
 * gzip jobs running at once across every {@link parallelGzip} call of the process: one per core plus one, but at most
 * the libuv threadpool's size minus one, so that the file reads, writes and fsyncs of the same pipeline (which
 * share that pool) never queue behind a pool full of compression jobs.
 */
const GZIP_JOBS = Math.max(1, Math.min(availableParallelism() + 1, (Number(process.env.UV_THREADPOOL_SIZE) || 4) - 1));
let gzipRunning = 0;
/** The input buffers of every {@link parallelGzip} call of the process (see there). */
let gzipChunkPool: BufferPool | undefined;
const gzipWaiting: Array<() => void> = [];

/** Compresses one chunk into one complete gzip member. */
type GzipCompressor = (chunk: Buffer, level: number) => Promise<Buffer>;

let gzipCompressorPromise: Promise<GzipCompressor> | undefined;

/**
 * The compressor of every gzip member this process writes: libdeflate (src/native/deflate.ts) when its addon
 * is built and `KILN_NATIVE` is not `0`, node:zlib otherwise. Chosen once per process and loaded on first use,
 * like node:zlib, so that a cached build pays nothing for it.
 */
function gzipCompressor(): Promise<GzipCompressor> {
  return (gzipCompressorPromise ??= import('../native/deflate.js').then(({ nativeDeflate }) => {
    const native = nativeDeflate();
    if (native !== undefined) return (chunk, level) => native.gzip(chunk, level);
    // A 1 MiB output buffer: with zlib's default 16 KiB, each member costs ~150 threadpool round trips
    // through the main thread, which halves the throughput of the whole pool.
    return (chunk, level) => gzipAsync(chunk, { level, chunkSize: GZIP_OUTPUT_BUFFER });
  }));
}

/** One gzip member, compressed on the threadpool when a {@link GZIP_JOBS} slot is free. */
async function gzipMember(compress: GzipCompressor, chunk: Buffer, level: number): Promise<Buffer> {
  if (gzipRunning < GZIP_JOBS) gzipRunning++;
  else await new Promise<void>((resolve) => gzipWaiting.push(resolve)); // the releasing job hands its slot over
  try {
    return await compress(chunk, level);
  } finally {
    const next = gzipWaiting.shift();
    if (next !== undefined) next();
    else gzipRunning--;
  }
}

/**
 * Deterministic parallel gzip of a file: fixed-size chunks compressed independently on libuv's threadpool,
 * emitted in order as concatenated gzip members. At most `parallelism + 1` chunks are in flight, so memory
 * stays bounded.
 *
 * The compressor is libdeflate when its addon is built, node:zlib otherwise (see {@link gzipCompressor});
 * libdeflate is about twice as fast at the same level, and its output a few percent smaller. The two produce
 * DIFFERENT compressed bytes for the same input (different match finders and Huffman choices; libdeflate's
 * header also says OS 255 where zlib's says 3), while each alone is deterministic: same input, chunking and
 * level, same bytes. So the uncompressed content, and with it every diffID and the image config, never depends
 * on the compressor, but a compressed blob's digest (and so the manifest digest of a pushed or exported image)
 * is reproducible only between machines that use the same compressor (and libdeflate version). A blob
 * compressed once is cached by diffID in the store, so one machine keeps giving the same digest for a layer.
 */
export async function* parallelGzip(source: string | AsyncIterable<Uint8Array>, level: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const width = Math.max(2, availableParallelism() + 1);
  const compress = await gzipCompressor();
  // The input chunks live in pooled buffers (see src/buffer-pool.ts) that come back once their member is
  // compressed, and the pool outlives the call: fresh chunks cost as much as the compression itself on 5,000
  // small files (bench/snapshot.ts).
  const pool = (gzipChunkPool ??= new BufferPool(GZIP_CHUNK_SIZE, width + 1));
  const chunks = (typeof source === 'string' ? readFileChunks(source, pool) : rechunk(source, pool))[Symbol.asyncIterator]();
  try {
    const inFlight: Array<Promise<Buffer>> = [];
    let eof = false;
    let first = true;
    for (;;) {
      while (!eof && inFlight.length < width) {
        const r = await chunks.next();
        if (r.done === true) {
          eof = true;
          // An empty input still needs one (empty) member to be a valid gzip stream.
          if (first) inFlight.push(gzipMember(compress, Buffer.alloc(0), level));
          break;
        }
        first = false;
        const chunk = r.value;
        const p = gzipMember(compress, chunk, level).finally(() => pool.give(chunk));
        p.catch(() => undefined);
        inFlight.push(p);
      }
      const next = inFlight.shift();
      if (!next) return;
      signal?.throwIfAborted();
      yield await next;
    }
  } finally {
    await chunks.return?.(undefined);
  }
}

/** A file's content in chunks of the pool's size, each read into a buffer taken from `pool`. */
async function* readFileChunks(file: string, pool: BufferPool): AsyncGenerator<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    let position = 0;
    for (;;) {
      const buf = pool.take();
      let filled = 0;
      while (filled < pool.size) {
        const { bytesRead } = await fh.read(buf, filled, pool.size - filled, position);
        if (bytesRead === 0) break;
        filled += bytesRead;
        position += bytesRead;
      }
      if (filled > 0) yield buf.subarray(0, filled);
      else pool.give(buf);
      if (filled < pool.size) return;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Re-cuts a byte stream into pieces of exactly the pool's size (the last one shorter), so the output is
 * deterministic. Each piece is copied into a buffer taken from `pool` before the next source chunk is asked
 * for, so the source may reuse its buffers (a layer tar regenerated with `consumedAtOnce`).
 */
async function* rechunk(source: AsyncIterable<Uint8Array>, pool: BufferPool): AsyncGenerator<Buffer> {
  const size = pool.size;
  let piece = pool.take();
  let have = 0;
  try {
    for await (const chunk of source) {
      let at = 0;
      while (at < chunk.byteLength) {
        const n = Math.min(size - have, chunk.byteLength - at);
        piece.set(chunk.subarray(at, at + n), have);
        have += n;
        at += n;
        if (have === size) {
          const full = piece;
          piece = pool.take();
          have = 0;
          yield full;
        }
      }
    }
    if (have > 0) {
      const last = piece.subarray(0, have);
      have = -1; // handed over
      yield last;
    }
  } finally {
    if (have >= 0) pool.give(piece);
  }
}
