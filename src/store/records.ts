/**
 * The store's records: tags (`images.json`, tag → manifest digest) and build-cache records (`cache/<key>.json`,
 * step cache key → result). Small JSON files, written atomically; tags under the `images` lock.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Digest } from '../oci/types.js';
import { sha256Hex } from '../oci/digest.js';
import { digestHex, readJson, writeFileAtomic } from './files.js';
import type { Locks } from './locks.js';

/** The tags and cache records of the store at `root`. Holds no state: every record is a file. */
export class Records {
  readonly #root: string;
  readonly #locks: Locks;

  constructor(root: string, locks: Locks) {
    this.#root = root;
    this.#locks = locks;
  }

  // ---------------------------------------------------------------- tags

  get #imagesFile(): string {
    return path.join(this.#root, 'images.json');
  }

  async #readTags(): Promise<Record<string, Digest>> {
    return (await readJson<Record<string, Digest>>(this.#imagesFile)) ?? {};
  }

  async #writeTags(tags: Record<string, Digest>): Promise<void> {
    await writeFileAtomic(this.#root, this.#imagesFile, `${JSON.stringify(sortKeys(tags), null, 2)}\n`);
  }

  async tag(name: string, manifestDigest: Digest): Promise<void> {
    digestHex(manifestDigest);
    // A rebuild usually re-tags the same image: nothing to write, no lock to take.
    if ((await this.#readTags())[name] === manifestDigest) return;
    await this.#locks.withLock('images', async () => {
      const tags = await this.#readTags();
      tags[name] = manifestDigest;
      await this.#writeTags(tags);
    });
  }

  async resolveTag(name: string): Promise<Digest | undefined> {
    const tags = await this.#readTags();
    return Object.hasOwn(tags, name) ? tags[name] : undefined;
  }

  async untag(name: string): Promise<boolean> {
    return this.#locks.withLock('images', async () => {
      const tags = await this.#readTags();
      if (!Object.hasOwn(tags, name)) return false;
      delete tags[name];
      await this.#writeTags(tags);
      return true;
    });
  }

  async listTags(): Promise<Array<{ name: string; digest: Digest }>> {
    const tags = await this.#readTags();
    return Object.keys(tags).sort().map((name) => ({ name, digest: tags[name] as Digest }));
  }

  // ---------------------------------------------------------------- build cache

  #cachePath(key: string): string {
    const safe = /^[A-Za-z0-9._-]{1,128}$/.test(key) && !key.startsWith('.') ? key : sha256Hex(key);
    return path.join(this.#root, 'cache', `${safe}.json`);
  }

  async getCache<T>(key: string): Promise<T | undefined> {
    return readJson<T>(this.#cachePath(key));
  }

  async putCache(key: string, value: unknown): Promise<void> {
    await writeFileAtomic(this.#root, this.#cachePath(key), JSON.stringify(value));
  }

  /** Every cache record's value (unreadable ones are skipped), for the garbage collector's marking. */
  async *cacheRecords(): AsyncGenerator<unknown> {
    const dir = path.join(this.#root, 'cache');
    for (const name of await fs.readdir(dir)) {
      if (!name.endsWith('.json')) continue;
      const value = await readJson(path.join(dir, name)).catch(() => undefined);
      if (value !== undefined) yield value;
    }
  }
}

function sortKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.keys(record).sort().map((k) => [k, record[k] as T]));
}
