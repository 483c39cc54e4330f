/**
 * The build context: which files COPY/ADD may read (after .dockerignore), how source patterns
 * select them, and their content digests for cache keys.
 *
 * File digests are sha256, because cache keys built from them may leave the machine (a cache
 * shared through a registry) and must not be forgeable by a crafted collision. xxhash64 is the fast
 * change detector around them: each file's digest is remembered with its (size, mtime, ctime, inode)
 * and its xxhash64; an unchanged stat reuses the digest without reading the file, and a changed stat
 * with an unchanged xxhash64 (a touch, a checkout that rewrote the same bytes) reuses it without
 * computing sha256 again. Files of 1 MiB and more skip xxhash: their sha256 is computed in one read. So do
 * the files hashed before xxhash-wasm is loaded, which only happens when many files need hashing.
 *
 * A rebuild whose selected files are all unchanged needs none of that: each digest of a whole source is
 * also remembered under a fingerprint of its entries' stats (name, type, mode, size, mtime, ctime,
 * inode), kept in a small file of its own, so the per-file cache (large: one record per file) is only
 * read when something changed.
 *
 * The per-file cache is a journal (`context-<key>.stats-v2`): a header line, then lines of JSON objects
 * `{ rel: [size, mtimeMs, ctimeMs, ino, xxhash64, sha256] }`, later lines winning. A save appends only the records
 * that changed (one changed file of 5,000: ~100 bytes instead of rewriting ~900 KB), and rewrites the whole file
 * once the journal has grown ({@link JOURNAL_LIMIT}). A torn line (a crash mid-append) fails to parse and is skipped:
 * it only costs a re-hash. The v1 file (`context-<key>.json`, one JSON object) is never read; the first v2 save
 * removes it.
 *
 * The walk lists a directory with one native call (`scanDir`: names and lstat numbers) when the addon is built,
 * instead of an lstatSync (and a Stats object) per entry; without it (KILN_NATIVE=0) it uses readdirSync + lstatSync.
 * Both give the same entries, in the same order, with the same numbers.
 */
import { appendFile, lstat, readdir, readFile, readlink, mkdir, writeFile, rename, rm } from 'node:fs/promises';
import { constants as fsConstants, lstatSync, readFileSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { join, posix, dirname } from 'node:path';
import { crypto, sha256Hex } from '../oci/digest.js';
import { PatternMatcher, readIgnoreFile, type MatchInfo } from '../parser/dockerignore.js';
import { hasWildcard, segmentMatcher } from '../parser/filepath-match.js';
import { fileChunks } from '../store/file-chunks.js';
import { ENTRY_FIELDS, EntryField, nativeSys, readFileError, readFilesSplit } from '../native/sys.js';
import type { NativeSys } from '../native/sys.js';
import { checkContextEntry } from './special-files.js';

type Hasher = Awaited<ReturnType<typeof import('xxhash-wasm')['default']>>;
// Module state allowed (test/architecture.test.ts): a lazily loaded module, the same for every build once loaded.
let hasherPromise: Promise<Hasher> | undefined;
/** The xxhash-wasm instance once loaded. */
let hasherReady: Hasher | undefined;
/**
 * Starts loading xxhash-wasm, once per process. Nothing waits for it: loading it costs ~17 ms (a module load
 * and a WebAssembly compile), more than sha256 of all the small files a one-file change rehashes, so files
 * hashed before it is ready simply get no xxhash in their record ('' never matches, so the touch shortcut
 * just does not apply to them). Started only when enough files are to be hashed for it to pay off.
 */
function loadHasher(): void {
  hasherPromise ??= import('xxhash-wasm')
    .then((m) => m.default())
    .then((h) => (hasherReady = h));
  hasherPromise.catch(() => undefined); // without it, files just get no xxhash
}

/** Files to hash in one selection from which xxhash-wasm is loaded (see {@link loadHasher}). */
const HASHER_WORTH_IT = 32;

/** A file or directory of the context that a COPY source selected. */
export interface ContextEntry {
  /** Path relative to the context root, `/`-separated, no leading `./`. */
  readonly rel: string;
  readonly abs: string;
  readonly stats: Stats;
  readonly type: 'file' | 'dir' | 'symlink';
  /**
   * The entry's path in the context once symlinks on the way are resolved (`self -> .` makes `self/a` the
   * path `a`), when that differs from `rel`. .dockerignore rules apply to this path, never to `rel`.
   */
  readonly real?: string;
}

/** What a walk of one selected directory found: its entries, and the paths below it that the context leaves out. */
interface WalkResult {
  readonly entries: ContextEntry[];
  /** Top-most excluded paths below the walked directory, relative to it (what a filtered view must hide). */
  readonly hidden: string[];
}

/** Symlinks followed while resolving one context path before it fails (Linux's limit). */
const MAX_SYMLINKS = 40;

/** One per-file record: size, mtimeMs, ctimeMs, inode, xxhash64 hex of the content ('' if none), sha256 hex. */
type StatCacheEntry = [s: number, m: number, c: number, i: number, x: string, h: string];
type StatCacheRecords = Record<string, StatCacheEntry>;

/** First line of a v2 per-file cache file; a file that does not start with it is ignored. */
const STAT_CACHE_HEADER = 'kiln-context-stats 2';
/** Appended lines after which a save rewrites the per-file cache file in one piece. */
const JOURNAL_LIMIT = 32;
/** Changed records beyond which a save rewrites the file instead of appending (a checkout that touched everything). */
const JOURNAL_APPEND_MAX = 1000;

/** The build context directory with its ignore rules and a persistent digest cache. */
export class BuildContext {
  readonly dir: string;
  readonly ignoreFile: string | undefined;
  private readonly matcher: PatternMatcher | undefined;
  private readonly statCachePath: string | undefined;
  /** Read with {@link recordOf} and written with {@link setOwn}: paths are data (`__proto__` included). */
  private statCache: StatCacheRecords = {};
  private statCacheLoaded: Promise<void> | undefined;
  /** Records changed since the load, for the next append; undefined when the next save rewrites the file. */
  private statCacheChanges: StatCacheRecords | undefined;
  /** Journal lines found in the file at load. */
  private statCacheLines = 0;
  /** How many records {@link statCacheChanges} holds. */
  private statCacheChangeCount = 0;
  private statCacheDirty = false;
  /** Set once the per-file cache is loaded (or known absent). */
  private statCacheReady = false;
  /** The per-file cache file's bytes, read ahead of need (see digestSources). */
  private statCacheBytes: Promise<Buffer | undefined> | undefined;
  /** Source digests by stat fingerprint (see the file comment); newest last. */
  private treeCache: Record<string, string> = {};
  private treeCacheDirty = false;
  private readonly walks = new Map<string, Promise<WalkResult>>();
  /** Excluded directories known to hold (true) or not to hold (false) something the exceptions re-include. */
  private readonly keptParents = new Map<string, boolean>();

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
    const ctx = new BuildContext(dir, matcher, ignoreFile, cacheDir ? join(cacheDir, `context-${key}.stats-v2`) : undefined);
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
      await this.readStatCache();
      this.statCacheReady = true;
    })();
    return this.statCacheLoaded;
  }

  /** Starts reading the per-file cache file (on the threadpool), once; parsing waits for {@link loadStatCache}. */
  private prefetchStatCache(): Promise<Buffer | undefined> {
    this.statCacheBytes ??= this.statCachePath ? readFile(this.statCachePath).catch(() => undefined) : Promise.resolve(undefined);
    return this.statCacheBytes;
  }

  private async readStatCache(): Promise<void> {
    if (!this.statCachePath) return;
    const text = (await this.prefetchStatCache())?.toString('utf8');
    if (text === undefined || !text.startsWith(`${STAT_CACHE_HEADER}\n`)) return; // absent or not ours: rewritten on save
    // The first line (the whole cache as last rewritten) is used as parsed: copying 5,000 records into another
    // object would cost as much as the parse. Records are checked where they are read (recordOf).
    let loaded: Record<string, unknown> | undefined;
    let lines = 0;
    for (const line of text.slice(STAT_CACHE_HEADER.length + 1).split('\n')) {
      if (line === '') continue;
      lines++;
      let records: unknown;
      try {
        records = JSON.parse(line);
      } catch {
        continue; // a torn line (a crash mid-append) only costs a re-hash
      }
      if (records === null || typeof records !== 'object' || Array.isArray(records)) continue;
      if (loaded === undefined) loaded = records as Record<string, unknown>;
      else for (const rel of Object.keys(records)) setOwn(loaded, rel, (records as Record<string, unknown>)[rel]);
    }
    // Entries added before the load (none today) win over the file's.
    const merged = loaded ?? {};
    for (const rel of Object.keys(this.statCache)) setOwn(merged, rel, this.statCache[rel]);
    this.statCache = merged as StatCacheRecords;
    this.statCacheLines = lines;
    this.statCacheChanges = Object.create(null) as StatCacheRecords;
  }

  /** True when .dockerignore excludes `rel` (or one of its parents). */
  isIgnored(rel: string): boolean {
    if (!this.matcher || rel === '' || rel === '.') return false;
    return this.matcher.matchesOrParentMatches(rel);
  }

  /**
   * True when `real` (a context path with no symlink on the way) is in the build context as the build sees it:
   * not excluded by .dockerignore, or an excluded directory kept as the parent of something an exception
   * re-includes (as docker sends the parents of every re-included path). Nothing else is reachable: no COPY
   * source, no symlink and no bind mount may lead to a path for which this is false.
   */
  inContext(real: string): boolean {
    if (!this.isIgnored(real)) return true;
    return this.keptAsParent(real);
  }

  /** Whether the excluded path `real` is a directory that holds something re-included (memoised: a walk below it). */
  private keptAsParent(real: string): boolean {
    const matcher = this.matcher;
    if (matcher === undefined || !matcher.mayReincludeBelow(real)) return false;
    const known = this.keptParents.get(real);
    if (known !== undefined) return known;
    let kept = false;
    const abs = join(this.dir, real);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (st?.isDirectory()) {
      for (const name of readdirSync(abs)) {
        const child = `${real}/${name}`;
        if (!this.isIgnored(child) || this.keptAsParent(child)) {
          kept = true;
          break;
        }
      }
    }
    this.keptParents.set(real, kept);
    return kept;
  }

  /**
   * Resolves a context-relative path the way the build sees the context: symlinks on the way (and the last
   * one) are followed inside the context (an absolute or `..` target is taken from the context root), and
   * every path reached must be in the filtered context ({@link inContext}). Undefined when it leads to
   * nothing: a missing file, or one .dockerignore leaves out (which, as in docker, is simply not there).
   */
  private resolveInContext(rel: string): { abs: string; real: string; stats: Stats } | undefined {
    const pending = rel.split('/').filter((p) => p !== '' && p !== '.');
    const done: string[] = [];
    let links = 0;
    let stats: Stats | undefined = lstatSync(this.dir, { throwIfNoEntry: false });
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '..') {
        done.pop();
        stats = undefined;
        continue;
      }
      done.push(part);
      const real = done.join('/');
      if (!this.inContext(real)) return undefined;
      const host = join(this.dir, real);
      try {
        stats = lstatSync(host, { throwIfNoEntry: false });
      } catch {
        stats = undefined; // ENOTDIR: a file on the way
      }
      if (stats === undefined) return undefined;
      if (stats.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) throw new Error(`too many levels of symbolic links resolving ${rel}`);
        done.pop();
        const target = readlinkSync(host);
        if (target.startsWith('/')) done.length = 0;
        pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
        stats = undefined;
      }
    }
    const real = done.join('/');
    const abs = real === '' ? this.dir : join(this.dir, real);
    stats ??= lstatSync(abs, { throwIfNoEntry: false });
    return stats === undefined ? undefined : { abs, real, stats };
  }

  /**
   * One context path (no wildcards), resolved inside the filtered context as {@link resolveSource} resolves a
   * source; undefined when the build cannot see it (what a bind mount's `source=` names).
   */
  resolveEntry(rel: string): ContextEntry | undefined {
    const clean = posix.normalize(`/${rel}`).replace(/^\/+/, '').replace(/\/+$/, '');
    const found = this.resolveInContext(clean);
    if (found === undefined) return undefined;
    return { rel: clean, abs: found.abs, stats: found.stats, type: typeOf(found.stats), ...(found.real !== clean ? { real: found.real } : {}) };
  }

  /**
   * Resolves one COPY/ADD source (relative to the context, wildcards `* ? [..]` per path segment)
   * to the matching top-level entries. A source without wildcards that is missing is an error; a wildcard that
   * matches nothing resolves to no entries, as in BuildKit.
   */
  async resolveSource(source: string): Promise<ContextEntry[]> {
    const clean = posix.normalize(`/${source}`).replace(/^\/+/, '');
    const segments = clean.split('/').filter((s) => s !== '');
    if (segments.some((s) => s === '..')) throw new Error(`forbidden path outside the build context: ${source}`);
    const entryOf = (rel: string): ContextEntry | undefined => {
      const found = this.resolveInContext(rel);
      if (found === undefined) return undefined;
      const { abs, real, stats } = found;
      // Sockets are not in the context; a FIFO or device node fails here, naming it, before anything opens it.
      if (checkContextEntry(rel, stats) === 'skip') return undefined;
      return { rel, abs, stats, type: typeOf(stats), ...(real !== rel ? { real } : {}) };
    };
    if (!segments.some(hasWildcard)) {
      const entry = entryOf(segments.join('/'));
      if (entry === undefined) throw notFound(source);
      return [entry];
    }
    let current: string[] = [''];
    for (const seg of segments) {
      const next: string[] = [];
      for (const base of current) {
        if (!hasWildcard(seg)) {
          next.push(base ? `${base}/${seg}` : seg);
          continue;
        }
        const matches = segmentMatcher(seg);
        const dir = this.resolveInContext(base);
        if (dir === undefined || !dir.stats.isDirectory()) continue;
        const names = await readdir(dir.abs).catch(() => [] as string[]);
        for (const name of names.sort()) {
          if (matches(name) && this.inContext(dir.real ? `${dir.real}/${name}` : name)) next.push(base ? `${base}/${name}` : name);
        }
      }
      current = next;
    }
    const out: ContextEntry[] = [];
    for (const rel of current) {
      const entry = entryOf(rel);
      if (entry !== undefined) out.push(entry);
    }
    if (out.length === 0) {
      // A wildcard that matches nothing copies nothing, as BuildKit allows (AllowEmptyWildcard); the directory
      // the first wildcard is looked up in must still exist.
      const prefix = segments.slice(0, segments.findIndex(hasWildcard)).join('/');
      if (prefix === '' || entryOf(prefix)?.type === 'dir') return [];
      throw notFound(source);
    }
    return out;
  }

  /**
   * Walks a selected directory (not following symlinks), leaving out what the filtered context does not hold;
   * entries sorted. Yields the directory's descendants, not the directory itself.
   */
  async walk(entry: ContextEntry): Promise<ContextEntry[]> {
    return (await this.walkResult(entry)).entries;
  }

  /**
   * The top-most paths below a selected directory (relative to it) that the filtered context leaves out:
   * what a view of that directory must hide (see runtime/filtered-view.ts). Empty without a .dockerignore.
   */
  async hiddenBelow(entry: ContextEntry): Promise<string[]> {
    return (await this.walkResult(entry)).hidden;
  }

  private walkResult(entry: ContextEntry): Promise<WalkResult> {
    // Memoised for the build: the cache key and the copy itself walk the same source.
    const key = `${entry.rel}\0${entry.real ?? entry.rel}`;
    const memo = this.walks.get(key);
    if (memo) return memo;
    const p = this.walkUncached(entry);
    this.walks.set(key, p);
    p.catch(() => this.walks.delete(key));
    return p;
  }

  private async walkUncached(entry: ContextEntry): Promise<WalkResult> {
    // Synchronous listing, yielding to the event loop every few hundred entries: walking an unchanged context
    // is the whole cost of a cached COPY, and one threadpool round trip per file made it several times slower
    // than the syscalls themselves (~0.1 s vs ~0.5 s for 5,000 files, loaded host). With the addon, one call per
    // directory lists it with every entry's lstat numbers (~3x faster again, and no Stats object per entry).
    const out: ContextEntry[] = [];
    const hidden: string[] = [];
    let sinceYield = 0;
    const sys = nativeSys();
    const scanDir = typeof sys?.scanDir === 'function' ? sys.scanDir : undefined;
    const matcher = this.matcher;
    // `rel` names entries as the source named them; `real` is the same path in the context, which the
    // .dockerignore rules apply to (they differ below a source reached through a symlink); `sub` is the path
    // relative to the walked directory.
    // `info` is what the ignore rules said of the directory (moby's MatchesUsingParentResults): a child is matched
    // against the patterns once, never its parents again.
    const walkDir = async (rel: string, real: string, sub: string, dirAbs: string, info: MatchInfo | undefined): Promise<void> => {
      // Host paths come from the entry's resolved path down (the selected directory may be reached through a
      // symlink, which resolveSource followed inside the context); below it nothing is followed, so plain
      // concatenations of readdir names stay in that tree.
      const prefix = dirAbs.endsWith('/') ? dirAbs : `${dirAbs}/`;
      let names: string[];
      let stat: (i: number) => Stats;
      if (scanDir !== undefined) {
        const [listed, numbers] = scanDir(dirAbs);
        names = listed;
        stat = (i) => {
          const mode = numbers[i * ENTRY_FIELDS + EntryField.mode]!;
          // Gone since the listing (only ever asked for entries that are not ignored): fail as lstatSync would.
          if (mode < 0) return lstatSync(prefix + names[i]!);
          return new EntryStats(numbers, i * ENTRY_FIELDS) as unknown as Stats;
        };
      } else {
        names = readdirSync(dirAbs);
        stat = (i) => lstatSync(prefix + names[i]!);
      }
      // Sibling order is JavaScript's string order (UTF-16 code units), as it always was; the addon lists in
      // byte order, which differs only for names with characters beyond U+FFFF or in U+E000-U+FFFF.
      const order = stringOrder(names);
      sinceYield += names.length;
      if (sinceYield > 500) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      for (const i of order) {
        const name = names[i]!;
        const childRel = rel ? `${rel}/${name}` : name;
        // Only ignore rules need these two paths; without any, the walk builds no extra strings.
        const childReal = matcher === undefined ? '' : real ? `${real}/${name}` : name;
        const childSub = matcher === undefined ? '' : sub ? `${sub}/${name}` : name;
        const abs = prefix + name;
        const match = matcher?.matchesUsingParentResults(childReal, info);
        if (matcher !== undefined && match !== undefined && match.matched) {
          // Left out, unless it is a directory an exception re-includes something below: then it stays, as the
          // parent of what is kept (docker keeps the parents of every re-included path), holding only that.
          if (matcher.mayReincludeBelow(childReal)) {
            const stats = stat(i);
            if (stats.isDirectory()) {
              const at = out.length;
              const hiddenAt = hidden.length;
              out.push({ rel: childRel, abs, stats, type: 'dir' });
              await walkDir(childRel, childReal, childSub, abs, match.info);
              if (out.length > at + 1) continue;
              out.length = at;
              hidden.length = hiddenAt;
            }
          }
          hidden.push(childSub);
          continue;
        }
        const stats = stat(i);
        // Sockets are not part of the context; FIFOs and devices are refused before anything opens them.
        if (checkContextEntry(childRel, stats) === 'skip') continue;
        const type = typeOf(stats);
        out.push({ rel: childRel, abs, stats, type }); // parents before children, siblings in name order
        if (type === 'dir') await walkDir(childRel, childReal, childSub, abs, match?.info);
      }
    };
    if (entry.type === 'dir') {
      const real = entry.real ?? entry.rel;
      const info = matcher !== undefined && real !== '' ? matcher.matchesUsingParentResults(real).info : undefined;
      await walkDir(entry.rel, real, '', entry.abs, info);
    }
    return { entries: out, hidden };
  }

  /** The sha256 of a file's content (hex), with xxhash64-based change detection (see the file comment). */
  fileDigest(entry: ContextEntry): Promise<string> {
    // Called once per file to copy: an unchanged file is answered without an async function's frame.
    const known = this.statCacheReady ? this.knownDigest(entry) : undefined;
    return known !== undefined ? Promise.resolve(known) : this.computeFileDigest(entry);
  }

  private async computeFileDigest(entry: ContextEntry): Promise<string> {
    await this.loadStatCache();
    const known = this.knownDigest(entry);
    if (known !== undefined) return known;
    const st = entry.stats;
    if (st.size < 1 << 20) {
      // Small files are read synchronously: the callers hash in batches, so the event loop still turns
      // between them, and an async readFile costs four threadpool round trips (open, fstat, read, close),
      // several times the read itself for the tiny files a context is mostly made of.
      return this.digestContent(entry, st.size < SYNC_READ_LIMIT ? readFileSync(entry.abs) : await readFile(entry.abs));
    }
    let x: string;
    let h: string;
    {
      // A big file with a changed stat is hashed with sha256 straight away, in one read: a changed stat usually
      // means changed bytes, and then an xxhash pass first (to skip sha256 after a mere touch) costs a second
      // read plus xxhash-wasm's own copy of every chunk (measured on 200 MB: ~0.3 s more than it can save).
      // No xxhash is kept for it (`x` empty never matches, so the small-file shortcut cannot misfire).
      const sha = crypto().createHash('sha256');
      const shrank = () => new Error(`${entry.rel} changed while it was being read`);
      for await (const chunk of fileChunks(entry.abs, st.size, shrank, { reuse: true })) sha.update(chunk);
      x = '';
      h = sha.digest('hex');
    }
    this.remember(entry, x, h);
    return h;
  }

  /**
   * The sha256 (hex) of a small file's content `data`, remembered with its stat: an unchanged xxhash64 (a
   * touched file) reuses the sha256 remembered for it.
   */
  private digestContent(entry: ContextEntry, data: Buffer): string {
    const hasher = hasherReady;
    const cached = recordOf(this.statCache, entry.rel);
    const x = hasher === undefined ? '' : hasher.h64Raw(data).toString(16).padStart(16, '0');
    const h = x !== '' && cached !== undefined && cached[4] === x && cached[0] === data.length ? cached[5] : sha256Hex(data);
    this.remember(entry, x, h);
    return h;
  }

  private remember(entry: ContextEntry, x: string, h: string): void {
    const st = entry.stats;
    const record: StatCacheEntry = [st.size, st.mtimeMs, st.ctimeMs, st.ino, x, h];
    setOwn(this.statCache, entry.rel, record);
    if (this.statCacheChanges !== undefined) {
      setOwn(this.statCacheChanges, entry.rel, record);
      this.statCacheChangeCount++;
    }
    this.statCacheDirty = true;
  }

  /**
   * Digests the small regular files `entries` (each under {@link SYNC_READ_LIMIT}) with the addon: each batch of
   * files is read into a slab by `readFiles` on two threadpool threads while this thread hashes the batch before
   * (open/read/close were most of the time of a cold 5,000-file digest on one thread). Calls `done(i, sha256)`
   * per entry. A file that is no longer the size the walk saw fails, as one that changes during a copy does.
   */
  private async digestSmallFilesBatched(
    sys: NativeSys,
    entries: readonly ContextEntry[],
    done: (i: number, digest: string) => void,
  ): Promise<void> {
    const batches: Array<{ from: number; to: number }> = [];
    for (let i = 0; i < entries.length; ) {
      const from = i;
      let bytes = 0;
      // One byte more than each file's size, so that a file that grew is noticed.
      while (i < entries.length && (i === from || bytes + entries[i]!.stats.size + 1 <= DIGEST_SLAB)) bytes += entries[i++]!.stats.size + 1;
      batches.push({ from, to: i });
    }
    const slabs = [Buffer.allocUnsafe(DIGEST_SLAB), Buffer.allocUnsafe(DIGEST_SLAB)];
    /** Starts reading batch `k` into its slab; resolves to [offset, length] pairs and the bytes read (or -errno). */
    const read = (k: number): Promise<{ plan: Uint32Array; got: Int32Array }> => {
      const { from, to } = batches[k]!;
      const plan = new Uint32Array(2 * (to - from));
      let at = 0;
      for (let j = 0; j < to - from; j++) {
        const size = entries[from + j]!.stats.size + 1;
        plan[2 * j] = at;
        plan[2 * j + 1] = size;
        at += size;
      }
      // Absolute paths from the root: a path through a context symlink resolves as a readFileSync would.
      const rels = entries.slice(from, to).map((e) => e.abs.replace(/^\/+/, ''));
      return readFilesSplit(sys, '/', rels, slabs[k % 2]!, plan, 2).then((got) => ({ plan, got }));
    };
    let next = batches.length > 0 ? read(0) : undefined;
    for (let k = 0; k < batches.length; k++) {
      const { plan, got } = await (next as Promise<{ plan: Uint32Array; got: Int32Array }>);
      // The other slab is free again: its batch was hashed before this one was awaited.
      next = k + 1 < batches.length ? read(k + 1) : undefined;
      next?.catch(() => undefined);
      const slab = slabs[k % 2]!;
      const { from } = batches[k]!;
      for (let j = 0; j < got.length; j++) {
        const entry = entries[from + j]!;
        const n = got[j]!;
        if (n < 0) throw readFileError(entry.abs, n);
        if (n !== entry.stats.size) throw new Error(`${entry.rel} changed while it was being read`);
        done(from + j, this.digestContent(entry, slab.subarray(plan[2 * j]!, plan[2 * j]! + n)));
      }
    }
  }

  /**
   * A digest of everything a source selects: names, types, permission bits, link targets and file
   * contents. Not mtimes, owners or ignored files, so touching a file or editing an ignored one keeps the cache.
   * `exclude` (COPY --exclude) drops a selected directory's descendants by their context-relative path.
   */
  async digestSources(entries: readonly ContextEntry[], exclude?: (top: ContextEntry, rel: string) => boolean): Promise<string> {
    // The per-file cache is read while the walk runs (the tree cache below usually makes it unneeded, but then the
    // read cost only a threadpool thread's time; when it is needed, its latency is hidden).
    if (!this.statCacheReady && entries.some((e) => e.type === 'dir')) void this.prefetchStatCache();
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
    let misses: number[] = [];
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
    if (misses.length >= HASHER_WORTH_IT) loadHasher();
    const sys = misses.length >= BATCH_WORTH_IT ? nativeSys() : undefined;
    if (sys !== undefined) {
      // Small regular files through the addon in batches; the rest one by one below.
      const small = misses.filter((i) => all[i]!.type === 'file' && all[i]!.stats.size < SYNC_READ_LIMIT);
      await this.digestSmallFilesBatched(
        sys,
        small.map((i) => all[i]!),
        (j, digest) => {
          const i = small[j]!;
          const e = all[i]!;
          lines[i] = `f ${e.rel} ${(e.stats.mode & 0o7777).toString(8)} ${digest}`;
        },
      );
      const batched = new Set(small);
      misses = misses.filter((i) => !batched.has(i));
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
    const cached = recordOf(this.statCache, entry.rel);
    if (cached !== undefined && cached[0] === st.size && cached[1] === st.mtimeMs && cached[2] === st.ctimeMs && cached[3] === st.ino) return cached[5];
    return undefined;
  }


  /** Persists the digest cache (temp file + rename, so a crash never leaves a torn file in place). */
  async save(): Promise<void> {
    if (!this.statCachePath || (!this.statCacheDirty && !this.treeCacheDirty)) return;
    await mkdir(dirname(this.statCachePath), { recursive: true });
    if (this.statCacheDirty) {
      const changes = this.statCacheChanges;
      let appended = false;
      if (changes !== undefined && this.statCacheLines > 0 && this.statCacheLines < JOURNAL_LIMIT && this.statCacheChangeCount <= JOURNAL_APPEND_MAX) {
        // O_APPEND without O_CREAT: one write at the end of the file that was loaded (a file removed meanwhile is
        // rewritten whole below); a leading newline ends a line torn by an earlier crash.
        appended = await appendFile(this.statCachePath, `\n${JSON.stringify(changes)}\n`, { flag: fsConstants.O_WRONLY | fsConstants.O_APPEND }).then(
          () => true,
          () => false,
        );
        if (appended) this.statCacheLines++;
      }
      if (!appended) {
        await writeAtomic(this.statCachePath, `${STAT_CACHE_HEADER}\n${JSON.stringify(this.statCache)}\n`);
        this.statCacheLines = 1;
        // The v1 cache of this context (same key) is never read again.
        await rm(this.statCachePath.replace(/\.stats-v2$/, '.json'), { force: true });
      }
      this.statCacheChanges = Object.create(null) as StatCacheRecords;
      this.statCacheChangeCount = 0;
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
/** Slab of a batch of small files read for their digests (two of them take turns). */
const DIGEST_SLAB = 1024 * 1024;
/** Files to digest from which they are read in batches through the addon rather than one by one. */
const BATCH_WORTH_IT = 32;

/** How many source selections per context keep their digest in the tree cache. */
const TREE_CACHE_LIMIT = 256;

/** The tree cache beside a per-file cache (`context-<key>.trees.json`, as in v1: its format did not change). */
function treeCachePath(statCachePath: string): string {
  return statCachePath.replace(/\.stats-v2$/, '.trees.json');
}

/** The well-formed record of `rel` (an own property: never something inherited like `constructor`). */
function recordOf(records: StatCacheRecords, rel: string): StatCacheEntry | undefined {
  if (!Object.hasOwn(records, rel)) return undefined;
  const r: unknown = records[rel];
  return isStatCacheEntry(r) ? r : undefined;
}

/** Sets an own property, also for the name `__proto__` (which plain assignment would treat as the prototype). */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  else target[key] = value;
}

function isStatCacheEntry(r: unknown): r is StatCacheEntry {
  return (
    Array.isArray(r) &&
    r.length === 6 &&
    typeof r[0] === 'number' &&
    typeof r[1] === 'number' &&
    typeof r[2] === 'number' &&
    typeof r[3] === 'number' &&
    typeof r[4] === 'string' &&
    typeof r[5] === 'string'
  );
}

/** Indices of `names` in JavaScript's default sort order (the identity when already sorted, as listings mostly are). */
function stringOrder(names: readonly string[]): number[] {
  const order = Array.from({ length: names.length }, (_, i) => i);
  for (let i = 1; i < names.length; i++) {
    if (names[i - 1]! > names[i]!) return order.sort((a, b) => (names[a]! < names[b]! ? -1 : names[a]! > names[b]! ? 1 : 0));
  }
  return order;
}

const S_IFMT = 0o170000;

/**
 * A Stats built from the addon's lstat numbers (native/kiln_sys.c ENTRY_FIELDS): the same fields and methods as
 * node:fs Stats (dates made on first use, rounded to the millisecond as Node rounds them). birthtime is not known (0, as on filesystems without one).
 */
class EntryStats {
  readonly dev: number;
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly blksize: number;
  readonly blocks: number;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly birthtimeMs = 0;

  constructor(f: Float64Array, at: number) {
    this.dev = f[at + EntryField.dev]!;
    this.ino = f[at + EntryField.ino]!;
    this.mode = f[at + EntryField.mode]!;
    this.nlink = f[at + EntryField.nlink]!;
    this.uid = f[at + EntryField.uid]!;
    this.gid = f[at + EntryField.gid]!;
    this.rdev = f[at + EntryField.rdev]!;
    this.size = f[at + EntryField.size]!;
    this.blksize = f[at + EntryField.blksize]!;
    this.blocks = f[at + EntryField.blocks]!;
    this.atimeMs = f[at + EntryField.atimeMs]!;
    this.mtimeMs = f[at + EntryField.mtimeMs]!;
    this.ctimeMs = f[at + EntryField.ctimeMs]!;
  }

  get atime(): Date {
    return new Date(Math.round(this.atimeMs));
  }
  get mtime(): Date {
    return new Date(Math.round(this.mtimeMs));
  }
  get ctime(): Date {
    return new Date(Math.round(this.ctimeMs));
  }
  get birthtime(): Date {
    return new Date(Math.round(this.birthtimeMs));
  }
  isFile(): boolean {
    return (this.mode & S_IFMT) === fsConstants.S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === fsConstants.S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === fsConstants.S_IFLNK;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === fsConstants.S_IFBLK;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === fsConstants.S_IFCHR;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === fsConstants.S_IFIFO;
  }
  isSocket(): boolean {
    return (this.mode & S_IFMT) === fsConstants.S_IFSOCK;
  }
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

