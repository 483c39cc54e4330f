/**
 * Buffers of one size that a stream hands out and gets back once their consumer is done with them.
 *
 * Why: on these VMs the first touch of fresh memory costs a page fault per 4 KiB, ~3.5 ms a MiB (32 MiB written
 * once: 106-122 ms; written again: 1.6 ms), as much as the work the buffers are for: a socket read into them
 * (registry pulls), a layer tar's slabs (snapshots), gzip's input chunks. Used by src/registry/raw-http.ts,
 * src/store/snapshot.ts and src/store/compression.ts (each pool belongs to its user: a download, a snapshot, a
 * compressor; none is module state).
 */
export class BufferPool {
  readonly size: number;
  readonly #keep: number;
  readonly #free: Buffer[] = [];
  /** Backing stores this pool allocated: only those come back. */
  readonly #mine = new WeakSet<ArrayBufferLike>();
  readonly #isFree = new WeakSet<ArrayBufferLike>();

  /** Buffers of `size` bytes; at most `keep` free ones are kept between uses (the rest are left to the GC). */
  constructor(size: number, keep = Number.POSITIVE_INFINITY) {
    this.size = size;
    this.#keep = keep;
  }

  /** A free buffer, or a new one. */
  take(): Buffer {
    const buf = this.#free.pop();
    if (buf !== undefined) {
      this.#isFree.delete(buf.buffer);
      return buf;
    }
    // Never a slice of Node's shared pool: each buffer owns its backing store, which is how give() knows it.
    const fresh = Buffer.allocUnsafeSlow(this.size);
    this.#mine.add(fresh.buffer);
    return fresh;
  }

  /**
   * Gives back the buffer `chunk` is (a view of): never while anything may still read or write its bytes. Chunks
   * that did not come from this pool, and a buffer given back twice, are ignored.
   */
  give(chunk: Uint8Array): void {
    if (!this.#mine.has(chunk.buffer) || this.#isFree.has(chunk.buffer) || this.#free.length >= this.#keep) return;
    this.#isFree.add(chunk.buffer);
    this.#free.push(Buffer.from(chunk.buffer, 0, this.size));
  }
}
