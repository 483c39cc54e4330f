/**
 * Downloads a blob straight into a store temp file, reusing its read buffers: the socket reads into
 * a small pool of segments, each is hashed as it arrives (while still in the CPU cache) and written,
 * and goes back to the pool once written. This costs about half the CPU of streaming fresh buffers into
 * `writeBlob`, where every 4 KiB of fresh memory is a page fault.
 *
 * Crash safety is the store's: the bytes go to a temp file under the store's tmp/ (removed on any
 * failure here, and by prune if the process dies), which is fsynced, checked against the expected
 * digest and size, and only then renamed into place by the store.
 */
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { RegistryError } from '../errors.js';
import type { Digest } from '../image/types.js';
import type { RegistryClient } from './client.js';
import { SegmentPool } from './raw-http.js';

/** The store operations a download into a temp file needs (`LayerStore` has them). */
export interface BlobTempStore {
  blobTempPath(): Promise<string>;
  commitBlobTemp(tmp: string, digest: Digest): Promise<void>;
}

/** Whether a store can take a blob written by {@link downloadBlobToStore}. */
export function canStoreBlobTemp(store: object): store is BlobTempStore {
  const s = store as Partial<BlobTempStore>;
  return typeof s.blobTempPath === 'function' && typeof s.commitBlobTemp === 'function';
}

/** Reading stops while this many downloaded bytes wait for the disk. */
const WRITE_BACKLOG_BYTES = 4 * 1024 * 1024;

/**
 * Each time this much more was written, what was written is flushed in the background (one flush at a
 * time, never holding up the writes), so the final fsync has little left to wait for.
 */
const EARLY_SYNC_BYTES = 4 * 1024 * 1024;

/** Writes buffers with one writev, finishing a short write (rare on a file) chunk by chunk. */
async function writeAll(fh: FileHandle, chunks: Uint8Array[]): Promise<void> {
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
}

/**
 * Downloads blob `expected.digest` of `repo` into the store, refusing it (nothing stored, no temp file
 * left) unless it has exactly `expected.size` bytes and that digest. `onBytes` gets the running count.
 */
export async function downloadBlobToStore(
  client: RegistryClient,
  store: BlobTempStore,
  repo: string,
  expected: { readonly digest: Digest; readonly size: number },
  signal: AbortSignal | undefined,
  onBytes: (bytes: number) => void,
): Promise<void> {
  if (!/^sha256:[0-9a-f]{64}$/.test(expected.digest)) throw new RegistryError(`unsupported blob digest ${expected.digest}`);
  const tmp = await store.blobTempPath();
  const pool = new SegmentPool();
  const hash = createHash('sha256');
  let size = 0;
  // Chunks gather while a write is in flight; each write takes all that gathered in one writev, then
  // gives their segments back to the pool.
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let writing: Promise<void> | undefined;
  let writeError: { error: unknown } | undefined;
  let written = 0;
  let flushedAt = 0;
  let flushing: Promise<void> | undefined;
  let flushError: { error: unknown } | undefined;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    const drain = async (): Promise<void> => {
      try {
        while (pending.length > 0) {
          const chunks = pending;
          pending = [];
          pendingBytes = 0;
          await writeAll(fh, chunks);
          for (const c of chunks) {
            written += c.byteLength;
            pool.release(c);
          }
          if (flushing === undefined && written - flushedAt >= EARLY_SYNC_BYTES) {
            flushedAt = written;
            // A writeback error is reported to one fsync only: keep it for the end.
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
      for await (const chunk of client.getBlob(repo, expected.digest, signal, { pool })) {
        if (writeError !== undefined) throw writeError.error;
        if (chunk.byteLength === 0) continue;
        size += chunk.byteLength;
        if (size > expected.size) throw new RegistryError(`blob ${expected.digest} is larger than its descriptor's ${String(expected.size)} bytes`);
        hash.update(chunk);
        onBytes(size);
        pending.push(chunk);
        pendingBytes += chunk.byteLength;
        writing ??= drain();
        if (pendingBytes >= WRITE_BACKLOG_BYTES) await writing;
      }
      await writing;
      if (writeError !== undefined) throw writeError.error;
      signal?.throwIfAborted();
      await flushing;
      await fh.sync();
      if (flushError !== undefined) throw flushError.error;
    } finally {
      await writing;
      await flushing;
      await fh.close();
    }
    if (size !== expected.size) throw new RegistryError(`blob ${expected.digest} has ${String(size)} bytes, its descriptor says ${String(expected.size)}`);
    const digest: Digest = `sha256:${hash.digest('hex')}`;
    if (digest !== expected.digest) throw new RegistryError(`refused blob ${expected.digest}: content does not match its digest (got ${digest})`);
    await store.commitBlobTemp(tmp, digest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
