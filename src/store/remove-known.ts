/**
 * Removes a directory whose leftover entries are known: unlinks the files and removes the (then empty) directories
 * named, deepest first as given, then the directory itself. About one syscall an entry, where Node's recursive
 * `rmSync` (a JavaScript rimraf: lstat, readdir and retries per entry) costs ~1-2 ms of the main thread, paid
 * on every RUN step for its bundle and its scratch directory. Whatever else turns up (a directory that is not
 * empty) is removed recursively after all.
 */
import { rmdirSync, rmSync, unlinkSync } from 'node:fs';
import path from 'node:path';

export function removeKnown(dir: string, files: readonly string[], dirs: readonly string[]): void {
  for (const f of files) {
    try {
      unlinkSync(path.join(dir, f));
    } catch {
      // absent, or not a file: the fallback below sees to it
    }
  }
  try {
    for (const d of dirs) {
      try {
        rmdirSync(path.join(dir, d));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    rmSync(dir, { recursive: true, force: true });
  }
}
