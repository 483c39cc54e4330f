/**
 * Files in the build context that are neither regular files, directories nor symlinks.
 *
 * - Sockets are left out of the context, as docker's context tar leaves them out: a COPY never sees them, and
 *   naming one is "not found".
 * - Named pipes (FIFOs) and device nodes are refused with an error naming them. Reading a FIFO blocks until
 *   someone writes to it (kiln would hang), and a device's "content" is not a file's. BuildKit recreates them
 *   as special files in the image instead; kiln does not (a deliberate difference): exclude them with
 *   .dockerignore, or create them with RUN mkfifo / mknod.
 */
import { constants, type Stats } from 'node:fs';

const S_IFMT = 0o170000;

/** The kind of a special file, for messages; undefined for a regular file, directory or symlink. */
export function specialFileKind(stats: Pick<Stats, 'mode'>): 'socket' | 'named pipe' | 'character device' | 'block device' | undefined {
  switch (stats.mode & S_IFMT) {
    case constants.S_IFSOCK:
      return 'socket';
    case constants.S_IFIFO:
      return 'named pipe';
    case constants.S_IFCHR:
      return 'character device';
    case constants.S_IFBLK:
      return 'block device';
    default:
      return undefined;
  }
}

/**
 * What the context does with an entry at `rel`: `'skip'` for a socket (not part of the context), nothing for a
 * regular file, directory or symlink; throws for a named pipe or device node, naming it.
 */
export function checkContextEntry(rel: string, stats: Pick<Stats, 'mode'>): 'skip' | undefined {
  const kind = specialFileKind(stats);
  if (kind === undefined) return undefined;
  if (kind === 'socket') return 'skip';
  throw new Error(`"/${rel}" in the build context is a ${kind}: kiln copies only regular files, directories and symlinks (exclude it in .dockerignore)`);
}
