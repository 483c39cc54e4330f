/**
 * Downloads a blob into the store through reused read buffers: the socket reads into a small pool of
 * segments (raw-http.ts), the store's `writeBlob` hashes each chunk as it arrives and writes it, and hands
 * it back (`onWritten`) so its segment returns to the pool. Streaming fresh buffers instead costs about twice
 * the CPU here: every 4 KiB of fresh memory is a page fault.
 *
 * Crash safety and verification are `writeBlob`'s: a temp file under the store's tmp/ (removed on failure, and by
 * prune if the process dies), fsynced, checked against the expected digest, then renamed into place.
 */
import { RegistryError, messageOf } from '../errors.js';
import type { Digest } from '../oci/types.js';
import type { LayerStoreApi } from '../store/types.js';
import type { RegistryClient } from './client.js';
import { BufferPool } from '../buffer-pool.js';
import { SEGMENT_SIZE } from './raw-http.js';

/**
 * Downloads blob `expected.digest` of `repo` into the store, refusing it (nothing stored, no temp file
 * left) unless it has exactly `expected.size` bytes and that digest. `onBytes` gets the running count.
 */
export async function downloadBlobToStore(
  client: RegistryClient,
  store: LayerStoreApi,
  repo: string,
  expected: { readonly digest: Digest; readonly size: number },
  signal: AbortSignal | undefined,
  onBytes: (bytes: number) => void,
): Promise<void> {
  if (!/^sha256:[0-9a-f]{64}$/.test(expected.digest)) throw new RegistryError(`unsupported blob digest ${expected.digest}`);
  const pool = new BufferPool(SEGMENT_SIZE);
  let size = 0;
  // The size is checked in the stream itself, so a wrong size fails before the digest is compared.
  async function* counted(): AsyncGenerator<Uint8Array> {
    for await (const chunk of client.getBlob(repo, expected.digest, signal, { pool })) {
      size += chunk.byteLength;
      if (size > expected.size) throw new RegistryError(`blob ${expected.digest} is larger than its descriptor's ${String(expected.size)} bytes`);
      onBytes(size);
      yield chunk;
    }
    if (size !== expected.size) throw new RegistryError(`blob ${expected.digest} has ${String(size)} bytes, its descriptor says ${String(expected.size)}`);
  }
  await wrapVerify(
    store.writeBlob(counted(), {
      expectedDigest: expected.digest,
      ...(signal !== undefined ? { signal } : {}),
      onWritten: (chunks) => {
        for (const c of chunks) pool.give(c);
      },
    }),
    expected.digest,
  );
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || (err as NodeJS.ErrnoException).code === 'ABORT_ERR');
}

/** The store's digest mismatch as the registry error it is; anything else unchanged. */
function toVerifyError(err: unknown, digest: Digest): unknown {
  if (err instanceof RegistryError || isAbort(err)) return err;
  const msg = messageOf(err);
  return /mismatch/i.test(msg)
    ? new RegistryError(`refused blob ${digest}: content does not match its digest (${msg})`, undefined, { cause: err })
    : err;
}

/** `p` (a blob write verified against `digest`), with a digest mismatch reported as a refused blob. */
export async function wrapVerify<T>(p: Promise<T>, digest: Digest): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw toVerifyError(err, digest);
  }
}
