/**
 * The build context: which files COPY/ADD may read (after .dockerignore), how source patterns
 * select them, and their content digests for cache keys.
 *
 * File digests are sha256, because cache keys built from them may leave the machine (a cache
 * shared through a registry) and must not be forgeable by a crafted collision. xxhash64 is the fast
 * change detector around them: each file's digest is remembered with its (size, mtime, ctime, inode)
 * and its xxhash64; an unchanged stat reuses the digest without reading the file, and a changed stat
 * with an unchanged xxhash64 (a touch, a checkout that rewrote the same bytes) reuses it without
 * computing sha256 again. Files of 1 MiB and more skip xxhash: their sha256 is computed in one read.
 *
 * A rebuild whose selected files are all unchanged needs none of that: each digest of a whole source is
 * also remembered under a fingerprint of its entries' stats (name, type, mode, size, mtime, ctime,
 * inode), kept in a small file of its own, so the per-file cache (large: one record per file) is only
 * read when something changed.
 */
import { lstat, readdir, readFile, readlink, mkdir, writeFile, rename } from 'node:fs/promises';
import { lstatSync, readFileSync, readdirSync, type Stats } from 'node:fs';
import { join, posix, dirname } from 'node:path';
import { crypto, sha256Hex } from '../sha256.js';
import { PatternMatcher, readIgnoreFile } from '../parser/dockerignore.js';
import { resolveInRoot } from '../runtime/user.js';
import { reusedChunks } from '../store/file-chunks.js';

type Hasher = Awaited<ReturnType<typeof import('xxhash-wasm')['default']>>;
let hasherPromise: Promise<Hasher> | undefined;
/**
 * xxhash-wasm is loaded and instantiated once per process, on first use (it costs a module load and a
 * WebAssembly compile, which a rebuild whose files are all unchanged never needs).
 */
function getHasher(): Promise<Hasher> {
  hasherPromise ??= import('xxhash-wasm').then((m) => m.default());
  return hasherPromise;
}

/** A file or directory of the context that a COPY source selected. */
export interface ContextEntry {
  /** Path relative to the context root, `/`-separated, no leading `./`. */
  readonly rel: string;
  readonly abs: string;
  readonly stats: Stats;
  readonly type: 'file' | 'dir' | 'symlink';
}

interface StatCacheEntry {
  s: number; // size
  m: number; // mtimeMs
  c: number; // ctimeMs
  i: number; // inode
  x: string; // xxhash64 hex of the content
  h: string; // sha256 hex of the content
}

/** The build context directory with its ignore rules and a persistent digest cache. */
export class BuildContext {
  readonly dir: string;
  readonly ignoreFile: string | undefined;
  private readonly matcher: PatternMatcher | undefined;
  private readonly statCachePath: string | undefined;
  private statCache: Record<string, StatCacheEntry> = {};
  private statCacheLoaded: Promise<void> | undefined;
  private statCacheDirty = false;
  /** Source digests by stat fingerprint (see the file comment); newest last. */
  private treeCache: Record<string, string> = {};
  private treeCacheDirty = false;
  private readonly walks = new Map<string, Promise<ContextEntry[]>>();

  private constructor(dir: string, matcher: PatternMatcher | undefined, ignoreFile: string | undefined, statCachePath: string | undefined) {
    this.dir = dir;
    this.matcher = matcher;
    this.ignoreFile = ignoreFile;
    this.statCachePath = statCachePath;
  }

  /**
   * Opens a context. The ignore file is `<Dockerfile>.dockerignore` next to the Dockerfile when that
   * exists (BuildKit's Dockerfile-specific rule), else `.dockerignore` at the context root.
   */
  static async open(dir: string, dockerfilePath: string | undefined, cacheDir: string | undefined): Promise<BuildContext> {
    const candidates = [dockerfilePath ? `${dockerfilePath}.dockerignore` : undefined, join(dir, '.dockerignore')];
    let matcher: PatternMatcher | undefined;
    let ignoreFile: string | undefined;
    for (const candidate of candidates) {
      if (!candidate) continue;
      const text = await readFile(candidate, 'utf8').catch(() => undefined);
      if (text === undefined) continue;
      ignoreFile = candidate;
      const patterns = readIgnoreFile(text);
      if (patterns.length) matcher = PatternMatcher.compile(patterns);
      break;
    }
    const key = sha256Hex(dir).slice(0, 24);
    const ctx = new BuildContext(dir, matcher, ignoreFile, cacheDir ? join(cacheDir, `context-${key}.json`) : undefined);
    if (ctx.statCachePath) {
      const text = await readFile(treeCachePath(ctx.statCachePath), 'utf8').catch(() => undefined);
      if (text) {
        try {
          ctx.treeCache = JSON.parse(text) as Record<string, string>;
        } catch {
          ctx.treeCache = {}; // a torn cache file only costs a walk through the per-file cache
        }
      }
    }
    return ctx;
  }

  /** Reads the per-file digest cache, once, when a digest is first needed. */
  private loadStatCache(): Promise<void> {
    this.statCacheLoaded ??= (async () => {
      if (!this.statCachePath) return;
      const text = await readFile(this.statCachePath, 'utf8').catch(() => undefined);
      if (!text) return;
      try {
        // Entries added before the load (none today) win over the file's.
        this.statCache = { ...(JSON.parse(text) as Record<string, StatCacheEntry>), ...this.statCache };
      } catch {
        // a torn cache file only costs a re-hash
      }
    })();
    return this.statCacheLoaded;
  }

  /** True when .dockerignore excludes `rel` (or one of its parents). */
  isIgnored(rel: string): boolean {
    if (!this.matcher || rel === '' || rel === '.') return false;
    return this.matcher.matchesOrParentMatches(rel);
  }

  /**
   * Resolves one COPY/ADD source (relative to the context, wildcards `* ? [..]` per path segment)
   * to the matching top-level entries. A source that matches nothing is an error, as in docker build.
   */
  async resolveSource(source: string): Promise<ContextEntry[]> {
    const clean = posix.normalize(`/${source}`).replace(/^\/+/, '');
    const segments = clean === '' ? [] : clean.split('/');
    if (segments.some((s) => s === '..')) throw new Error(`forbidden path outside the build context: ${source}`);
    if (!segments.some(hasWildcard)) {
      const rel = segments.join('/');
      if (rel && this.isIgnored(rel)) throw notFound(source);
      // Symlinks on the way, and a symlink named as the source itself, are followed as BuildKit follows them:
      // inside the context, where an absolute or `..` target stays clamped. Nothing outside it is reachable.
      const abs = await resolveInRoot(this.dir, rel);
      const stats = await lstat(abs).catch(() => undefined);
      if (!stats) throw notFound(source);
      return [{ rel, abs, stats, type: typeOf(stats) }];
    }
    let current: string[] = [''];
    for (const seg of segments) {
      const next: string[] = [];
      for (const base of current) {
        if (!hasWildcard(seg)) {
          next.push(base ? `${base}/${seg}` : seg);
          continue;
        }
        const re = globSegmentToRegExp(seg);
        const names = await readdir(await resolveInRoot(this.dir, base)).catch(() => [] as string[]);
        for (const name of names.sort()) if (re.test(name)) next.push(base ? `${base}/${name}` : name);
      }
      current = next;
    }
    const out: ContextEntry[] = [];
    for (const rel of current) {
      if (this.isIgnored(rel)) continue;
      const abs = await resolveInRoot(this.dir, rel);
      const stats = await lstat(abs).catch(() => undefined);
      if (stats) out.push({ rel, abs, stats, type: typeOf(stats) });
    }
    if (out.length === 0) throw notFound(source);
    return out;
  }

  /**
   * Walks a selected directory (not following symlinks), skipping ignored paths; entries sorted.
   * Yields the directory's descendants, not the directory itself.
   */
  async walk(entry: ContextEntry): Promise<ContextEntry[]> {
    // Memoised for the build: the cache key and the copy itself walk the same source.
    const memo = this.walks.get(entry.rel);
    if (memo) return memo;
    const p = this.walkUncached(entry);
    this.walks.set(entry.rel, p);
    p.catch(() => this.walks.delete(entry.rel));
    return p;
  }

  private async walkUncached(entry: ContextEntry): Promise<ContextEntry[]> {
    // Synchronous readdir/lstat, yielding to the event loop every few hundred entries: walking an
    // unchanged context is the whole cost of a cached COPY, and one threadpool round trip per file made
    // it several times slower than the syscalls themselves (~0.1 s vs ~0.5 s for 5,000 files, loaded host).
    const out: ContextEntry[] = [];
    let sinceYield = 0;
    const walkDir = async (rel: string, dirAbs: string): Promise<void> => {
      // Host paths come from the entry's resolved path down (the selected directory may be reached through a
      // symlink, which resolveSource followed inside the context); below it nothing is followed, so plain
      // concatenations of readdir names stay in that tree.
      const prefix = dirAbs.endsWith('/') ? dirAbs : `${dirAbs}/`;
      const names = readdirSync(dirAbs).sort();
      sinceYield += names.length;
      if (sinceYield > 500) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      for (const name of names) {
        const childRel = rel ? `${rel}/${name}` : name;
        if (this.matcher && this.isIgnored(childRel)) continue;
        const abs = prefix + name;
        const stats = lstatSync(abs);
        const type = typeOf(stats);
        out.push({ rel: childRel, abs, stats, type }); // parents before children, siblings in name order
        if (type === 'dir') await walkDir(childRel, abs);
      }
    };
    if (entry.type === 'dir') await walkDir(entry.rel, entry.abs);
    return out;
  }

  /** The sha256 of a file's content (hex), with xxhash64-based change detection (see the file comment). */
  async fileDigest(entry: ContextEntry): Promise<string> {
    await this.loadStatCache();
    const known = this.knownDigest(entry);
    if (known !== undefined) return known;
    const st = entry.stats;
    const cached = this.statCache[entry.rel];
    const hasher = await getHasher();
    let x: string;
    let h: string;
    if (st.size < 1 << 20) {
      // Small files are read synchronously: the callers hash in batches, so the event loop still turns
      // between them, and an async readFile costs four threadpool round trips (open, fstat, read, close),
      // several times the read itself for the tiny files a context is mostly made of.
      const data = st.size < SYNC_READ_LIMIT ? readFileSync(entry.abs) : await readFile(entry.abs);
      x = hasher.h64Raw(data).toString(16).padStart(16, '0');
      h = cached?.x === x && cached.s === data.length ? cached.h : sha256Hex(data);
    } else {
      // A big file with a changed stat is hashed with sha256 straight away, in one read: a changed stat usually
      // means changed bytes, and then an xxhash pass first (to skip sha256 after a mere touch) costs a second
      // read plus xxhash-wasm's own copy of every chunk (measured on 200 MB: ~0.3 s more than it can save).
      // No xxhash is kept for it (`x` empty never matches, so the small-file shortcut cannot misfire).
      const sha = crypto().createHash('sha256');
      const shrank = () => new Error(`${entry.rel} changed while it was being read`);
      for await (const chunk of reusedChunks(entry.abs, st.size, shrank)) sha.update(chunk);
      x = '';
      h = sha.digest('hex');
    }
    this.statCache[entry.rel] = { s: st.size, m: st.mtimeMs, c: st.ctimeMs, i: st.ino, x, h };
    this.statCacheDirty = true;
    return h;
  }

  /**
   * A digest of everything a source selects: names, types, permission bits, link targets and file
   * contents. Not mtimes, owners or ignored files, so touching a file or editing an ignored one keeps the cache.
   * `exclude` (COPY --exclude) drops a selected directory's descendants by their context-relative path.
   */
  async digestSources(entries: readonly ContextEntry[], exclude?: (top: ContextEntry, rel: string) => boolean): Promise<string> {
    const all: ContextEntry[] = [];
    for (const top of entries) {
      all.push(top);
      if (top.type === 'dir') {
        const children = await this.walk(top);
        all.push(...(exclude ? children.filter((c) => !exclude(top, c.rel)) : children));
      }
    }
    // Every entry's stats unchanged since this selection was last digested: the same digest.
    // Numbers go in binary: formatting 20,000 doubles as text would cost more than the walk's lstat calls.
    const names = new Array<string>(all.length);
    const numbers = new Float64Array(all.length * 5);
    for (let i = 0; i < all.length; i++) {
      const e = all[i]!;
      const st = e.stats;
      names[i] = `${e.type} ${e.rel}`;
      numbers[i * 5] = st.mode;
      numbers[i * 5 + 1] = st.size;
      numbers[i * 5 + 2] = st.mtimeMs;
      numbers[i * 5 + 3] = st.ctimeMs;
      numbers[i * 5 + 4] = st.ino;
    }
    const fingerprint = Buffer.from(sha256Hex(names.join('\0'), new Uint8Array(numbers.buffer, numbers.byteOffset, numbers.byteLength)), 'hex').toString('base64');
    const remembered = this.treeCache[fingerprint];
    if (remembered !== undefined) return remembered;
    await this.loadStatCache();

    // Lines stay in walk order, so the digest never depends on timing. Unchanged files are answered
    // from the stat cache without a promise each; the rest are read in parallel batches.
    const lines = new Array<string>(all.length);
    const misses: number[] = [];
    for (let i = 0; i < all.length; i++) {
      const e = all[i]!;
      const perm = (e.stats.mode & 0o7777).toString(8);
      if (e.type === 'dir') lines[i] = `d ${e.rel} ${perm}`;
      else if (e.type === 'file') {
        const known = this.knownDigest(e);
        if (known !== undefined) lines[i] = `f ${e.rel} ${perm} ${known}`;
        else misses.push(i);
      } else misses.push(i);
    }
    for (let b = 0; b < misses.length; b += 64) {
      await Promise.all(
        misses.slice(b, b + 64).map(async (i) => {
          const e = all[i]!;
          const perm = (e.stats.mode & 0o7777).toString(8);
          lines[i] = e.type === 'symlink' ? `l ${e.rel} ${await readlink(e.abs)}` : `f ${e.rel} ${perm} ${await this.fileDigest(e)}`;
        }),
      );
    }
    const digest = sha256Hex(lines.join('\n'));
    this.rememberTree(fingerprint, digest);
    return digest;
  }

  /** Remembers a selection's digest, keeping the newest {@link TREE_CACHE_LIMIT} selections. */
  private rememberTree(fingerprint: string, digest: string): void {
    delete this.treeCache[fingerprint];
    this.treeCache[fingerprint] = digest;
    const keys = Object.keys(this.treeCache);
    for (let i = 0; i < keys.length - TREE_CACHE_LIMIT; i++) delete this.treeCache[keys[i]!];
    this.treeCacheDirty = true;
  }

  /** The remembered sha256 of a file whose stat has not changed since it was hashed. */
  private knownDigest(entry: ContextEntry): string | undefined {
    const st = entry.stats;
    const cached = this.statCache[entry.rel];
    if (cached && cached.s === st.size && cached.m === st.mtimeMs && cached.c === st.ctimeMs && cached.i === st.ino) return cached.h;
    return undefined;
  }


  /** Persists the digest cache (temp file + rename, so a crash never leaves a torn file in place). */
  async save(): Promise<void> {
    if (!this.statCachePath || (!this.statCacheDirty && !this.treeCacheDirty)) return;
    await mkdir(dirname(this.statCachePath), { recursive: true });
    if (this.statCacheDirty) {
      await writeAtomic(this.statCachePath, JSON.stringify(this.statCache));
      this.statCacheDirty = false;
    }
    if (this.treeCacheDirty) {
      await writeAtomic(treeCachePath(this.statCachePath), JSON.stringify(this.treeCache));
      this.treeCacheDirty = false;
    }
  }
}

/** Files smaller than this are read with readFileSync when hashed (see fileDigest). */
const SYNC_READ_LIMIT = 64 * 1024;

/** How many source selections per context keep their digest in the tree cache. */
const TREE_CACHE_LIMIT = 256;

function treeCachePath(statCachePath: string): string {
  return statCachePath.replace(/\.json$/, '.trees.json');
}

/** Temp file + rename, so a crash never leaves a torn file in place. */
async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

function typeOf(stats: Stats): ContextEntry['type'] {
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  return 'file';
}

function notFound(source: string): Error {
  return new Error(`failed to compute cache key: "/${source.replace(/^\/+/, '')}": not found`);
}

export function hasWildcard(segment: string): boolean {
  return /[*?[]/.test(segment);
}

/** One path segment of a Go filepath.Match pattern as a RegExp (`*` and `?` never match `/`). */
export function globSegmentToRegExp(seg: string): RegExp {
  let re = '^';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < seg.length) re += escapeRe(seg[++i]!);
    else if (c === '[') {
      const end = seg.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let cls = seg.slice(i + 1, end);
      if (cls.startsWith('^')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += escapeRe(c);
  }
  return new RegExp(`${re}$`, 's');
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
