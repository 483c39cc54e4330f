/**
 * Streaming SHA-256 for layer tars: the system's libcrypto on the libuv threadpool, from the optional addon built
 * from native/kiln_sha256.c by scripts/build-native.mjs (only when libcrypto's headers are installed; Debian:
 * libssl-dev), else node:crypto on the main thread. Both give the same digests; the addon's is ~2.8× faster here
 * (it uses the CPU's SHA extensions, which Node's own OpenSSL does not) and leaves the main thread free.
 * `KILN_NATIVE=0` or `KILN_NATIVE_SHA256=0` turns it off.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { nativeBuildDir } from './sys.js';

/** The addon's raw interface (see native/kiln_sha256.c). */
interface Sha256Addon {
  create(): object;
  update(state: object, data: Uint8Array, done: (err: Error | null) => void): void;
  updateSync(state: object, data: Uint8Array): void;
  digest(state: object): string;
}

/** A SHA-256 being computed: feed it with {@link StreamHash.update} (one at a time), then read {@link StreamHash.digest}. */
export interface StreamHash {
  /** Hashes `chunk`, which must stay unchanged until the returned promise settles; wait for it before the next call. */
  update(chunk: Uint8Array): Promise<void> | void;
  /** The lowercase hex digest; the hash cannot be used after it. */
  digest(): string;
}

/**
 * Chunks from this size go to the threadpool; smaller ones are hashed at once on this thread (in ~40 µs at most),
 * cheaper than a round trip through the pool's queue, which other file work may be using.
 */
const THREADPOOL_MIN = 64 * 1024;

/** Inputs smaller than this never load the addon (see {@link streamSha256}). */
const SMALL_INPUT = 1024 * 1024;

/** Memoised per process: the addon is loaded once (a lazy module handle, not state that changes). */
let loaded: { addon: Sha256Addon | undefined } | undefined;

function addon(): Sha256Addon | undefined {
  if (loaded !== undefined) return loaded.addon;
  let found: Sha256Addon | undefined;
  const dir = process.env['KILN_NATIVE_SHA256'] === '0' ? undefined : nativeBuildDir();
  const file = dir === undefined ? undefined : path.join(dir, 'kiln_sha256.node');
  if (file !== undefined && existsSync(file)) {
    try {
      found = createRequire(import.meta.url)(file) as Sha256Addon;
    } catch {
      // Built for another architecture, or libcrypto.so missing at run time: behave as if it were absent.
    }
  }
  loaded = { addon: found };
  return found;
}

/** Whether layer hashes use the libcrypto addon. */
export function nativeSha256Available(): boolean {
  return addon() !== undefined;
}

/** One SHA-256 implementation behind {@link streamSha256}. */
interface Hasher {
  updateSync(chunk: Uint8Array): void;
  update(chunk: Uint8Array): Promise<void> | void;
  digest(): string;
}

function nodeHasher(): Hasher {
  const h = createHash('sha256');
  return { updateSync: (chunk) => void h.update(chunk), update: (chunk) => void h.update(chunk), digest: () => h.digest('hex') };
}

function addonHasher(a: Sha256Addon): Hasher {
  const state = a.create();
  return {
    updateSync: (chunk) => a.updateSync(state, chunk),
    update: (chunk) => {
      if (chunk.length < THREADPOOL_MIN) return a.updateSync(state, chunk);
      let settle: (err: Error | null) => void = () => undefined;
      const done = new Promise<void>((resolve, reject) => {
        settle = (err) => (err === null ? resolve() : reject(err));
      });
      // Outside the promise: a misuse (an update while one runs) throws here, at the caller.
      a.update(state, chunk, settle);
      return done;
    },
    digest: () => a.digest(state),
  };
}

/**
 * A new streaming SHA-256: the addon's when built, node:crypto's otherwise. An input that stays under
 * {@link SMALL_INPUT} (most layers of a build: a COPY of a config file, a RUN that touched a few files) is held and
 * hashed by node:crypto at the end: loading libcrypto costs a few milliseconds, more than such a hash.
 */
export function streamSha256(): StreamHash {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let hasher: Hasher | undefined;
  return {
    update: (chunk) => {
      if (hasher === undefined) {
        if (heldBytes + chunk.length < SMALL_INPUT) {
          // A copy: the caller may reuse its buffer once this returns.
          held.push(Buffer.from(chunk));
          heldBytes += chunk.length;
          return;
        }
        const a = addon();
        hasher = a === undefined ? nodeHasher() : addonHasher(a);
        for (const h of held) hasher.updateSync(h);
        held = [];
      }
      return hasher.update(chunk);
    },
    digest: () => {
      if (hasher !== undefined) return hasher.digest();
      const h = createHash('sha256');
      for (const b of held) h.update(b);
      return h.digest('hex');
    },
  };
}
