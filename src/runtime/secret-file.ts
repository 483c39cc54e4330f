/**
 * A `RUN --mount=type=secret` file: written only to memory-backed storage (a fresh 0700 directory in
 * $XDG_RUNTIME_DIR or /dev/shm, see src/store/owner.ts), never to the store's disk, and removed when the step
 * ends. If kiln is killed meanwhile, the next kiln removes it (src/store/recovery.ts).
 */
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makePrivateDir } from '../store/owner.js';

/** A secret's file on the host (bind-mounted read-only into the step) and how to remove it. */
export interface SecretFile {
  readonly file: string;
  release(): Promise<void>;
}

/** Writes `value` to a fresh private file with permission bits `mode`. */
export async function writeSecretFile(value: Uint8Array, mode: number): Promise<SecretFile> {
  const dir = makePrivateDir('secret');
  const file = path.join(dir, 'secret');
  const release = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    await writeFile(file, value, { mode: 0o400, flag: 'wx' });
    await chmod(file, mode);
  } catch (err) {
    await release();
    throw err;
  }
  return { file, release };
}

/** Where a secret's value comes from: a file on this machine or an environment variable of this process. */
export type SecretValueSource = { readonly src: string } | { readonly env: string };

/** The secret's value, or undefined when its environment variable is not set. */
export async function readSecretValue(source: SecretValueSource): Promise<Buffer | undefined> {
  if ('src' in source) return readFile(source.src);
  const value = process.env[source.env];
  return value === undefined ? undefined : Buffer.from(value);
}
