/**
 * The moo lexer for Dockerfiles, and the token source the nearley grammar reads.
 *
 * BuildKit's parser is line-oriented, and nearley is an Earley parser, so tokens are coarse:
 * - `trivia`: a run of blank and comment lines between instructions;
 * - `instr`: a one-line instruction;
 * - `contInstr`: an instruction with continuation lines (a line ending in the escape token, then
 *   continuing, comment and blank lines, then the last line), as one token.
 * The token source adds `directives` (the leading directive block, found by the caller) and
 * `heredoc` tokens (one per heredoc body, terminator line included), which moo cannot find on its
 * own because the delimiters come from the logical line just read.
 */
import { createRequire } from 'node:module';
import type * as Moo from 'moo';

// moo is CommonJS: loaded with require, because an ESM import of a CommonJS package first sets up Node's
// CJS-to-ESM translator, ~15 ms more here on every build that has to parse (measured 18-26 ms against 4-6).
// Required when the first lexer is made, not when this module loads: the package root (src/index.ts) loads the
// parser's modules, and a cached build, which reads its parse back (src/builder/parse-cache.ts), never lexes.
const requireMoo = (): typeof Moo => createRequire(import.meta.url)('moo') as typeof Moo;

// Go's unicode.IsSpace minus \n: BuildKit left-trims lines with it.
const WS = '[\\t\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const EOL = '(?:\\n|(?![^]))';

function rules(escapeToken: '\\' | '`'): Moo.Rules {
  const e = escapeToken === '\\' ? '\\\\' : '`';
  // A line that continues: BuildKit's `([^E])E[ \t]*$` or `^E[ \t]*$`, on the line without \r\n.
  const continues = `(?:[^\\n]*[^${e}\\n]${e}[ \\t]*\\r*${EOL}|${WS}*${e}[ \\t]*\\r*${EOL})`;
  const commentLine = `${WS}*#[^\\n]*${EOL}`;
  const blankLine = `(?:${WS}*\\n|${WS}+(?![^]))`;
  return {
    // Runs of blank and comment lines between instructions (comments are told apart later).
    trivia: { match: new RegExp(`(?:${blankLine}|${commentLine})+`), lineBreaks: true },
    // An instruction with continuation lines: a continuing line, then continuing, comment and
    // blank lines, then the last line (absent when the file ends inside the continuation).
    contInstr: {
      match: new RegExp(`${continues}(?:${commentLine}|${blankLine}|${continues})*(?:[^\\n]+${EOL})?`),
      lineBreaks: true,
    },
    instr: { match: new RegExp(`[^\\n]+${EOL}`), lineBreaks: true },
  };
}

const cache = new Map<string, Moo.Lexer>();

/** The moo lexer for one escape token (`\` or `` ` ``); built once per token and reused. */
export function makeLexer(escapeToken: '\\' | '`'): Moo.Lexer {
  let lexer = cache.get(escapeToken);
  if (!lexer) {
    const r = rules(escapeToken);
    // One state: heredoc bodies are read by the token source, which knows their delimiters.
    lexer = requireMoo().states({ main: r }, 'main');
    cache.set(escapeToken, lexer);
  }
  return lexer;
}

/** A heredoc the token source should read after the current logical line. */
export interface HeredocRequest {
  readonly name: string;
  readonly chomp: boolean;
}

/** A token of the Dockerfile token source: a moo token plus what the source attached. */
export interface DockerfileToken extends Moo.Token {
  /** On the first token of an instruction: whatever `onLogicalLine` returned as `node`. */
  node?: unknown;
  /** On an instruction token: whether a blank line was skipped inside its continuation. */
  emptyContinuation?: boolean;
  /** On `heredoc` tokens: the body (every line with its line break), terminator excluded. */
  content?: string;
  /** On `heredoc` tokens: the index of the heredoc within its instruction. */
  heredocIndex?: number;
}

/** Thrown by the token source; `parse.ts` turns it into a DockerfileError. */
export class TokenSourceError extends Error {
  readonly startLine: number;
  readonly endLine: number;
  constructor(message: string, startLine: number, endLine: number, options?: ErrorOptions) {
    super(message, options);
    this.startLine = startLine;
    this.endLine = endLine;
  }
}

/** What the caller decides about a logical line once it is complete. */
export interface LogicalLineResult {
  /** Attached to the instruction's first token as `node`. */
  readonly node: unknown;
  /** Heredocs to read next, in order. */
  readonly heredocs: readonly HeredocRequest[];
}

/** Options of {@link DockerfileTokenSource}. */
export interface TokenSourceOptions {
  readonly escapeToken: '\\' | '`';
  /** Offset where the directive block ends (0 when there is none); emitted as one `directives` token. */
  readonly directivesEnd: number;
  /** Number of lines in the directive block. */
  readonly directiveLines: number;
  /** Called with each logical line (continuations joined, as BuildKit does). */
  readonly onLogicalLine: (line: string, startLine: number, endLine: number) => LogicalLineResult;
}

function trimNewline(s: string): string {
  let b = s.length;
  while (b > 0) {
    const c = s.charCodeAt(b - 1);
    if (c !== 10 && c !== 13) break;
    b--;
  }
  return b === s.length ? s : s.slice(0, b);
}

function isGoSpaceCode(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  return c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
}

/** The index of the first non-space char of `s[start, end)` (`end` when there is none). */
function trimLeftFrom(s: string, start: number, end: number): number {
  let a = start;
  while (a < end && isGoSpaceCode(s.charCodeAt(a))) a++;
  return a;
}

/**
 * `s[start, end)` without a continuation mark: BuildKit removes `E[ \t]*$` (E the escape token)
 * when E is the whole line or follows a char other than E; the char before is kept.
 */
function stripContinuation(s: string, start: number, end: number, esc: number): string {
  let b = end;
  while (b > start && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  if (b > start && s.charCodeAt(b - 1) === esc && (b - 1 === start || s.charCodeAt(b - 2) !== esc)) end = b - 1;
  return s.slice(start, end);
}

function trimLeft(s: string): string {
  let a = 0;
  while (a < s.length && isGoSpaceCode(s.charCodeAt(a))) a++;
  return a === 0 ? s : s.slice(a);
}

/**
 * Whether `s[start, end)` is the heredoc terminator `name`: the line without its line break
 * (every trailing \r and \n), and without its leading tabs for `<<-`.
 */
function isTerminator(s: string, start: number, end: number, name: string, chomp: boolean): boolean {
  let b = end;
  while (b > start && (s.charCodeAt(b - 1) === 10 || s.charCodeAt(b - 1) === 13)) b--;
  let a = start;
  if (chomp) while (a < b && s.charCodeAt(a) === 9) a++;
  return b - a === name.length && s.startsWith(name, a);
}

/**
 * A nearley-compatible token source: moo's line tokens, plus `directives` and `heredoc` tokens.
 * It joins continuation lines into the logical line (the escape token and trailing blanks
 * removed, the char before kept), asks `onLogicalLine` what it means, and then reads the
 * heredoc bodies that line opened.
 */
export class DockerfileTokenSource {
  readonly #moo: Moo.Lexer;
  readonly #options: TokenSourceOptions;
  /** The escape token's char code. */
  readonly #escape: number;
  /** The last error this source threw (nearley wraps lexer errors, losing the class). */
  lastError: TokenSourceError | undefined;
  #text = '';
  #queue: DockerfileToken[] = [];
  #started = false;
  // The logical line being read.
  #first: DockerfileToken | undefined;
  #line = '';
  #emptyContinuation = false;

  constructor(options: TokenSourceOptions) {
    this.#options = options;
    this.#moo = makeLexer(options.escapeToken);
    this.#escape = options.escapeToken.charCodeAt(0);
  }

  /** nearley calls this once per `feed`; kiln feeds the whole text at once. */
  reset(chunk: string, _state?: unknown): void {
    this.#text = chunk;
    this.lastError = undefined;
    this.#moo.reset(chunk);
    this.#queue = [];
    this.#started = false;
    this.#first = undefined;
    this.#line = '';
    this.#emptyContinuation = false;
  }

  save(): Moo.LexerState {
    return this.#moo.save();
  }

  has(_name: string): boolean {
    return true;
  }

  formatError(token: unknown, message = 'invalid syntax'): string {
    const t = token as { line?: number; col?: number } | undefined;
    return t?.line !== undefined ? `${message} at line ${t.line} col ${t.col ?? 1}` : `${message} at end of input`;
  }

  /**
   * The tokens of the next top-level unit (the grammar's `unit`): the directive block, a trivia
   * run, or an instruction with the heredoc tokens that follow it; undefined at end of input.
   */
  nextUnit(): DockerfileToken[] | undefined {
    const tok = this.next();
    if (tok === undefined) return undefined;
    if (this.#queue.length === 0) return [tok];
    const unit = [tok, ...this.#queue];
    this.#queue = [];
    return unit;
  }

  next(): DockerfileToken | undefined {
    if (this.#queue.length > 0) return this.#queue.shift();
    if (!this.#started) {
      this.#started = true;
      const { directivesEnd, directiveLines } = this.#options;
      if (directivesEnd > 0) {
        const value = this.#text.slice(0, directivesEnd);
        const tok: DockerfileToken = {
          type: 'directives', value, text: value, offset: 0, lineBreaks: directiveLines, line: 1, col: 1,
          toString: () => value,
        };
        this.#seek(directivesEnd, directiveLines + 1);
        return tok;
      }
    }
    const tok = this.#moo.next() as DockerfileToken | undefined;
    if (!tok) return undefined;
    if (tok.type === 'instr') {
      this.#first = tok;
      this.#line = trimLeft(trimNewline(tok.text));
      this.#endLogicalLine(tok, tok.line);
    } else if (tok.type === 'contInstr') {
      this.#first = tok;
      this.#joinContinuation(tok.text);
      this.#endLogicalLine(tok, tok.line + tok.lineBreaks - (tok.text.endsWith('\n') ? 1 : 0));
    }
    // Heredoc tokens queued by #endLogicalLine come after this one.
    return tok;
  }

  /**
   * Joins an instruction's physical lines as BuildKit does: the first line left-trimmed, comment
   * lines and blank lines skipped (a blank one is remembered for the warning), the escape token
   * and trailing blanks removed from each continuing line.
   */
  #joinContinuation(text: string): void {
    const esc = this.#escape;
    let pos = 0;
    let first = true;
    let line = '';
    while (pos < text.length) {
      const nl = text.indexOf('\n', pos);
      let end = nl < 0 ? text.length : nl;
      const start = pos;
      pos = end + 1;
      while (end > start && (text.charCodeAt(end - 1) === 13 || text.charCodeAt(end - 1) === 10)) end--;
      if (first) {
        first = false;
        line = stripContinuation(text, trimLeftFrom(text, start, end), end, esc);
        continue;
      }
      const left = trimLeftFrom(text, start, end);
      if (left === end) {
        this.#emptyContinuation = true;
        continue;
      }
      if (text.charCodeAt(left) === 0x23) continue; // a comment line inside the continuation
      line += stripContinuation(text, start, end, esc);
    }
    this.#line = line;
  }

  /** The 1-based line of the last physical line consumed. */
  #currentLine(): number {
    const m = this.#moo as unknown as { line: number; col: number };
    return m.col === 1 ? m.line - 1 : m.line;
  }

  #seek(offset: number, line: number): void {
    const m = this.#moo as unknown as { index: number; line: number; col: number };
    m.index = offset;
    m.line = line;
    m.col = 1;
  }

  #throw(err: TokenSourceError): never {
    this.lastError = err;
    throw err;
  }

  /** Ends the logical line; `last` is its last line token (undefined at end of input). */
  #endLogicalLine(last: DockerfileToken | undefined, endLine: number): void {
    const first = this.#first!;
    this.#first = undefined;
    let result: LogicalLineResult;
    try {
      result = this.#options.onLogicalLine(this.#line, first.line, endLine);
    } catch (err) {
      this.#throw(err instanceof TokenSourceError ? err : new TokenSourceError(String(err), first.line, endLine, { cause: err }));
    }
    first.node = result.node;
    const target = last ?? first;
    target.emptyContinuation = this.#emptyContinuation;
    this.#emptyContinuation = false;
    if (result.heredocs.length === 0) return;
    // Read the bodies: raw lines until a line equal to the name (leading tabs removed for <<-).
    const text = this.#text;
    const m = this.#moo as unknown as { index: number; line: number; col: number };
    let pos = m.index;
    let line = this.#currentLine() + 1;
    const pending: DockerfileToken[] = [];
    result.heredocs.forEach((h, heredocIndex) => {
      const start = pos;
      const startLine = line;
      let bodyEnd = -1; // the body is every line before the terminator, line breaks included
      while (pos < text.length) {
        const nl = text.indexOf('\n', pos);
        const end = nl < 0 ? text.length : nl + 1;
        const lineStart = pos;
        pos = end;
        line++;
        if (isTerminator(text, lineStart, end, h.name, h.chomp)) {
          bodyEnd = lineStart;
          break;
        }
      }
      if (bodyEnd < 0) this.#throw(new TokenSourceError('unterminated heredoc', first.line, line - 1));
      const content = text.slice(start, bodyEnd);
      const value = text.slice(start, pos);
      pending.push({
        type: 'heredoc', value, text: value, offset: start, lineBreaks: line - startLine, line: startLine, col: 1,
        content, heredocIndex, toString: () => value,
      });
    });
    this.#seek(pos, line);
    this.#queue.push(...pending);
  }
}
