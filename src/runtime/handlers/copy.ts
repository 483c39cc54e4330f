/**
 * COPY and ADD's file work: put source files into a step's merged rootfs (an overlay whose upperdir
 * becomes the layer), following `docker build`'s destination rules:
 * - a source directory's *contents* are copied, not the directory itself;
 * - a file goes to `dest/<name>` when `dest` ends in `/` or is an existing directory, else to `dest`;
 * - several sources (or a wildcard's matches) are copied one after the other, each by these rules: to a `dest`
 *   without `/` that is no directory, the last file wins (BuildKit has no "must end with /" rule, docker's classic
 *   builder had);
 * - FIFOs and sockets are left out without an error, as BuildKit's copier (tonistiigi/fsutil) does;
 * - missing parents of `dest` are created 0755 root:root; existing ones keep their metadata
 *   (overlay copies them up unchanged);
 * - modes and mtimes are kept; owners become root unless `--chown` says otherwise (files from
 *   another stage keep theirs); `--chmod` applies to everything copied.
 * - files of one source directory that are hard links of each other stay one inode (see {@link hardLinks}).
 *
 * A request may carry a {@link FilePlacer}: before a regular file is copied, the placer may create it some
 * cheaper way (store/file-reuse.ts hard-links an identical file of an earlier layer). A placed file is never
 * touched again here (no chown/chmod/utimes: it may be shared with another layer), and a copy that lands on
 * an existing file with more than one link replaces it instead of writing through it.
 */
import { chmod, chown, lchown, link, lstat, lutimes, mkdir, readlink, rm, symlink, utimes, writeFile, constants } from 'node:fs/promises';
import { chmodSync, chownSync, closeSync, constants as fsConstants, mkdirSync, utimesSync, fchmodSync, fchownSync, fstatSync, futimesSync, openSync, readFileSync, writeSync, type Stats } from 'node:fs';
import path from 'node:path';
import { getSystemErrorName } from 'node:util';
import { resolveInRoot } from '../user.js';
import { copyRegularFile } from '../../store/copy-file.js';
import { COPY_FALLBACK, COPY_MAX, COPY_META, copyFilesSplit, nativeSys, type NativeSys } from '../../native/sys.js';

/** A file, directory or symlink to copy; `list` yields a directory's descendants (ignore rules applied). */
export interface CopySource {
  readonly abs: string;
  readonly rel: string;
  readonly stats: Stats;
  readonly type: 'file' | 'dir' | 'symlink';
}

export interface CopyRequest {
  /** Top-level sources, wildcards already matched. */
  readonly sources: readonly CopySource[];
  /** Lists a source directory's descendants, in order, parents before children. */
  readonly list: (dir: CopySource) => Promise<readonly CopySource[]>;
  /** The destination in the container, absolute, trailing `/` kept. */
  readonly dest: string;
  /** uid/gid for everything copied; undefined keeps the source owner (`keepOwner`) or root. */
  readonly owner?: { readonly uid: number; readonly gid: number };
  readonly keepOwner: boolean;
  /** `--chmod` bits (applied to files and directories copied). */
  readonly mode?: number;
  readonly signal?: AbortSignal;
  /** Places regular files without copying them when it can (see the module comment). */
  readonly placer?: FilePlacer;
}

/** The metadata a copied regular file gets. */
export interface CopiedFileMetadata {
  readonly size: number;
  /** Permission bits. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtimeMs: number;
}

/** Creates regular files some cheaper way than copying, and hears of the ones that were copied. */
export interface FilePlacer {
  /**
   * Creates `target` (which does not exist yet) as `src` with metadata `want`, or returns false and leaves it
   * absent. Synchronous: called for many files in a row, between turns of the event loop.
   */
  placeSync(src: CopySource, target: string, want: CopiedFileMetadata): boolean;
  /**
   * {@link placeSync} for many files at once (whether each was placed), when the placer can do a batch cheaper
   * than one call per file (off the main thread).
   */
  placeBatch?(files: ReadonlyArray<{ readonly src: CopySource; readonly target: string; readonly want: CopiedFileMetadata }>): Promise<boolean[]>;
  /** Told after `src` was copied to `target` the ordinary way. */
  copied(src: CopySource, target: string): void;
  /** {@link copied} for many files at once, when the placer can take a batch cheaper. */
  copiedBatch?(files: ReadonlyArray<{ readonly src: CopySource; readonly target: string }>): void;
}

/** How many file copies are in flight at once: enough to keep the threadpool busy, not more. */
const CONCURRENCY = 16;

export async function copyIntoRootfs(rootfs: string, req: CopyRequest): Promise<number> {
  const destIsDir = req.dest.endsWith('/');
  let copied = 0;
  /** Files and symlinks to create, in source order (later sources win a shared target). */
  const files: Array<{ src: CopySource; target: string }> = [];
  /** Targets of skipped FIFOs and sockets: what was there (not a directory) is removed, nothing is created. */
  const skipped: string[] = [];
  const fileJob = (src: CopySource, target: string): void => {
    // fsutil's copy returns no error for them (`errors.Wrapf(nil, …)` is nil) and creates nothing; parents are made,
    // and a non-directory already at the target is removed first, as for every non-directory it copies (fuzz seed
    // 41381: `COPY --from=s0 /tmp /tmp/` over a stage that has /tmp/fifo leaves a whiteout).
    if (src.stats.isFIFO() || src.stats.isSocket()) {
      skipped.push(target);
      return;
    }
    files.push({ src, target });
  };
  const dirsToFinish: Array<{ target: string; src: CopySource }> = [];
  /** Names of one inode within one source directory (indices into `files`), in listing order. */
  const inodeGroups: number[][] = [];

  for (const src of req.sources) {
    req.signal?.throwIfAborted();
    if (src.type === 'dir') {
      // Files of one source directory that share an inode stay one inode (BuildKit's copy, fsutil's
      // getLinkSource, links them within one copy call: one source or one wildcard match, never across two).
      const groupOf = new Map<string, number[]>();
      // An earlier source of this COPY writes a file at dest (`COPY a.txt dir/ /x`): BuildKit copies in order and
      // then fails to copy a directory's contents into that file (fuzz seed 40715).
      const destHost = await resolveInRoot(rootfs, req.dest);
      if (files.some((f) => f.target === destHost)) throw new Error(`cannot copy to non-directory: ${req.dest}`);
      const targetDir = await ensureDir(rootfs, req.dest, req.owner);
      // The top directory itself: docker applies the source dir's mode only when it creates dest.
      // Listed paths are plain concatenations below src.abs (no `.`/`..`), so string slicing finds the target
      // (path.relative + path.join cost more than the rest of the per-file work on a 5,000-file rebuild).
      const below = src.abs.endsWith('/') ? src.abs : `${src.abs}/`;
      const targetPrefix = targetDir.endsWith('/') ? targetDir : `${targetDir}/`;
      for (const child of await req.list(src)) {
        const target = child.abs.startsWith(below) ? targetPrefix + child.abs.slice(below.length) : path.join(targetDir, path.relative(src.abs, child.abs));
        if (child.type === 'dir') {
          mkdirSync(target, { recursive: true }); // a few µs each: not worth a threadpool round trip
          dirsToFinish.push({ target, src: child });
        } else {
          if (child.type === 'file' && child.stats.nlink > 1 && child.stats.isFile()) {
            const inode = `${child.stats.dev}:${child.stats.ino}`;
            const group = groupOf.get(inode);
            if (group === undefined) {
              const g = [files.length];
              groupOf.set(inode, g);
              inodeGroups.push(g);
            } else group.push(files.length);
          }
          fileJob(child, target);
        }
        copied++;
      }
    } else {
      let target: string;
      const existing = await lstat(await resolveInRoot(rootfs, req.dest)).catch(() => undefined);
      if (destIsDir || existing?.isDirectory()) {
        const dir = await ensureDir(rootfs, req.dest, req.owner);
        target = path.join(dir, path.basename(src.rel || src.abs));
      } else {
        const parent = await ensureDir(rootfs, path.posix.dirname(req.dest), req.owner);
        target = path.join(parent, path.posix.basename(req.dest));
      }
      fileJob(src, target);
      copied++;
    }
  }
  for (const target of skipped) {
    const st = await lstat(target).catch(() => undefined);
    if (st !== undefined && !st.isDirectory()) await rm(target, { force: true });
  }
  refuseWritesThroughCopiedSymlinks(rootfs, files, dirsToFinish);
  const links = hardLinks(files, inodeGroups);
  const jobs = await fileJobs(
    files.filter((_, i) => !links.has(i)),
    req,
  );
  await runPool(jobs, CONCURRENCY, req.signal);
  for (const [i, first] of links) {
    req.signal?.throwIfAborted();
    const target = files[i]!.target;
    // An earlier source may have written this name: the link replaces it, as a later copy would.
    await rm(target, { recursive: true, force: true });
    await link(first, target);
  }
  // Directory metadata last: writing children would otherwise bump the directories' mtimes again.
  let sliceStart = performance.now();
  for (const { target, src } of dirsToFinish.reverse()) {
    finishDirSync(target, src, req);
    if (performance.now() - sliceStart > SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      req.signal?.throwIfAborted();
      sliceStart = performance.now();
    }
  }
  return copied;
}

/**
 * Which of `files` become hard links (index → the target they link to). Sources are copied in order, each write
 * replacing what was at its path, so a name of a group that a later source writes again leaves the group; the
 * names that stay are one inode: the first of them is copied, the others link to it.
 */
function hardLinks(files: ReadonlyArray<{ target: string }>, groups: readonly number[][]): Map<number, string> {
  const last = new Map<string, number>();
  files.forEach(({ target }, i) => last.set(target, i));
  const links = new Map<number, string>();
  for (const group of groups) {
    const kept = group.filter((i) => last.get(files[i]!.target) === i);
    for (const i of kept.slice(1)) links.set(i, files[kept[0]!]!.target);
  }
  return links;
}

/**
 * Sources can disagree on a path: `COPY a/ b/ /dst/` where a/x is a symlink and b/x a directory with files. The
 * jobs run concurrently, so a file of b/x could be written through the symlink a/x, which may point anywhere on
 * the host, or be dropped when the link replaces the directory. kiln does not merge a directory into a symlink;
 * such a COPY fails with this error instead of doing either.
 */
function refuseWritesThroughCopiedSymlinks(
  rootfs: string,
  files: ReadonlyArray<{ src: CopySource; target: string }>,
  dirs: ReadonlyArray<{ target: string; src: CopySource }>,
): void {
  const links = new Map<string, CopySource>();
  for (const f of files) if (f.src.type === 'symlink') links.set(f.target, f.src);
  if (links.size === 0) return;
  for (const { target, src } of [...files, ...dirs]) {
    for (let dir = path.dirname(target); dir.length > rootfs.length && dir.startsWith(rootfs); dir = path.dirname(dir)) {
      const link = links.get(dir);
      if (link !== undefined) {
        const inImage = `/${path.relative(rootfs, dir)}`;
        throw new Error(`cannot copy ${path.posix.normalize(src.rel)}: ${inImage} is a symlink copied from ${path.posix.normalize(link.rel)}; a directory is not merged into a symlink`);
      }
    }
  }
}

/**
 * Creates a container directory (and missing parents, 0755) and returns its host path. New directories
 * belong to `owner` (COPY --chown: BuildKit gives the directories it creates to the same user) or root.
 */
async function ensureDir(rootfs: string, containerDir: string, owner?: { uid: number; gid: number }): Promise<string> {
  const host = await resolveInRoot(rootfs, containerDir);
  const st = await lstat(host).catch(() => undefined);
  if (st?.isDirectory()) return host;
  if (st) throw new Error(`cannot copy to ${containerDir}: not a directory`);
  // Create component by component so each new directory gets 0755 regardless of the umask.
  const rel = path.relative(rootfs, host);
  let cur = rootfs;
  for (const part of rel.split(path.sep).filter(Boolean)) {
    cur = path.join(cur, part);
    const s = await lstat(cur).catch(() => undefined);
    if (!s) {
      await mkdir(cur);
      await chmod(cur, 0o755);
      if (owner) await chown(cur, owner.uid, owner.gid);
    } else if (!s.isDirectory()) throw new Error(`cannot copy to ${containerDir}: /${path.relative(rootfs, cur)} is not a directory`);
  }
  return host;
}

/**
 * The copy jobs for `files`. Sources sharing a target are copied one after another in source order (so the
 * last one wins, as in docker) and never placed; each other regular file goes through {@link placeFiles}.
 */
async function fileJobs(files: ReadonlyArray<{ src: CopySource; target: string }>, req: CopyRequest): Promise<Array<() => Promise<void>>> {
  const count = new Map<string, number>();
  for (const { target } of files) count.set(target, (count.get(target) ?? 0) + 1);
  const jobs: Array<() => Promise<void>> = [];
  const chains = new Map<string, CopySource[]>();
  const placeable: Array<{ src: CopySource; target: string }> = [];
  for (const f of files) {
    if (count.get(f.target)! > 1) {
      let chain = chains.get(f.target);
      if (!chain) {
        const sources: CopySource[] = [];
        chain = sources;
        chains.set(f.target, sources);
        jobs.push(async () => {
          for (const src of sources) await copyOne(src, f.target, req);
        });
      }
      chain.push(f.src);
    } else if (f.src.type === 'file' && f.src.stats.isFile()) placeable.push(f);
    else jobs.push(() => copyOne(f.src, f.target, req));
  }
  jobs.push(...(await placeFiles(req.placer, placeable, req)));
  return jobs;
}

/**
 * Creates the regular files of `files` that need no copy job: each is first offered to the placer, and a small
 * one (up to {@link SMALL_FILE}) is then written synchronously: read, `open(O_CREAT|O_EXCL)`, write, fchown and
 * fchmod when needed, futimes, close. Creating a small file costs tens of µs of kernel time (far more right after many
 * deletions: see spreadSubdirs in native/sys.ts), and four threadpool round trips per file (copyFile, chown, chmod,
 * utimes) cost more CPU than that on 2 cores, while sync calls in slices of
 * a few milliseconds keep the event loop responsive. With the addon, a COPY of many files does those same steps in
 * native batches on two threadpool threads instead ({@link copySmallFilesNative}): a 5,000-file COPY then costs the
 * main thread almost nothing, and its kernel work uses both cores. Returns copy jobs for the rest (big files are
 * copied by the kernel, copy_file_range; a target that already exists goes through {@link copyOne}).
 */
async function placeFiles(placer: FilePlacer | undefined, files: ReadonlyArray<{ src: CopySource; target: string }>, req: CopyRequest): Promise<Array<() => Promise<void>>> {
  const rest: Array<() => Promise<void>> = [];
  let sliceStart = performance.now();
  const turn = async (): Promise<void> => {
    if (performance.now() - sliceStart > SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      req.signal?.throwIfAborted();
      sliceStart = performance.now();
    }
  };
  // With the addon and enough of them, small files are copied in native batches on two threadpool threads at the
  // end; else one by one here, synchronously.
  const sys = files.length >= NATIVE_WORTH_IT ? nativeSys() : undefined;
  const small: Array<{ src: CopySource; target: string; want: CopiedFileMetadata }> = [];
  for (let b = 0; b < files.length; b += PLACE_BATCH) {
    const batch = files.slice(b, b + PLACE_BATCH).map(({ src, target }) => {
      const { uid, gid } = ownerOf(src, req);
      return { src, target, want: { size: src.stats.size, mode: req.mode ?? src.stats.mode & 0o7777, uid, gid, mtimeMs: src.stats.mtime.getTime() } };
    });
    await turn();
    const placed = await placer?.placeBatch?.(batch);
    for (let i = 0; i < batch.length; i++) {
      const file = batch[i]!;
      const { src, target, want } = file;
      if (placed !== undefined ? placed[i] : placer?.placeSync(src, target, want)) continue;
      if (sys !== undefined && want.size <= COPY_MAX) {
        small.push(file);
        continue;
      }
      await turn();
      if (want.size <= SMALL_FILE && writeSmallFileSync(src, target, want)) {
        placer?.copied(src, target);
        continue;
      }
      rest.push(() => copyOne(src, target, req));
    }
  }
  if (sys !== undefined && small.length > 0) rest.push(...(await copySmallFilesNative(sys, small, req)));
  return rest;
}

/** Files in one COPY from which the native batch copy is used (below it, a threadpool round trip is not worth it). */
const NATIVE_WORTH_IT = 32;

/**
 * Copies `files` (none bigger than {@link COPY_MAX}, all targets absent so far) through the addon's `copyFiles`, the
 * same steps as {@link writeSmallFileSync}, on two threadpool threads. Returns copy jobs for the files it left
 * (a target that exists, a source that changed since it was listed).
 */
async function copySmallFilesNative(
  sys: NativeSys,
  files: ReadonlyArray<{ src: CopySource; target: string; want: CopiedFileMetadata }>,
  req: CopyRequest,
): Promise<Array<() => Promise<void>>> {
  const meta = new Float64Array(COPY_META * files.length);
  files.forEach(({ src, want }, i) => {
    meta.set([want.size, want.mode, want.uid, want.gid, src.stats.atime.getTime(), want.mtimeMs], COPY_META * i);
  });
  const got = await copyFilesSplit(sys, files.map((f) => f.src.abs), files.map((f) => f.target), meta, req.signal);
  const rest: Array<() => Promise<void>> = [];
  const copied: Array<{ src: CopySource; target: string }> = [];
  files.forEach(({ src, target }, i) => {
    const result = got[i]!;
    if (result === 0) copied.push({ src, target });
    else if (result === COPY_FALLBACK) rest.push(() => copyOne(src, target, req));
    else {
      const code = getSystemErrorName(result);
      throw Object.assign(new Error(`${code}: cannot copy ${src.rel || src.abs} to ${target}`), { code, errno: result, syscall: 'copyfile', path: src.abs, dest: target });
    }
  });
  const placer = req.placer;
  if (placer?.copiedBatch !== undefined) placer.copiedBatch(copied);
  else for (const { src, target } of copied) placer?.copied(src, target);
  return rest;
}

/** Files offered to {@link FilePlacer.placeBatch} at once (a few milliseconds of links). */
const PLACE_BATCH = 256;

/** Regular files up to this size are copied synchronously through memory (see {@link placeFiles}). */
const SMALL_FILE = 64 * 1024;
/** Longest stretch of synchronous file work between two turns of the event loop. */
const SLICE_MS = 10;

/**
 * Writes `src` to the absent `target` with metadata `want`; false (nothing written) when `target` exists or
 * `src` is not the size it had, so the caller falls back to {@link copyOne}.
 */
function writeSmallFileSync(src: CopySource, target: string, want: CopiedFileMetadata): boolean {
  const data = readFileSync(src.abs);
  if (data.length !== want.size) return false;
  let fd: number;
  try {
    fd = openSync(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, want.mode & 0o777);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off, data.length - off);
    // Each metadata change is an inode update in the journal: only the ones the new file needs (its owner and
    // mode are usually right already: root creating, umask 022, modes like 0644).
    const st = fstatSync(fd);
    if (st.uid !== want.uid || st.gid !== want.gid) fchownSync(fd, want.uid, want.gid);
    if (st.uid !== want.uid || st.gid !== want.gid || (st.mode & 0o7777) !== want.mode) fchmodSync(fd, want.mode);
    futimesSync(fd, src.stats.atime, src.stats.mtime);
  } finally {
    closeSync(fd);
  }
  return true;
}

function ownerOf(src: CopySource, req: CopyRequest): { uid: number; gid: number } {
  if (req.owner) return req.owner;
  if (req.keepOwner) return { uid: src.stats.uid, gid: src.stats.gid };
  return { uid: 0, gid: 0 };
}

async function copyOne(src: CopySource, target: string, req: CopyRequest): Promise<void> {
  const existing = await lstat(target).catch(() => undefined);
  // An existing file with other links may share its inode with another layer (see FilePlacer): replace it,
  // never write through it.
  if (existing && (existing.isDirectory() !== (src.type === 'dir') || src.type === 'symlink' || existing.isSymbolicLink() || existing.nlink > 1)) {
    await rm(target, { recursive: true, force: true });
  }
  const { uid, gid } = ownerOf(src, req);
  if (src.type === 'symlink') {
    await symlink(await readlink(src.abs), target);
    await lchown(target, uid, gid);
    await lutimes(target, src.stats.atime, src.stats.mtime);
    return;
  }
  if (!src.stats.isFile()) throw new Error(`cannot copy ${src.rel}: not a regular file, directory or symlink`);
  // Not fs.copyFile: it spins forever on a file truncated while it copies (see store/copy-file.ts).
  await copyRegularFile(src.abs, target, { size: src.stats.size, name: src.rel, signal: req.signal });
  await chown(target, uid, gid);
  await chmod(target, req.mode ?? src.stats.mode & 0o7777);
  await utimes(target, src.stats.atime, src.stats.mtime);
  req.placer?.copied(src, target);
}

/** A copied directory's owner, mode and times (synchronous: three quick syscalls, done in slices by the caller). */
function finishDirSync(target: string, src: CopySource, req: CopyRequest): void {
  const { uid, gid } = ownerOf(src, req);
  chownSync(target, uid, gid);
  chmodSync(target, req.mode ?? src.stats.mode & 0o7777);
  utimesSync(target, src.stats.atime, src.stats.mtime);
}

/** Runs jobs with at most `limit` in flight; the first failure stops new jobs and is thrown. */
export async function runPool(jobs: ReadonlyArray<() => Promise<void>>, limit: number, signal?: AbortSignal): Promise<void> {
  let next = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    while (next < jobs.length && failure === undefined) {
      signal?.throwIfAborted();
      const job = jobs[next++]!;
      try {
        await job();
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  if (failure !== undefined) throw failure;
}

/** Writes a file into the rootfs (heredoc COPY sources), creating parents like {@link copyIntoRootfs}. */
export async function writeIntoRootfs(
  rootfs: string,
  containerPath: string,
  data: string,
  options: { owner?: { uid: number; gid: number }; mode?: number; mtime: Date },
): Promise<void> {
  const parent = await ensureDir(rootfs, path.posix.dirname(containerPath), options.owner);
  const target = path.join(parent, path.posix.basename(containerPath));
  await rm(target, { force: true, recursive: true });
  await writeFile(target, data);
  await chown(target, options.owner?.uid ?? 0, options.owner?.gid ?? 0);
  await chmod(target, options.mode ?? 0o644);
  await utimes(target, options.mtime, options.mtime);
}
