/**
 * WORKDIR's filesystem side: whether the directory is already in the stage's layers, and making it (with the
 * directories above it) in a step's upperdir, owned as BuildKit's mkdir file-op owns them.
 */
import { chown, lstat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '../../oci/types.js';
import type { LayerStoreApi } from '../../store/types.js';
import { lowerDirsOf, prepareDirectWrite, withMergedRootfs, type StepDirs } from '../step-layer.js';
import { fileOpOwner, resolveInRoot } from '../user.js';

/**
 * Whether a directory exists in a stage's filesystem: its layers `diffIds` (bottom-most first) under the still-pending
 * upperdir `pendingDir`, if any. Overlay rules: the top-most layer that has the path wins; a whiteout or file on the
 * way in a higher layer hides it. Directories made opaque above are not looked at.
 */
export async function directoryInLayers(
  store: LayerStoreApi,
  diffIds: readonly Digest[],
  pendingDir: string | undefined,
  containerPath: string,
  signal?: AbortSignal,
): Promise<boolean> {
  if (diffIds.length === 0 && pendingDir === undefined) return containerPath === '/';
  // A pending step's upperdir is the top-most layer (a whiteout there is a character device: not a directory).
  const lowers = [...(pendingDir !== undefined ? [pendingDir] : []), ...(await lowerDirsOf(store, diffIds, signal))];
  const parts = containerPath.split('/').filter((p) => p !== '');
  for (const dir of lowers) {
    let prefix = dir;
    for (const [i, part] of parts.entries()) {
      prefix = path.join(prefix, part);
      const st = await lstat(prefix).catch(() => undefined);
      if (st === undefined) break; // this layer says nothing about the path: look below
      if (!st.isDirectory()) return false; // a whiteout, file or symlink here hides (or redirects) what is below
      if (i === parts.length - 1) return true;
    }
  }
  return false;
}

/** Who owns the directories a WORKDIR makes: root (undefined), ids, or a user name looked up in the stage's /etc/passwd. */
export type DirectoryOwner = { readonly uid: number; readonly gid: number } | { readonly user: string } | undefined;

/** Makes `containerPath` (0755, parents included) in the step's filesystem, owned by `owner`. */
export async function makeDirectory(dirs: StepDirs, containerPath: string, owner: DirectoryOwner, signal?: AbortSignal): Promise<void> {
  // Straight into the upperdir when no lower symlink or file is in the way (no overlay mount needed).
  if ((owner === undefined || !('user' in owner)) && (await prepareDirectWrite(dirs, containerPath, false))) {
    const target = path.join(dirs.upperDir, containerPath);
    await chownCreated(await mkdir(target, { recursive: true, mode: 0o755 }), target, owner);
    return;
  }
  await withMergedRootfs(dirs, signal, async (rootfs) => {
    const host = await resolveInRoot(rootfs, containerPath);
    // BuildKit's file-op owner rules: an unknown name is 0:0, an unknown group name keeps the gid (no error).
    const ids = owner !== undefined && 'user' in owner ? await fileOpOwner(rootfs, owner.user) : owner;
    await chownCreated(await mkdir(host, { recursive: true, mode: 0o755 }), host, ids);
  });
}

/** Gives `owner` the directories a recursive mkdir made: `first` (what mkdir returned) down to `target`. */
async function chownCreated(first: string | undefined, target: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
  if (first === undefined || owner === undefined) return;
  for (let p = target; ; p = path.dirname(p)) {
    await chown(p, owner.uid, owner.gid);
    if (p === first || p === path.dirname(p)) break;
  }
}
