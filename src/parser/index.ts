/**
 * The parser's entry point: Dockerfile text → line-level AST → typed instructions.
 */
import type { Directive, DockerfileAst, ParseWarning } from './ast.js';
import { toInstructions, type Instruction } from './instructions.js';
import { parseDockerfile } from './parse.js';

/** A parsed Dockerfile: the line-level AST and the typed instructions. */
export interface Dockerfile {
  /** The file name used in error locations. */
  readonly file: string;
  readonly ast: DockerfileAst;
  readonly instructions: readonly Instruction[];
  readonly directives: readonly Directive[];
  readonly escapeToken: '\\' | '`';
  readonly warnings: readonly ParseWarning[];
}

/** Options of {@link parse}. */
export interface ParseDockerfileOptions {
  /**
   * The file name used in error locations.
   * @default 'Dockerfile'
   */
  readonly file?: string;
}

/**
 * Parses Dockerfile text into typed instructions (words unexpanded).
 * @throws DockerfileError with the location of the first syntax or instruction error
 */
export function parse(text: string, options: ParseDockerfileOptions = {}): Dockerfile {
  const file = options.file ?? 'Dockerfile';
  const ast = parseDockerfile(text, { file });
  return {
    file,
    ast,
    instructions: toInstructions(ast, file),
    directives: ast.directives,
    escapeToken: ast.escapeToken,
    warnings: ast.warnings,
  };
}
