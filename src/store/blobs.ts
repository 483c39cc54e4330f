/**
 * Content-addressed blobs: `blobs/sha256/<hex>` (layers, configs, manifests), an OCI-layout-compatible tree.
 * A blob appears only by rename of a complete, fsynced temp file, and its directory is synced after, so a crash
 * leaves nothing but a temp file behind (which recovery.ts or prune removes).
 */
import { createReadStream, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { RuntimeError } from '../errors.js';
import type { Digest } from '../oci/types.js';
import { crypto, sha256Hex } from '../oci/digest.js';
import { digestHex, tempName } from './files.js';
import type { Leases } from './leases.js';
import type { WriteBlobOptions } from './types.js';

/** A blob write flushes what it has written so far each time this much more was written (see writeBlob; 4 MiB beat 8 MiB and none for 200 MB pulls here). */
const EARLY_SYNC_BYTES = 4 * 1024 * 1024;

/** A blob write stops reading its source while this many bytes wait for the disk (see writeBlob). */
const WRITE_BACKLOG_BYTES = 4 * 1024 * 1024;

/** The blobs of the store at `root`. Holds no state but the lease it takes on its first write. */
export class Blobs {
  readonly #root: string;
  readonly #leases: Leases;

  constructor(root: string, leases: Leases) {
    this.#root = root;
    this.#leases = leases;
  }

  blobPath(digest: Digest): string {
    return path.join(this.#root, 'blobs', 'sha256', digestHex(digest));
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
    await this.#leases.take();
    const tmp = path.join(this.#root, 'tmp', tempName('blob'));
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
    await this.#syncDir(path.dirname(this.blobPath(digest)));
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

  async #syncDir(dir: string): Promise<void> {
    const fh = await fs.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
