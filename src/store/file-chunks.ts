/**
 * Reading a big file in chunks, the fast way on these machines: the next read runs in the threadpool while
 * the consumer uses the current chunk.
 *
 * With `reuse`, two chunk buffers take turns. Why: a fresh multi-MiB buffer per chunk is a fresh mmap, and
 * the page faults of filling it cost about as much as reading the page cache itself (200 MB hashed: ~130 ms
 * with two reused buffers, 220–420 ms with a new buffer per chunk). The price is a contract: a yielded chunk
 * is only valid until the consumer asks for the next one, so only a consumer that is done with it by then (a
 * hash update) may ask for it. A consumer that keeps chunks (a compressor) gets a fresh buffer per chunk.
 */
import { open } from 'node:fs/promises';

/** Chunk size: big enough that the per-read overhead vanishes, small enough to keep the loop responsive. */
export const FILE_CHUNK = 2 * 1024 * 1024;

/**
 * The `size` bytes of `file`, in chunks of at most {@link FILE_CHUNK}; with `reuse` they are overwritten once
 * the next chunk is requested (see the module comment). `onShort` makes the error for a file that ends
 * before `size` bytes.
 */
export async function* fileChunks(
  file: string,
  size: number,
  onShort: () => Error,
  options: { readonly reuse: boolean; readonly signal?: AbortSignal | undefined },
): AsyncGenerator<Buffer> {
  const { reuse, signal } = options;
  const fh = await open(file, 'r');
  let inFlight: Promise<Buffer> | undefined;
  try {
    const buffers = reuse ? [Buffer.allocUnsafe(Math.min(FILE_CHUNK, size)), Buffer.allocUnsafe(Math.min(FILE_CHUNK, size))] : undefined;
    const readAt = async (position: number, which: number): Promise<Buffer> => {
      const want = Math.min(FILE_CHUNK, size - position);
      const buf = buffers?.[which] ?? Buffer.allocUnsafe(want);
      let filled = 0;
      while (filled < want) {
        const { bytesRead } = await fh.read(buf, filled, want - filled, position + filled);
        if (bytesRead === 0) throw onShort();
        filled += bytesRead;
      }
      return buf.subarray(0, want);
    };
    let position = 0;
    let which = 0;
    inFlight = size > 0 ? readAt(0, which) : undefined;
    while (inFlight) {
      signal?.throwIfAborted();
      const chunk = await inFlight;
      position += chunk.length;
      which ^= 1;
      // With reuse, the other buffer is free: the consumer finished with it before asking for this chunk.
      inFlight = position < size ? readAt(position, which) : undefined;
      inFlight?.catch(() => undefined);
      yield chunk;
    }
  } finally {
    // A read still running must finish before its file handle closes.
    await inFlight?.catch(() => undefined);
    await fh.close();
  }
}
