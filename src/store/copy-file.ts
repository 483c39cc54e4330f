/**
 * Copying a regular file that someone else may be changing (a build-context file) without ever hanging.
 *
 * Why not fs.copyFile: without a reflink, libuv copies with sendfile(2) in a loop that expects the size the
 * file had when the copy started; a file truncated meanwhile makes sendfile return 0 forever, and the copy
 * spins a threadpool thread at full CPU (the process cannot even exit). Here a reflink is tried first (one
 * ioctl: atomic, no loop), else the bytes are read in chunks that stop at end of file: a file that shrank
 * fails with an error naming it.
 */
import { copyFile, open, rm } from 'node:fs/promises';
import { constants } from 'node:fs';
import { fileChunks } from './file-chunks.js';

/** Options of {@link copyRegularFile}. */
export interface CopyRegularFileOptions {
  /** The file's size when it was listed: the copy has exactly these bytes, or fails. */
  readonly size: number;
  /** How the file is named in errors (a context-relative path). @default the source path */
  readonly name?: string;
  /** Mode of a newly created target. @default 0o600 */
  readonly mode?: number;
  readonly signal?: AbortSignal | undefined;
}

const NO_REFLINK = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EINVAL', 'ENOSYS', 'ENOTTY', 'EBADF', 'EPERM']);

/**
 * Copies `src` to `target` (created, or truncated when it exists): a reflink where the filesystem has them,
 * else a chunked copy of exactly `size` bytes. Throws `<name> changed while it was being copied` when the file
 * ends early; never follows a symlink at `src`.
 */
export async function copyRegularFile(src: string, target: string, options: CopyRegularFileOptions): Promise<void> {
  const { size, signal } = options;
  const name = options.name ?? src;
  signal?.throwIfAborted();
  try {
    await copyFile(src, target, constants.COPYFILE_FICLONE_FORCE);
    return;
  } catch (err) {
    if (!NO_REFLINK.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  }
  const out = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, options.mode ?? 0o600);
  try {
    const shrank = (): Error => new Error(`${name} changed while it was being copied (it is shorter than the ${String(size)} bytes it had)`);
    // fileChunks opens with O_RDONLY: the callers have checked `src` is a regular file (a FIFO would block here).
    for await (const chunk of fileChunks(src, size, shrank, { reuse: true, signal })) {
      let off = 0;
      while (off < chunk.length) off += (await out.write(chunk, off, chunk.length - off)).bytesWritten;
    }
  } catch (err) {
    await out.close().catch(() => undefined);
    await rm(target, { force: true });
    throw err;
  }
  await out.close();
}
