/**
 * `COPY --parents`: each selected path keeps its directories under the destination (`a/b/f` → `dest/a/b/f`). A `/./`
 * in the source marks where the kept part starts (`x/./a/f` → `dest/a/f`), as in BuildKit.
 */
import path from 'node:path';
import { copyIntoRootfs, type CopyRequest, type CopySource } from './copy.js';

/** Copies `entries` (what `source` selected) into `rootfs` below `dest`, each at its kept path. */
export async function copyWithParents(
  rootfs: string,
  source: string,
  entries: readonly CopySource[],
  dest: string,
  common: Omit<CopyRequest, 'sources' | 'dest'>,
): Promise<void> {
  const pivot = source.indexOf('/./');
  const prefix = pivot < 0 ? '' : path.posix.normalize(`/${source.slice(0, pivot)}`).replace(/^\/+/, '');
  for (const e of entries) {
    let keep = e.rel.replace(/^\/+/, '');
    if (prefix && (keep === prefix || keep.startsWith(`${prefix}/`))) keep = keep.slice(prefix.length + 1);
    const target = keep === '' ? dest : path.posix.join(dest, keep) + (e.type === 'dir' ? '/' : '');
    await copyIntoRootfs(rootfs, { ...common, sources: [e], dest: target });
  }
}
