/**
 * Mounting and unmounting the overlayfs root filesystem of a build step: mount(2)/umount2(2) through the
 * native addon when it is built, the `mount` and `umount` commands (execa) otherwise.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { RuntimeError, messageOf } from '../errors.js';
import { MNT_DETACH, nativeSys } from '../native/sys.js';
import { makeOwnedTempDir } from '../store/owner.js';

/** The parts of an overlay mount. */
export interface OverlayOptions {
  /** Read-only layer directories, top-most first. Empty means `FROM scratch`. */
  readonly lowerDirs: readonly string[];
  /** Where the step's writes land (the caller snapshots it afterwards). */
  readonly upperDir: string;
  /** overlayfs' scratch directory: empty, on the same filesystem as `upperDir`. */
  readonly workDir: string;
  /** The mount point (must exist). */
  readonly target: string;
  /**
   * What this host's overlayfs was found to accept, shared by the mounts of one {@link Host} (see
   * `runtime/host.ts`). @default a record of its own: each mount tries `volatile` again
   */
  readonly capabilities?: OverlayCapabilities;
  readonly signal?: AbortSignal;
}

/** Overlay mount options a host's kernel accepts, learnt by mounting. */
export interface OverlayCapabilities {
  /**
   * `volatile` (Linux 5.10+): overlayfs skips every sync to the upper filesystem. Without it, unmounting a
   * step's overlay syncs the whole filesystem under the store (syncfs), which writes back every dirty page
   * on it, including the 200 MB a previous COPY just wrote: tens to hundreds of ms per step, for a
   * durability the store does not rely on (an adopted upperdir's tar is checked against its diffID whenever
   * it is regenerated, and blobs are fsynced when written). Dropped for the host when the kernel refuses it.
   */
  volatile: boolean;
}


/** A mounted overlay; call `unmount()` exactly once. */
export interface OverlayMount {
  readonly target: string;
  /** Unmounts and removes the helper directories the mount needed. */
  unmount(): Promise<void>;
}

/**
 * The mount(2) data argument is copied into a single page, so the whole option string must stay
 * under 4096 bytes (one byte for the terminating NUL). We stay a bit under it.
 */
const MOUNT_DATA_LIMIT = 4000;

/**
 * Fixed options, chosen so the upperdir is a plain, self-contained diff that the snapshotter can
 * turn into a layer tar, and so layer directories can be shared by any number of concurrent mounts:
 * - `index=off`: with the inode index on, an upper/work pair is tied to the lower stack it was first
 *   mounted with, and hard links copied up leave index entries we would have to clean.
 * - `redirect_dir=off`: renaming a lower directory must fail with EXDEV (so `mv` copies and deletes,
 *   which shows up as ordinary entries and whiteouts) instead of writing a `trusted.overlay.redirect`
 *   xattr that an OCI layer cannot express. Docker's overlay2 driver insists on the same.
 * - `metacopy=off`: a chmod/chown must copy the whole file up, not just its metadata; otherwise the
 *   upperdir would hold data-less files pointing into a lower layer.
 * - `xino=off`: inode-number mapping only matters to programs comparing st_ino across layers, and
 *   costs a lookup per file on some filesystems; off keeps behaviour the same on every host.
 */
const FIXED_OPTIONS = 'index=off,redirect_dir=off,metacopy=off,xino=off';

/**
 * Mounts an overlay at `target`.
 *
 * Many lower directories: the option string must fit one page (see {@link MOUNT_DATA_LIMIT}). When the
 * absolute paths are too long, the lower dirs are named by symlinks `0`, `1`, … in a short temp dir,
 * and `mount` runs with that dir as its cwd, so `lowerdir=0:1:2…` (the kernel resolves relative paths
 * against the mounting process' cwd and follows the symlinks once, at mount time). This also covers
 * paths containing `,` or `:`, which the option syntax cannot carry. overlayfs itself stacks at most
 * 500 lower layers.
 *
 * An empty `lowerDirs` (FROM scratch) mounts an empty temp dir as the only lower layer, because
 * overlayfs needs at least one.
 */
export async function mountOverlay(options: OverlayOptions): Promise<OverlayMount> {
  const { upperDir, workDir, target, signal } = options;
  const capabilities = options.capabilities ?? { volatile: true };
  signal?.throwIfAborted();
  // One directory may appear more than once in a stack: two steps that produced the same layer (RUNs that
  // change nothing, the same COPY twice) or an image whose manifest lists a diffID twice. overlayfs refuses a
  // repeated lowerdir (EINVAL, "conflicting lowerdir path"), and only the top-most copy is visible anyway: every
  // path the lower copy holds, the upper one holds too, so dropping the lower ones leaves the same view.
  let lowerDirs = [...new Set(options.lowerDirs.map((d) => path.resolve(d)))];
  let helperDir: string | undefined;
  const cleanupHelper = async (): Promise<void> => {
    if (helperDir !== undefined) await rm(helperDir, { recursive: true, force: true });
  };
  try {
    if (lowerDirs.length === 0) {
      helperDir = makeOwnedTempDir('ovl');
      const empty = path.join(helperDir, 'empty');
      await mkdir(empty);
      lowerDirs = [empty];
    }
    const special = (p: string): boolean => /[,:\\]/.test(p);
    let cwd: string | undefined;
    let data = `${FIXED_OPTIONS},lowerdir=${lowerDirs.join(':')},upperdir=${path.resolve(upperDir)},workdir=${path.resolve(workDir)}`;
    if (data.length > MOUNT_DATA_LIMIT || lowerDirs.some(special) || special(upperDir) || special(workDir)) {
      helperDir ??= makeOwnedTempDir('ovl');
      const links = path.join(helperDir, 'l');
      await mkdir(links);
      await Promise.all(lowerDirs.map((d, i) => symlink(d, path.join(links, String(i)))));
      await symlink(path.resolve(upperDir), path.join(links, 'u'));
      await symlink(path.resolve(workDir), path.join(links, 'w'));
      cwd = links;
      data = `${FIXED_OPTIONS},lowerdir=${lowerDirs.map((_, i) => String(i)).join(':')},upperdir=u,workdir=w`;
      if (data.length > MOUNT_DATA_LIMIT) throw new RuntimeError(`too many layers to mount (${lowerDirs.length})`);
    }
    const sys = cwd === undefined ? nativeSys() : undefined;
    const mount = async (options: string): Promise<void> => {
      if (sys !== undefined) {
        sys.mount('overlay', path.resolve(target), 'overlay', 0, options);
      } else {
        // No cancelSignal: killing `mount` midway would leave us not knowing whether the overlay is
        // mounted. It takes milliseconds; the abort is honoured right after it. (The relative lowerdir
        // form needs this path: mount(2) resolves it against the cwd, which a Node process must not change.)
        const { execa } = await import('execa');
        await execa('mount', ['-t', 'overlay', 'overlay', '-o', options, path.resolve(target)], {
          ...(cwd === undefined ? {} : { cwd }),
          stdin: 'ignore',
        });
      }
    };
    try {
      if (!capabilities.volatile) await mount(data);
      else {
        try {
          await mount(`volatile,${data}`);
        } catch {
          // An older kernel: the same mount without the option decides.
          await mount(data);
          capabilities.volatile = false;
        }
      }
    } catch (cause) {
      const stderr = (cause as { stderr?: unknown }).stderr;
      throw new RuntimeError(`mounting the overlay rootfs at ${target} failed: ${typeof stderr === 'string' && stderr ? stderr.trim() : messageOf(cause)}`, { cause });
    }
    // The symlinks were only needed while the kernel resolved the paths.
    if (cwd !== undefined) await rm(cwd, { recursive: true, force: true });
    if (signal?.aborted === true) {
      await unmount(target);
      signal.throwIfAborted();
    }
  } catch (err) {
    await cleanupHelper();
    throw err;
  }
  let unmounted = false;
  return {
    target,
    async unmount() {
      if (unmounted) return;
      await unmount(target);
      unmounted = true;
      await cleanupHelper();
    },
  };
}

/** Whether something is mounted exactly at `target` (per /proc/self/mountinfo). */
export async function isMounted(target: string): Promise<boolean> {
  const wanted = path.resolve(target);
  // Synchronous: a few KB from procfs, cheaper than a threadpool round trip.
  const info = readFileSync('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const mountPoint = line.split(' ')[4];
    if (mountPoint !== undefined && unescapeMountinfo(mountPoint) === wanted) return true;
  }
  return false;
}

/** mountinfo escapes space, tab, newline and backslash as octal `\ooo`. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * Unmounts `target` (nothing to do if it is not mounted). If the mount is busy (a process still has a file open in it), it retries a few
 * times and then detaches it lazily (`umount -l`), so a build never leaves a mount behind; the kernel
 * frees a lazily detached mount when its last user goes away.
 */
export async function unmount(target: string): Promise<void> {
  const abs = path.resolve(target);
  const sys = nativeSys();
  if (sys !== undefined) {
    // The common case without a mountinfo read: umount2 says EINVAL when nothing is mounted there.
    try {
      sys.umount2(abs, 0);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EINVAL' || code === 'ENOENT') return;
    }
  }
  if (!(await isMounted(abs))) return;
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      if (sys !== undefined) sys.umount2(abs, 0);
      else await (await import('execa')).execa('umount', [abs], { stdin: 'ignore' });
      return;
    } catch (cause) {
      lastError = cause;
      if (!(await isMounted(abs))) return;
      await new Promise((r) => setTimeout(r, 20 * (attempt + 1)));
    }
  }
  try {
    if (sys !== undefined) sys.umount2(abs, MNT_DETACH);
    else await (await import('execa')).execa('umount', ['-l', abs], { stdin: 'ignore' });
  } catch (cause) {
    if (await isMounted(abs)) {
      throw new RuntimeError(`unmounting ${abs} failed: ${messageOf(lastError)}`, { cause });
    }
  }
}
