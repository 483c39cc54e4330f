/**
 * Write leases: `leases/<pid>` says "this process writes to the store since <time>". A prune keeps unreferenced
 * blobs and layers at least as new as the oldest live lease of another process, because they may belong to a
 * build that has not tagged or cached them yet (see prune.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { isErrno, pidAlive } from './files.js';
import { processStartTime } from './owner.js';

/** The leases of one store; one instance per opened store. */
export class Leases {
  readonly #dir: string;
  /** Whether this instance has written its process's lease file. */
  #leased = false;

  constructor(root: string) {
    this.#dir = path.join(root, 'leases');
  }

  /**
   * Marks this process as writing to the store, once: `leases/<pid>` holds the pid, host and the time of its
   * first write. A lease of a dead process is void (prune deletes it); an earlier lease of the same pid is kept
   * (it only protects more).
   */
  async take(): Promise<void> {
    if (this.#leased) return;
    const file = path.join(this.#dir, String(process.pid));
    mkdirSync(this.#dir, { recursive: true });
    try {
      writeFileSync(file, `${process.pid} ${hostname()} ${Date.now()} ${processStartTime('self') ?? 0}\n`, { flag: 'wx' });
    } catch (err) {
      if (!isErrno(err, 'EEXIST')) throw err;
    }
    this.#leased = true;
  }

  /** The start time (ms) of the oldest live lease of another process, deleting dead ones. */
  async oldestForeign(): Promise<number | undefined> {
    let oldest: number | undefined;
    for (const name of await fs.readdir(this.#dir).catch(() => [] as string[])) {
      const text = await fs.readFile(path.join(this.#dir, name), 'utf8').catch(() => undefined);
      const [pid, host, since] = (text ?? '').trim().split(' ');
      if (Number(pid) === process.pid && host === hostname()) continue;
      if (host === hostname() && !pidAlive(Number(pid))) {
        await fs.rm(path.join(this.#dir, name), { force: true });
        continue;
      }
      const t = Number(since);
      // Unreadable or half-written, or another host's: protect everything for now.
      const start = Number.isFinite(t) && text !== undefined ? t : 0;
      oldest = oldest === undefined ? start : Math.min(oldest, start);
    }
    return oldest;
  }
}
