/**
 * The Linux system calls Node lacks (mount, umount2, mknod, the xattr family, a posix_spawn), from the optional addon
 * built from native/kiln_sys.c by scripts/build-native.mjs.
 *
 * Callers use {@link nativeSys} and fall back to spawning `mount`, `umount`, `getfattr`, `setfattr` or
 * `mknod` when it returns undefined (no compiler or Node headers at install time, or `KILN_NATIVE=0`).
 * Both paths do the same thing; the addon only saves the process spawns, which cost 5-20 ms each from a
 * large Node process and used to be most of a RUN step's overhead.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { availableParallelism } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { fileURLToPath } from 'node:url';

/** The addon's functions. Each is synchronous and throws an Error with node:fs-style `code`/`syscall`. */
export interface NativeSys {
  /** mount(2). `flags` are MS_* bits; `data` the filesystem's option string. */
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  /** umount2(2); `flags` e.g. {@link MNT_DETACH}. */
  umount2(target: string, flags: number): void;
  /** mknod(2) with `mode` including the file type bits (S_IFCHR, …). */
  mknod(file: string, mode: number, major: number, minor: number): void;
  /** lsetxattr(2) (create or replace). */
  lsetxattr(file: string, name: string, value: Buffer): void;
  /** lremovexattr(2). */
  lremovexattr(file: string, name: string): void;
  /**
   * posix_spawn(3) of `file` with `argv` (argv[0] included) and our environment; stdin /dev/null.
   * Returns `[pid, stdoutFd, stderrFd, exitFd]`: the read ends of the output pipes, and of a pipe on which
   * a reaper thread writes the wait(2) status as decimal text when the process has exited.
   */
  spawn(file: string, argv: readonly string[]): [number, number, number, number];
  /**
   * Every entry below `root` (root excluded), depth first, each directory's entries in byte order of their
   * names, without following symlinks: the relative paths, 9 lstat numbers per entry in a Float64Array
   * (mode, uid, gid, size, mtimeMs, nlink, dev, ino, rdev), and with `withXattrs` the xattrs of the root and
   * of every entry as a flat `[entry index (-1: the root), name, value, …]` (empty otherwise).
   */
  scanTree(root: string, withXattrs: boolean): [string[], Float64Array, Array<number | string | Buffer>];
  /**
   * Reads many small files on a libuv threadpool thread: file `rels[i]` (relative to the directory `root`, a
   * final symlink not followed) into `buffer` at `plan[2i]`, at most `plan[2i+1]` bytes (open, read, close).
   * Returns at once; when done, `got[i]` holds the bytes read or -errno, and `done()` is called. The caller
   * leaves those parts of `buffer`, `plan` and `got` alone until then.
   */
  readFiles(root: string, rels: readonly string[], buffer: Buffer, plan: Uint32Array, got: Int32Array, done: () => void): void;
  /**
   * The entries of one directory (not `.`/`..`), in byte order of their names, without following symlinks: the
   * names, and {@link ENTRY_FIELDS} lstat numbers per entry in a Float64Array (see {@link EntryField}; times in
   * milliseconds computed as Node's Stats computes them, so they compare equal to `lstatSync`'s). An entry that
   * could not be lstat'ed (removed since the listing) has `-errno` as its mode and zeros elsewhere.
   */
  scanDir(dir: string): [string[], Float64Array];
  /** lstat(2) of each path: {@link ENTRY_FIELDS} numbers per path; a failed one has `-errno` as its mode, zeros elsewhere. */
  lstatPaths(paths: readonly string[]): Float64Array;
  /**
   * link(2) of `existing[i]` to `created[i]` for each i, on a libuv threadpool thread. Returns at once; when done,
   * `got[i]` is 0 or -errno, and `done()` is called.
   */
  linkFiles(existing: readonly string[], created: readonly string[], got: Int32Array, done: () => void): void;
  /**
   * Copies small regular files on a libuv threadpool thread: `srcs[i]` to the new file `targets[i]` with the
   * {@link COPY_META} numbers `meta[6i..]` (size, permission bits, uid, gid, atimeMs, mtimeMs): read whole, create
   * (O_EXCL, O_NOFOLLOW), write, owner and mode when the new inode lacks them, both times (whole milliseconds).
   * Returns at once; when done, `got[i]` is 0, {@link COPY_FALLBACK} or -errno, and `done()` is called.
   */
  copyFiles(srcs: readonly string[], targets: readonly string[], meta: Float64Array, got: Int32Array, done: () => void): void;
  /** Sets the ext2/3/4 FS_TOPDIR_FL flag (`chattr +T`) on `dir`: 0, or the errno when it could not (see {@link spreadSubdirs}). */
  spreadSubdirs(dir: string): number;
  /** syncfs(2) of the filesystem holding `dir` on a libuv threadpool thread; when done, `got[0]` is 0 or -errno and `done()` is called. */
  syncfs(dir: string, got: Int32Array, done: () => void): void;
  /**
   * Copies exactly `size` bytes of `src` into `target` (created with `mode`, or truncated; O_NOFOLLOW) with
   * copy_file_range(2) on a threadpool thread; when done, `got[0]` is 0, {@link COPY_FALLBACK} (the filesystems
   * cannot: copy the ordinary way), {@link COPY_SHRANK} (the file ended early) or -errno, and `done()` is called.
   */
  copyRange(src: string, target: string, size: number, mode: number, got: Int32Array, done: () => void): void;
}

/** {@link NativeSys.copyRange}'s answer for a source that ended before `size` bytes. */
export const COPY_SHRANK = 2;

/** Numbers per file in {@link NativeSys.copyFiles}' `meta`. */
export const COPY_META = 6;
/**
 * {@link NativeSys.copyFiles}' answer for a file it did not write: the target exists, or the source is bigger than
 * {@link COPY_MAX}, no longer `size` bytes, or no longer a regular file. The caller copies it the ordinary way.
 */
export const COPY_FALLBACK = 1;
/** The biggest file {@link NativeSys.copyFiles} copies (its per-batch buffer). */
export const COPY_MAX = 64 * 1024;

/** Numbers per entry in {@link NativeSys.scanDir} and {@link NativeSys.lstatPaths} results. */
export const ENTRY_FIELDS = 13;

/** Offsets of the lstat numbers inside one entry's {@link ENTRY_FIELDS} (Node's Stats names). */
export const EntryField = {
  mode: 0,
  uid: 1,
  gid: 2,
  size: 3,
  atimeMs: 4,
  mtimeMs: 5,
  ctimeMs: 6,
  ino: 7,
  dev: 8,
  nlink: 9,
  rdev: 10,
  blksize: 11,
  blocks: 12,
} as const;

/** umount2(2): detach now, free when the last user goes away. */
export const MNT_DETACH = 2;

// The addon, loaded on first use (module state allowed: a lazily loaded module handle).
let loaded: { sys: NativeSys | undefined } | undefined;

/**
 * The directory scripts/build-native.mjs builds into (`build/native` at the repository or package root), or
 * undefined when it does not exist or `KILN_NATIVE=0`. Looked up from both src/native (tsx) and
 * dist/src/native (compiled).
 */
export function nativeBuildDir(): string | undefined {
  if (process.env['KILN_NATIVE'] === '0' || process.platform !== 'linux') return undefined;
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const candidate = path.resolve(here, up, 'build', 'native');
    if (existsSync(path.join(candidate, 'kiln_sys.node'))) return candidate;
  }
  return undefined;
}

/**
 * The small launcher that starts crun without cgroups on hybrid-cgroup hosts (native/crun-launch.c), or
 * undefined when it is not built (the `unshare`/`sh`/`mount` chain it replaces is used then).
 */
export function crunLauncher(): string | undefined {
  const dir = nativeBuildDir();
  const launcher = dir === undefined ? undefined : path.join(dir, 'kiln-crun-launch');
  return launcher !== undefined && existsSync(launcher) ? launcher : undefined;
}

/**
 * The guard that makes a runtime and its containers die with kiln (native/run-guard.c), or undefined when it is
 * not built (src/runtime/run-guard.ts then uses setpriv(1) and unshare(1)).
 */
export function runGuard(): string | undefined {
  const dir = nativeBuildDir();
  const guard = dir === undefined ? undefined : path.join(dir, 'kiln-run-guard');
  return guard !== undefined && existsSync(guard) ? guard : undefined;
}

/** The addon, or undefined when it is not built or `KILN_NATIVE=0` (memoized per process). */
export function nativeSys(): NativeSys | undefined {
  if (loaded !== undefined) return loaded.sys;
  let sys: NativeSys | undefined;
  const dir = nativeBuildDir();
  if (dir !== undefined) {
    try {
      sys = createRequire(import.meta.url)(path.join(dir, 'kiln_sys.node')) as NativeSys;
    } catch {
      // Built for another architecture: behave as if it were absent.
    }
  }
  loaded = { sys };
  return sys;
}

/**
 * {@link NativeSys.readFiles} on `threads` threadpool threads at once, the files split between them: file `rels[i]`
 * (relative to `root`) into `buffer` at `plan[2i]`, at most `plan[2i+1]` bytes. Resolves to the bytes read, or
 * -errno, per file ({@link readFileError} makes the error). `buffer` is written until then.
 */
export function readFilesSplit(sys: NativeSys, root: string, rels: readonly string[], buffer: Buffer, plan: Uint32Array, threads: number): Promise<Int32Array> {
  const got = new Int32Array(rels.length);
  const per = Math.max(1, Math.ceil(rels.length / threads));
  const parts: Array<Promise<void>> = [];
  for (let from = 0; from < rels.length; from += per) {
    const to = Math.min(rels.length, from + per);
    const some = new Int32Array(to - from);
    parts.push(
      new Promise<void>((resolve) => {
        sys.readFiles(root, rels.slice(from, to), buffer, plan.slice(2 * from, 2 * to), some, () => {
          got.set(some, from);
          resolve();
        });
      }),
    );
  }
  return Promise.all(parts).then(() => got);
}

/**
 * {@link NativeSys.copyFiles} over `srcs`, in chunks, one chunk in flight per core (see {@link inLanes}).
 * Resolves to the result per file (0, {@link COPY_FALLBACK} or -errno).
 */
export async function copyFilesSplit(sys: NativeSys, srcs: readonly string[], targets: readonly string[], meta: Float64Array, signal?: AbortSignal): Promise<Int32Array> {
  const got = new Int32Array(srcs.length);
  await inLanes(srcs.length, signal, (from, to, done) => {
    // Views, not copies: the addon holds a reference to each until its done().
    sys.copyFiles(srcs.slice(from, to), targets.slice(from, to), meta.subarray(COPY_META * from, COPY_META * to), got.subarray(from, to), done);
  });
  return got;
}

/** {@link NativeSys.linkFiles} over the pairs, like {@link copyFilesSplit}: 0 or -errno per pair. */
export async function linkFilesSplit(sys: NativeSys, existing: readonly string[], created: readonly string[], signal?: AbortSignal): Promise<Int32Array> {
  const got = new Int32Array(existing.length);
  await inLanes(existing.length, signal, (from, to, done) => {
    sys.linkFiles(existing.slice(from, to), created.slice(from, to), got.subarray(from, to), done);
  });
  return got;
}

/**
 * Runs `batch` over the items [0, count) in chunks of {@link LANE_CHUNK}, {@link LANES} chunks in flight at once (each
 * on its own threadpool thread), so many small syscalls use every core while the main thread stays free. `signal`
 * stops new chunks from starting; the ones in flight are waited for either way.
 */
async function inLanes(count: number, signal: AbortSignal | undefined, batch: (from: number, to: number, done: () => void) => void): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      signal?.throwIfAborted();
      const from = next;
      const to = Math.min(count, from + LANE_CHUNK);
      next = to;
      await new Promise<void>((resolve) => batch(from, to, resolve));
    }
  };
  // allSettled: a lane that stops on the signal must not leave the other's chunk running after we return.
  const settled = await Promise.allSettled(Array.from({ length: LANES }, lane));
  const failed = settled.find((l): l is PromiseRejectedResult => l.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Items per native call in {@link inLanes}: a few milliseconds of syscalls. */
const LANE_CHUNK = 64;
/** Chunks {@link inLanes} keeps in flight: one per core, at most libuv's default threadpool of 4. */
const LANES = Math.max(1, Math.min(4, availableParallelism()));

/**
 * Asks ext4 to place each new subdirectory of `dir` (a store's scratch and layer directories) where its Orlov allocator
 * places top-level directories, a block group of its own, rather than beside `dir` (`chattr +T`, with the addon; a
 * no-op elsewhere). Called at every step and unpack: no memo of the directories done, because once the flag is set a
 * call is an open, one ioctl and a close (a few µs, next to a step's milliseconds).
 *
 * Why: without a journal, ext4 avoids reusing an inode freed in the last 60 s, and it finds a free inode by testing
 * every free one of a group in turn. Right after thousands of files were deleted near `dir` (a pruned or wiped store,
 * a replaced layer), each file a step then creates next to them scanned all of those first: a 5,000-file COPY took
 * 1.3-1.5 s instead of 0.4-0.5 s here. Files follow their directory's group, so a step directory placed elsewhere
 * does not pay this.
 */
export function spreadSubdirs(dir: string): void {
  nativeSys()?.spreadSubdirs(dir);
}

/** The error node:fs would throw for a read of `file` that {@link readFilesSplit} reported as `errno` (negative). */
export function readFileError(file: string, errno: number): Error {
  const code = getSystemErrorName(errno);
  return Object.assign(new Error(`${code}: cannot read ${file}`), { code, errno, syscall: 'read', path: file });
}
