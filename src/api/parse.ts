/**
 * BuildKit's AST dump of a Dockerfile (what `kiln parse --format dump` prints); `parse` itself is the parser's.
 */
import { dumpAst } from '../parser/dump.js';
import type { ParseDockerfileOptions } from '../parser/index.js';
import { parseDockerfile } from '../parser/parse.js';

/**
 * The Dockerfile's line-level AST in BuildKit's dump format (`dockerfile/parser`'s `Node.Dump()`), one
 * instruction a line: `(from "busybox" "AS" "base")`.
 * @throws DockerfileError with the location of the first syntax error
 */
export function dumpDockerfile(text: string, options: ParseDockerfileOptions = {}): string {
  return dumpAst(parseDockerfile(text, { file: options.file ?? 'Dockerfile' }));
}
