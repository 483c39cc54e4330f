/**
 * A filtered view of a host directory for a bind mount: the directory as it is, minus the paths the build must
 * not see (what .dockerignore leaves out of a build context). In docker an ignored file is not in the context
 * at all, so a `RUN --mount=type=bind` of the context must not show it, whatever path or symlink the step uses.
 *
 * The view is an overlay whose lower layers are a small tree of whiteouts (0/0 character devices, one per
 * top-most hidden path, inside copies of their parent directories) over the directory itself; its cost is
 * proportional to the number of hidden paths, not to the size of the directory, and nothing is copied or linked
 * (a hard link would change the context files' ctime, which the context's digest cache watches). Writes land in
 * a throwaway upperdir, so the same view serves read-only and `rw` binds.
 */
import { chmod, chown, lstat, mkdir } from 'node:fs/promises';
import type { OverlayCapabilities } from './overlay.js';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import { nativeSys } from '../native/sys.js';
import { mountOverlay } from './overlay.js';

export interface FilteredView {
  /** The directory to bind. */
  readonly dir: string;
  /** Unmounts the view. */
  release(): Promise<void>;
}

/**
 * Mounts `source` minus `hidden` (paths relative to it, none of them a parent of another) under `scratch`,
 * a fresh directory on the store's filesystem.
 */
export async function mountFilteredView(source: string, hidden: readonly string[], scratch: string, signal?: AbortSignal, capabilities?: OverlayCapabilities): Promise<FilteredView> {
  const whiteouts = path.join(scratch, 'hide');
  await mkdir(whiteouts, { recursive: true });
  await mkdir(path.join(scratch, 'upper'));
  await mkdir(path.join(scratch, 'work'));
  await mkdir(path.join(scratch, 'merged'));
  // Parent directories in the whiteout layer carry the real directories' owner and mode: the top-most layer
  // that holds a directory gives the merged directory its attributes.
  const made = new Set<string>(['']);
  const ensureDir = async (rel: string): Promise<void> => {
    if (made.has(rel)) return;
    await ensureDir(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel));
    const st = await lstat(path.join(source, rel));
    const at = path.join(whiteouts, rel);
    await mkdir(at, { mode: st.mode & 0o7777 });
    await chown(at, st.uid, st.gid);
    made.add(rel);
  };
  const nodes: string[] = [];
  for (const rel of hidden) {
    const parent = path.posix.dirname(rel);
    await ensureDir(parent === '.' ? '' : parent);
    nodes.push(path.join(whiteouts, rel));
  }
  const sys = nativeSys();
  if (sys !== undefined) for (const node of nodes) sys.mknod(node, fsConstants.S_IFCHR | 0o600, 0, 0);
  else if (nodes.length > 0) {
    const { execa } = await import('execa');
    await execa('sh', ['-c', 'for p; do mknod -m 600 -- "$p" c 0 0 || exit 1; done', 'sh', ...nodes], signal ? { cancelSignal: signal } : {});
  }
  const root = await lstat(source);
  await chown(whiteouts, root.uid, root.gid);
  await chmod(whiteouts, root.mode & 0o7777);
  const mount = await mountOverlay({
    lowerDirs: [whiteouts, source],
    upperDir: path.join(scratch, 'upper'),
    workDir: path.join(scratch, 'work'),
    target: path.join(scratch, 'merged'),
    ...(capabilities ? { capabilities } : {}),
    ...(signal ? { signal } : {}),
  });
  return { dir: path.join(scratch, 'merged'), release: () => mount.unmount() };
}
