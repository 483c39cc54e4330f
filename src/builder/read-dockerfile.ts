/**
 * Reads the Dockerfile without trusting what the path names: a context may hold a `Dockerfile` that is a
 * named pipe (reading it would block forever) or a symlink to /dev/zero (it would never end). Only a regular
 * file of at most {@link MAX_DOCKERFILE_BYTES} is read; the parser reports the size limit with the same words.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { MAX_DOCKERFILE_BYTES } from '../parser/parse.js';

/** The Dockerfile's text. Throws a plain Error (the caller adds "failed to read dockerfile: FILE: ") when it is not a regular file or is too big. */
export function readDockerfile(file: string): string {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`not a regular file`);
    if (st.size > MAX_DOCKERFILE_BYTES) {
      throw new Error(`${(st.size / (1 << 20)).toFixed(1)} MiB, over kiln's limit of ${MAX_DOCKERFILE_BYTES >> 20} MiB for a Dockerfile`);
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}
