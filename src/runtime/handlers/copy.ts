/**
 * COPY and ADD's file work: put source files into a step's merged rootfs (an overlay whose upperdir
 * becomes the layer), following `docker build`'s destination rules:
 * - a source directory's *contents* are copied, not the directory itself;
 * - a file goes to `dest/<name>` when `dest` ends in `/` or is an existing directory, else to `dest`;
 * - more than one source (or a wildcard) needs a `dest` that ends in `/`;
 * - missing parents of `dest` are created 0755 root:root; existing ones keep their metadata
 *   (overlay copies them up unchanged);
 * - modes and mtimes are kept; owners become root unless `--chown` says otherwise (files from
 *   another stage keep theirs); `--chmod` applies to everything copied.
 */
import { chmod, chown, copyFile, lchown, lstat, lutimes, mkdir, readlink, rm, symlink, utimes, writeFile, constants } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { resolveInRoot } from '../user.js';

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
  /** True when the instruction named several sources or a wildcard. */
  readonly multiple: boolean;
  /** uid/gid for everything copied; undefined keeps the source owner (`keepOwner`) or root. */
  readonly owner?: { readonly uid: number; readonly gid: number };
  readonly keepOwner: boolean;
  /** `--chmod` bits (applied to files and directories copied). */
  readonly mode?: number;
  readonly signal?: AbortSignal;
}

/** How many file copies are in flight at once: enough to keep the threadpool busy, not more. */
const CONCURRENCY = 16;

export async function copyIntoRootfs(rootfs: string, req: CopyRequest): Promise<number> {
  const destIsDir = req.dest.endsWith('/');
  if (req.multiple && !destIsDir) {
    throw new Error('When using COPY with more than one source file, the destination must be a directory and end with a /');
  }
  let copied = 0;
  const jobs: Array<() => Promise<void>> = [];
  const dirsToFinish: Array<{ target: string; src: CopySource }> = [];

  for (const src of req.sources) {
    req.signal?.throwIfAborted();
    if (src.type === 'dir') {
      const targetDir = await ensureDir(rootfs, req.dest, req.owner);
      // The top directory itself: docker applies the source dir's mode only when it creates dest.
      for (const child of await req.list(src)) {
        const relInside = path.relative(src.abs, child.abs);
        const target = path.join(targetDir, relInside);
        if (child.type === 'dir') {
          await mkdir(target, { recursive: true });
          dirsToFinish.push({ target, src: child });
        } else jobs.push(() => copyOne(child, target, req));
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
      jobs.push(() => copyOne(src, target, req));
      copied++;
    }
  }
  await runPool(jobs, CONCURRENCY, req.signal);
  // Directory metadata last: writing children would otherwise bump the directories' mtimes again.
  for (const { target, src } of dirsToFinish.reverse()) await finishDir(target, src, req);
  return copied;
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

function ownerOf(src: CopySource, req: CopyRequest): { uid: number; gid: number } {
  if (req.owner) return req.owner;
  if (req.keepOwner) return { uid: src.stats.uid, gid: src.stats.gid };
  return { uid: 0, gid: 0 };
}

async function copyOne(src: CopySource, target: string, req: CopyRequest): Promise<void> {
  const existing = await lstat(target).catch(() => undefined);
  if (existing && (existing.isDirectory() !== (src.type === 'dir') || src.type === 'symlink' || existing.isSymbolicLink())) {
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
  await copyFile(src.abs, target, constants.COPYFILE_FICLONE);
  await chown(target, uid, gid);
  await chmod(target, req.mode ?? src.stats.mode & 0o7777);
  await utimes(target, src.stats.atime, src.stats.mtime);
}

async function finishDir(target: string, src: CopySource, req: CopyRequest): Promise<void> {
  const { uid, gid } = ownerOf(src, req);
  await chown(target, uid, gid);
  await chmod(target, req.mode ?? src.stats.mode & 0o7777);
  await utimes(target, src.stats.atime, src.stats.mtime);
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
