/**
 * gzip with libdeflate, from the optional addon built from native/kiln_deflate.c by scripts/build-native.mjs
 * (only when libdeflate's headers are installed; Debian: libdeflate-dev).
 *
 * The store's compressor (src/store/compression.ts) uses {@link nativeDeflate} when it returns an addon and node:zlib otherwise
 * (not built, `KILN_NATIVE=0`, or `KILN_LIBDEFLATE=0`: node:zlib only, e.g. for blobs byte-identical to those of a
 * machine without libdeflate). libdeflate compresses a whole buffer about twice as fast as zlib at the
 * same level, a little smaller, but into different bytes: see `createCompressor` in src/store/compression.ts.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { nativeBuildDir } from './sys.js';

/** The addon's raw interface. */
interface DeflateAddon {
  /**
   * Compresses `input` into one complete gzip member on a libuv threadpool thread and calls `done` with it.
   * The header is fixed (mtime 0, no name, OS 255), so equal inputs give equal bytes.
   */
  gzip(input: Buffer, level: number, done: (err: Error | null, output?: Buffer) => void): void;
}

/** libdeflate's gzip, as kiln uses it. */
export interface NativeDeflate {
  /**
   * One complete gzip member of `input` at `level` (0-12; libdeflate's 6 is its default, comparable to zlib's),
   * compressed on the libuv threadpool. `input` must not change until the promise settles.
   */
  gzip(input: Buffer, level: number): Promise<Buffer>;
}

// A memoised constant of the process (the addon, or its absence), not state.
let loaded: { deflate: NativeDeflate | undefined } | undefined;

/** The libdeflate addon, or undefined when it is not built, `KILN_NATIVE=0` or `KILN_LIBDEFLATE=0` (memoized per process). */
export function nativeDeflate(): NativeDeflate | undefined {
  if (loaded !== undefined) return loaded.deflate;
  let deflate: NativeDeflate | undefined;
  const dir = process.env['KILN_LIBDEFLATE'] === '0' ? undefined : nativeBuildDir();
  const file = dir === undefined ? undefined : path.join(dir, 'kiln_deflate.node');
  if (file !== undefined && existsSync(file)) {
    try {
      const addon = createRequire(import.meta.url)(file) as DeflateAddon;
      deflate = {
        gzip: (input, level) =>
          new Promise<Buffer>((resolve, reject) => {
            addon.gzip(input, level, (err, output) => {
              if (err !== null || output === undefined) reject(err ?? new Error('gzip returned no output'));
              else resolve(output);
            });
          }),
      };
    } catch {
      // Built for another architecture, or libdeflate.so missing at run time: behave as if it were absent.
    }
  }
  loaded = { deflate };
  return deflate;
}
