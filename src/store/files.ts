/**
 * Small helpers every part of the store shares: digest → file name, the owner-carrying temp names, and the
 * small JSON files (records, tags, layer infos) written atomically and read synchronously.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { RuntimeError, messageOf } from '../errors.js';
import { ownedName } from './owner.js';

export const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** The hex part of a digest, validated (a digest is also a file name, so it must never contain a path). */
export function digestHex(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m?.[1]) throw new RuntimeError(`invalid digest: ${digest}`);
  return m[1];
}

export const isErrno = (err: unknown, ...codes: string[]): boolean =>
  typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');

/** Whether a process with this pid runs (EPERM: it does, as another user). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, 'EPERM');
  }
}

/** A unique temp name carrying its owner (pid and start time), so that a later process can tell abandoned temp files from live ones. */
export const tempName = (prefix: string): string => ownedName(prefix);

export async function exists(p: string): Promise<boolean> {
  // A synchronous stat without an exception for a missing entry: a cached build asks this for every step, and a
  // rejected promise with its Error costs far more than the stat.
  try {
    return statSync(p, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return false; // ENOTDIR, EACCES: not there for us either
  }
}

// The store's small files (records, tags, locks) are read and written with synchronous calls: each is a few
// µs, where an awaited one costs a threadpool round trip (0.1–0.3 ms), and a build makes hundreds of them.

/** Writes a small file of the store at `root` atomically (temp in tmp/, then rename). */
export async function writeFileAtomic(root: string, file: string, data: string): Promise<void> {
  const tmp = path.join(root, 'tmp', tempName('file'));
  try {
    writeFileSync(tmp, data, { flag: 'wx' });
    mkdirSync(path.dirname(file), { recursive: true });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** A small JSON file, undefined when it does not exist. */
export async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw new RuntimeError(`cannot read ${file}: ${messageOf(err)}`, { cause: err });
  }
}
