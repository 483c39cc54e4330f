/**
 * The host side of a `RUN --mount=type=bind`: what kind of thing the source is, and for a `rw` bind a private
 * copy-on-write view of it, so the step's writes never reach the build context or another stage.
 */
import { chmod, lstat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { copyRegularFile } from '../store/copy-file.js';
import type { OverlayCapabilities } from './overlay.js';

/** What a bind source on the host is; undefined when it does not exist. */
export async function bindSourceKind(source: string): Promise<'dir' | 'file' | 'other' | undefined> {
  const st = await lstat(source).catch(() => undefined);
  if (st === undefined) return undefined;
  return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
}

/** A writable stand-in for a bind source; `release()` undoes what it mounted. */
export interface WritableBind {
  readonly source: string;
  release(): Promise<void>;
}

/**
 * A private writable view of `source` under `dir` (a fresh path in the step's scratch directory): an overlay over
 * a directory, a copy of a single file (a bind of the file itself would write through). `overlay`: the build's
 * Host.overlay.
 */
export async function writableBind(source: string, kind: 'dir' | 'file', dir: string, overlay?: OverlayCapabilities): Promise<WritableBind> {
  if (kind === 'dir') {
    await mkdir(path.join(dir, 'upper'), { recursive: true });
    await mkdir(path.join(dir, 'work'));
    await mkdir(path.join(dir, 'merged'));
    const { mountOverlay } = await import('./overlay.js');
    const mnt = await mountOverlay({ lowerDirs: [source], upperDir: path.join(dir, 'upper'), workDir: path.join(dir, 'work'), target: path.join(dir, 'merged'), ...(overlay ? { capabilities: overlay } : {}) });
    return { source: path.join(dir, 'merged'), release: () => mnt.unmount() };
  }
  await mkdir(dir, { recursive: true });
  const copy = path.join(dir, 'file');
  const st = await lstat(source);
  // Not fs.copyFile, which spins forever on a file truncated meanwhile (see store/copy-file.ts).
  await copyRegularFile(source, copy, { size: st.size });
  await chmod(copy, st.mode & 0o7777);
  return { source: copy, release: async () => undefined };
}
