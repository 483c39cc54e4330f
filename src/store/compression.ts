/**
 * Layer compression's shared resources, as one object: the gzip slots (how many members are compressed at once),
 * the pool of input buffers, and the member compressor (libdeflate or node:zlib). Whoever opens stores creates
 * one {@link Compressor} (build(), or a program running several builds at once) and passes it to every store,
 * so the slot limit holds for all of them together; a store opened without one makes its own.
 */
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import { BufferPool } from '../buffer-pool.js';

// node:zlib is loaded on first use: a cached build never compresses, and loading it costs ~4 ms of start-up.
// A lazily loaded module handle (a memoised constant of the process), not state.
let zlibModule: typeof import('node:zlib') | undefined;
export const zlib = (): typeof import('node:zlib') => (zlibModule ??= createRequire(import.meta.url)('node:zlib') as typeof import('node:zlib'));
type ZlibGzip = (chunk: Buffer, options: import('node:zlib').ZlibOptions) => Promise<Buffer>;

/** Size of the independently compressed gzip members; fixed, so the output is deterministic. */
export const GZIP_CHUNK_SIZE = 4 * 1024 * 1024;

/** Output buffer of each member's compression (does not change the output bytes, only the work per call). */
const GZIP_OUTPUT_BUFFER = 1024 * 1024;

/** Compresses one chunk into one complete gzip member. */
export type GzipMemberCompressor = (chunk: Buffer, level: number) => Promise<Buffer>;

/** Options of {@link createCompressor}. */
export interface CompressorOptions {
  /**
   * gzip members compressed at once by every store sharing the compressor. @default one per core plus one, but at
   * most the libuv threadpool's size minus one, so that the file reads, writes and fsyncs of the same pipeline
   * (which share that pool) never queue behind a pool full of compression jobs
   */
  readonly slots?: number;
  /**
   * The compressor of one member. @default libdeflate (src/native/deflate.ts) when its addon is built and
   * `KILN_NATIVE` is not `0`, node:zlib otherwise, chosen on first use (a cached build pays nothing for it)
   */
  readonly member?: GzipMemberCompressor;
}

/** The default slot count (see {@link CompressorOptions.slots}). */
export function defaultGzipSlots(): number {
  return Math.max(1, Math.min(availableParallelism() + 1, (Number(process.env.UV_THREADPOOL_SIZE) || 4) - 1));
}

/** Compression resources shared by the stores that were given the same instance (see the file comment). */
export interface Compressor {
  /** The gzip slot limit. */
  readonly slots: number;
  /**
   * Deterministic parallel gzip of a file or a stream: fixed-size chunks compressed independently, emitted in
   * order as concatenated gzip members (see {@link createCompressor}).
   */
  gzip(source: string | AsyncIterable<Uint8Array>, level: number, signal?: AbortSignal): AsyncGenerator<Buffer>;
}

/**
 * A compressor with its own gzip slots, buffer pool and member compressor.
 *
 * Its gzip cuts the input into {@link GZIP_CHUNK_SIZE} chunks, compresses them on libuv's threadpool when a slot
 * is free, and yields the members in order; at most `parallelism + 1` chunks of one call are in flight, so memory
 * stays bounded.
 *
 * The member compressor is libdeflate when its addon is built, node:zlib otherwise; libdeflate is about twice as
 * fast at the same level, and its output a few percent smaller. The two produce DIFFERENT compressed bytes for the
 * same input (different match finders and Huffman choices; libdeflate's header also says OS 255 where zlib's says
 * 3), while each alone is deterministic: same input, chunking and level, same bytes. So the uncompressed content,
 * and with it every diffID and the image config, never depends on the compressor, but a compressed blob's digest
 * (and so the manifest digest of a pushed or exported image) is reproducible only between machines that use the
 * same compressor (and libdeflate version). A blob compressed once is cached by diffID in the store, so one machine
 * keeps giving the same digest for a layer.
 */
export function createCompressor(options: CompressorOptions = {}): Compressor {
  const slots = Math.max(1, options.slots ?? defaultGzipSlots());
  let running = 0;
  const waiting: Array<() => void> = [];
  const width = Math.max(2, availableParallelism() + 1);
  // The input chunks live in pooled buffers (see src/buffer-pool.ts) that come back once their member is
  // compressed, and the pool outlives each call: fresh chunks cost as much as the compression itself on 5,000
  // small files (bench/snapshot.ts).
  let pool: BufferPool | undefined;
  let member: Promise<GzipMemberCompressor> | undefined = options.member !== undefined ? Promise.resolve(options.member) : undefined;
  const memberCompressor = (): Promise<GzipMemberCompressor> =>
    (member ??= import('../native/deflate.js').then(({ nativeDeflate }): GzipMemberCompressor => {
      const native = nativeDeflate();
      if (native !== undefined) return (chunk, level) => native.gzip(chunk, level);
      // A 1 MiB output buffer: with zlib's default 16 KiB, each member costs ~150 threadpool round trips
      // through the main thread, which halves the throughput of the whole pool.
      const gzipAsync = promisify(zlib().gzip) as ZlibGzip;
      return (chunk, level) => gzipAsync(chunk, { level, chunkSize: GZIP_OUTPUT_BUFFER });
    }));

  /** One gzip member, compressed when a slot is free. */
  const gzipMember = async (compress: GzipMemberCompressor, chunk: Buffer, level: number): Promise<Buffer> => {
    if (running < slots) running++;
    else await new Promise<void>((resolve) => waiting.push(resolve)); // the releasing job hands its slot over
    try {
      return await compress(chunk, level);
    } finally {
      const next = waiting.shift();
      if (next !== undefined) next();
      else running--;
    }
  };

  async function* gzip(source: string | AsyncIterable<Uint8Array>, level: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
    const compress = await memberCompressor();
    const chunkPool = (pool ??= new BufferPool(GZIP_CHUNK_SIZE, width + 1));
    const chunks = (typeof source === 'string' ? readFileChunks(source, chunkPool) : rechunk(source, chunkPool))[Symbol.asyncIterator]();
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
          const p = gzipMember(compress, chunk, level).finally(() => chunkPool.give(chunk));
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

  return { slots, gzip };
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
