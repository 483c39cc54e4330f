/**
 * The line-level AST: what the grammar produces, before instructions get their types.
 *
 * It mirrors BuildKit's `parser.Node` tree on purpose, because Docker's behaviour (the
 * `Node.Dump()` format, which words become which arguments, heredoc extraction) is defined on
 * that shape. Every node also carries a {@link SourceRange} so errors can point at the text.
 * The typed instruction model (`instructions.ts`) is built from these nodes.
 */
import type { SourceRange } from '../errors.js';

export type { Position, SourceRange } from '../errors.js';

/** A heredoc body attached to a RUN/COPY/ADD line (`<<EOF`, `<<-EOF`, `3<<"EOF"` …). */
export interface Heredoc {
  /** The delimiter word, quotes removed (`EOF`). */
  readonly name: string;
  /** The file descriptor before `<<` (`3<<EOF`); 0 when none was written. */
  readonly fileDescriptor: number;
  /** False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): the body is not expanded. */
  readonly expand: boolean;
  /** True for `<<-`: leading tabs are removed from the body (by the instruction layer, not here). */
  readonly chomp: boolean;
  /** The raw body, every line with its `\n`, tabs kept even when `chomp` is set. */
  readonly content: string;
}

/**
 * One argument of an instruction (BuildKit's `Next` chain, flattened to an array).
 * Only ONBUILD has an argument with `children`: the nested trigger instruction.
 */
export interface ArgNode {
  readonly value: string;
  readonly children: readonly InstructionNode[];
}

/** A warning the parser reports (e.g. an empty continuation line), as BuildKit does. */
export interface ParseWarning {
  /** BuildKit's short text, e.g. `Empty continuation line found in: RUN …`. */
  readonly short: string;
  readonly detail: readonly string[];
  readonly url: string;
  readonly range: SourceRange;
}

/** One instruction as written: keyword, flags, arguments, heredocs, position. */
export interface InstructionNode {
  /** The keyword exactly as written (`RUN`, `run`, `Run`). */
  readonly keyword: string;
  /** The `--flag[=value]` words in front of the arguments, quotes removed. */
  readonly flags: readonly string[];
  /** The arguments (BuildKit's Next chain). */
  readonly args: readonly ArgNode[];
  /** True when the arguments came from a JSON array (exec form). */
  readonly json: boolean;
  /** Heredoc bodies, in the order their `<<` words appear. */
  readonly heredocs: readonly Heredoc[];
  /** The logical line after continuation joining (BuildKit's `Original`). */
  readonly original: string;
  /** 1-based first and last physical line, heredoc bodies included. */
  readonly startLine: number;
  readonly endLine: number;
  /** The exact source span, continuations and heredoc bodies included. */
  readonly range: SourceRange;
  /** Comment lines directly above the instruction, `#` and one leading space removed. */
  readonly comments: readonly string[];
}

/** A parser directive from the leading comment block (`# syntax=`, `# escape=`, `# check=`). */
export interface Directive {
  readonly name: string;
  readonly value: string;
  readonly range: SourceRange;
}

/** The whole parsed file. */
export interface DockerfileAst {
  readonly instructions: readonly InstructionNode[];
  readonly directives: readonly Directive[];
  /** `\` or `` ` `` (from `# escape=`). */
  readonly escapeToken: '\\' | '`';
  readonly warnings: readonly ParseWarning[];
  /** First and last line of the file's instructions (BuildKit's root StartLine/EndLine). */
  readonly startLine: number;
  readonly endLine: number;
}
