/**
 * Cross-process locks of a store: `locks/<name>.lock`, created with O_EXCL and holding the owner's pid, host,
 * a random token and the owner's start time.
 */
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { RuntimeError } from '../errors.js';
import { randomHex } from '../oci/digest.js';
import { isErrno, pidAlive } from './files.js';
import { ownerAlive, selfOwner } from './owner.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The locks of the store at `root`. Holds no state: every lock is a file. */
export class Locks {
  readonly #dir: string;

  constructor(root: string) {
    this.#dir = path.join(root, 'locks');
  }

  /**
   * Runs `fn` holding an exclusive cross-process lock on `name`. A lock whose owner is dead is stale and gets
   * broken; breaking is itself serialised by a short-lived `<name>.lock.break` file, so two waiters can never
   * both break a lock and delete the fresh one the other just took. Not reentrant: nesting the same name in one
   * process deadlocks.
   */
  async withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new RuntimeError(`invalid lock name: ${name}`);
    const file = path.join(this.#dir, `${name}.lock`);
    // The owner's start time too: after a reboot a stale lock's pid may belong to an unrelated live process.
    const token = `${process.pid} ${hostname()} ${randomHex(8)} ${selfOwner().split('.')[1] ?? ''}\n`;
    for (let attempt = 0; ; attempt++) {
      try {
        writeFileSync(file, token, { flag: 'wx' });
        break;
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err;
      }
      await this.#breakIfStale(file);
      await sleep(Math.min(2 + attempt * 2, 50));
    }
    try {
      return await fn();
    } finally {
      // Remove the lock only if it is still ours.
      try {
        if (readFileSync(file, 'utf8') === token) rmSync(file, { force: true });
      } catch {
        /* already gone */
      }
    }
  }

  /** Breaks the locks dead processes held (a released lock is removed, so there are normally none). */
  async breakStale(): Promise<void> {
    for (const name of readdirSync(this.#dir)) {
      if (name.endsWith('.lock')) await this.#breakIfStale(path.join(this.#dir, name));
    }
  }

  async #breakIfStale(file: string): Promise<void> {
    const owner = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (owner === undefined || !owner.includes(' ')) return; // gone, or being written right now
    const [pid, host, , start] = owner.trim().split(' ');
    if (host !== hostname() || (start ? ownerAlive(`${pid}.${start}`) : pidAlive(Number(pid)))) return;
    const breaker = `${file}.break`;
    try {
      await fs.writeFile(breaker, String(process.pid), { flag: 'wx' });
    } catch {
      // Someone else is breaking it; a breaker that died holding .break is cleared after a few seconds.
      const st = await fs.stat(breaker).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 5000) await fs.rm(breaker, { force: true });
      return;
    }
    try {
      if ((await fs.readFile(file, 'utf8').catch(() => undefined)) === owner) await fs.rm(file, { force: true });
    } finally {
      await fs.rm(breaker, { force: true });
    }
  }
}
