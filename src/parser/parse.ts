/**
 * `parseDockerfile`: Dockerfile text → the line-level {@link DockerfileAst}, with BuildKit's
 * rules for directives, continuations, comments, heredocs and argument splitting.
 */
import { createRequire } from 'node:module';
import type * as Nearley from 'nearley';
import grammar from '../../grammar/dockerfile.generated.js';
import type { InstructionItem, Item } from '../../grammar/dockerfile.generated.js';
import { DockerfileTokenSource, TokenSourceError, type DockerfileToken } from '../../grammar/lexer.js';
import { DockerfileError, messageOf, type Position, type SourceRange } from '../errors.js';
import type { ArgNode, Directive, DockerfileAst, Heredoc, InstructionNode, ParseWarning } from './ast.js';
import { DirectiveParser, escapeTokenOf } from './directives.js';
import { heredocsFromLine, type HeredocSpec } from './heredoc.js';
import { canContainHeredoc, parseLine, type LineNode } from './line-parsers.js';
import { trimLeftSpace, trimSpace } from './go-strings.js';

/** `make`'s result, made on the first call. */
function once<T>(make: () => T): () => T {
  let made: { readonly value: T } | undefined;
  return () => (made ??= { value: make() }).value;
}

/**
 * nearley's parser and the grammar with `unit` as its start rule (see grammar/dockerfile.ne), made on the first
 * parse. nearley is CommonJS: required, not imported (see grammar/lexer.ts for why), and not when this module
 * loads: the package root (src/index.ts) loads it, and a cached build never parses (src/builder/parse-cache.ts).
 */
const nearleyUnitParser = once(() => {
  const nearley = createRequire(import.meta.url)('nearley') as typeof Nearley;
  return { Parser: nearley.Parser, unitGrammar: nearley.Grammar.fromCompiled({ ...grammar, ParserStart: 'unit' }) };
});

/** Options of {@link parseDockerfile}. */
export interface ParseOptions {
  /** The file name errors and warnings name. @default 'Dockerfile' */
  readonly file?: string;
}

/** BuildKit's limit: bufio.Scanner's 64 KiB buffer, line break included. */
export const MAX_LINE_BYTES = 65535;

/**
 * kiln's limit on a Dockerfile's size (UTF-8 bytes). BuildKit sets none; real Dockerfiles are a few KiB (the
 * largest seen in the wild are a few hundred), and the parser's time and memory grow with the input, so a
 * bigger file is refused at once with an error rather than parsed for minutes.
 */
export const MAX_DOCKERFILE_BYTES = 2 * 1024 * 1024;

/** The UTF-8 size of `text` when it is over {@link MAX_DOCKERFILE_BYTES}, else undefined (cheap for small texts). */
function oversize(text: string): number | undefined {
  if (text.length * 3 <= MAX_DOCKERFILE_BYTES) return undefined;
  const bytes = Buffer.byteLength(text, 'utf8');
  return bytes > MAX_DOCKERFILE_BYTES ? bytes : undefined;
}

/** Hands nearley the tokens of one unit, which the {@link DockerfileTokenSource} already read. */
class UnitLexer {
  #tokens: readonly DockerfileToken[] = [];
  #next = 0;
  load(tokens: readonly DockerfileToken[]): void {
    this.#tokens = tokens;
    this.#next = 0;
  }
  reset(_chunk: string, _state?: unknown): void {
    this.#next = 0;
  }
  next(): DockerfileToken | undefined {
    return this.#tokens[this.#next++];
  }
  save(): Record<string, never> {
    return {};
  }
  has(_name: string): boolean {
    return true;
  }
  formatError(token: unknown, message = 'invalid syntax'): string {
    const t = token as { line?: number; col?: number } | undefined;
    return t?.line !== undefined ? `${message} at line ${t.line} col ${t.col ?? 1}` : `${message} at end of input`;
  }
}

/**
 * Updates the comment block above the next instruction with a trivia run: BuildKit drops the
 * first byte of a comment line (the `#` when it is not indented) and trims it; an empty comment
 * line clears the block; blank lines do not.
 */
function triviaComments(text: string, comments: string[]): string[] {
  let out = comments;
  let pos = 0;
  while (pos <= text.length) {
    const nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl;
    const raw = text.slice(pos, end);
    pos = end + 1;
    if (trimLeftSpace(raw).charCodeAt(0) !== 0x23) continue; // a blank line
    const c = trimSpace(raw.slice(1));
    if (c === '') out = [];
    else out.push(c);
  }
  return out;
}

interface LogicalLine {
  readonly line: LineNode;
  readonly heredocs: readonly HeredocSpec[];
}

/** Offsets and positions in the text after a BOM was removed (`base` = 1 then). */
class Locator {
  readonly #text: string;
  readonly #base: number;
  #lineStarts: number[] | undefined;
  constructor(text: string, base: number) {
    this.#text = text;
    this.#base = base;
  }
  #starts(): number[] {
    if (!this.#lineStarts) {
      const s = [0];
      for (let i = this.#text.indexOf('\n'); i >= 0; i = this.#text.indexOf('\n', i + 1)) s.push(i + 1);
      this.#lineStarts = s;
    }
    return this.#lineStarts;
  }
  /** The range of whole lines `first..last` (1-based), line breaks excluded. */
  lines(first: number, last: number): SourceRange {
    const starts = this.#starts();
    const clamp = (l: number): number => Math.min(Math.max(l, 1), starts.length);
    const a = clamp(first);
    const b = clamp(Math.max(last, first));
    const so = starts[a - 1]!;
    const bo = starts[b - 1]!;
    let eo = b < starts.length ? starts[b]! - 1 : this.#text.length;
    if (eo < bo) eo = bo;
    return {
      start: { offset: so + this.#base, line: a, column: 1 },
      end: { offset: eo + this.#base, line: b, column: eo - bo + 1 },
    };
  }
  start(tok: DockerfileToken): Position {
    return { offset: tok.offset + this.#base, line: tok.line, column: tok.col };
  }
  /** The position after a token's last char, its final line break excluded. */
  end(tok: DockerfileToken): Position {
    const text = tok.text;
    const nl = text.endsWith('\n') ? 1 : 0;
    const len = text.length - nl;
    const last = text.lastIndexOf('\n', len - 1);
    return {
      offset: tok.offset + this.#base + len,
      line: tok.line + tok.lineBreaks - nl,
      column: last < 0 ? tok.col + len : len - last,
    };
  }
  eof(): Position {
    const starts = this.#starts();
    const lastStart = starts[starts.length - 1]!;
    return { offset: this.#text.length + this.#base, line: starts.length, column: this.#text.length - lastStart + 1 };
  }
}

function trimNewline(s: string): string {
  let b = s.length;
  while (b > 0 && (s.charCodeAt(b - 1) === 10 || s.charCodeAt(b - 1) === 13)) b--;
  return s.slice(0, b);
}

/** Finds the first physical line longer than {@link MAX_LINE_BYTES} UTF-8 bytes. */
function findLongLine(text: string): { offset: number; line: number } | undefined {
  if (text.length <= MAX_LINE_BYTES / 3) return undefined;
  let start = 0;
  let line = 1;
  while (start <= text.length) {
    const nl = text.indexOf('\n', start);
    const end = nl < 0 ? text.length : nl;
    if (end - start > MAX_LINE_BYTES / 3 && Buffer.byteLength(text.slice(start, end), 'utf8') > MAX_LINE_BYTES) {
      return { offset: start, line };
    }
    if (nl < 0) break;
    start = nl + 1;
    line++;
  }
  return undefined;
}

/**
 * Parses Dockerfile text into the line-level AST. Throws {@link DockerfileError} (with the file
 * and a range) for every error BuildKit's parser reports.
 */
export function parseDockerfile(text: string, options: ParseOptions = {}): DockerfileAst {
  const file = options.file ?? 'Dockerfile';
  const base = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let body = base ? text.slice(1) : text;
  const loc = new Locator(body, base);
  const fail = (message: string, range: SourceRange, cause?: unknown): never => {
    throw new DockerfileError(message, file, range, cause === undefined ? undefined : { cause });
  };
  const size = oversize(text);
  if (size !== undefined) {
    const start = { offset: 0, line: 1, column: 1 };
    fail(`${file} is ${size > 1 << 20 ? `${(size / (1 << 20)).toFixed(1)} MiB` : `${size} bytes`}, over kiln's limit of ${MAX_DOCKERFILE_BYTES >> 20} MiB for a Dockerfile`, { start, end: start });
  }

  // A line over the limit stops BuildKit's scanner there: what came before is parsed first.
  const long = findLongLine(body);
  if (long) body = body.slice(0, long.offset);

  // The leading directive block (BuildKit checks each left-trimmed line until one is not a directive).
  const directives: Directive[] = [];
  let escapeToken: '\\' | '`' = '\\';
  let directivesEnd = 0;
  let directiveLines = 0;
  {
    const parser = new DirectiveParser();
    let pos = 0;
    while (pos < body.length) {
      const nl = body.indexOf('\n', pos);
      const end = nl < 0 ? body.length : nl + 1;
      const lineNo = directiveLines + 1;
      let found;
      try {
        found = parser.parseLine(trimLeftSpace(trimNewline(body.slice(pos, end))));
        if (found?.name === 'escape') escapeToken = escapeTokenOf(found.value);
      } catch (err) {
        fail(messageOf(err), loc.lines(lineNo, lineNo), err);
      }
      if (!found) break;
      directives.push({ name: found.name, value: found.value, range: loc.lines(lineNo, lineNo) });
      pos = end;
      directiveLines++;
      directivesEnd = end;
    }
  }

  const lexer = new DockerfileTokenSource({
    escapeToken,
    directivesEnd,
    directiveLines,
    onLogicalLine: (line, startLine, endLine): { node: LogicalLine; heredocs: HeredocSpec[] } => {
      try {
        const node = parseLine(line, escapeToken);
        const heredocs = canContainHeredoc(node) && line.includes('<<') ? heredocsFromLine(line) : [];
        return { node: { line: node, heredocs }, heredocs };
      } catch (err) {
        throw new TokenSourceError(messageOf(err), startLine, endLine, { cause: err });
      }
    },
  });

  // One top-level unit at a time (see grammar/dockerfile.ne): the Earley table is reset to its
  // first column before each unit, so its live state never outgrows one instruction.
  const units = new UnitLexer();
  const { Parser, unitGrammar } = nearleyUnitParser();
  const parser = new Parser(unitGrammar, { lexer: units });
  const initial = parser.save();
  lexer.reset(body);
  const instructions: InstructionNode[] = [];
  const warnings: ParseWarning[] = [];
  let comments: string[] = [];
  for (;;) {
    let unit: DockerfileToken[] | undefined;
    try {
      unit = lexer.nextUnit();
    } catch (err) {
      if (err instanceof TokenSourceError) fail(err.message, loc.lines(err.startLine, err.endLine), err.cause ?? err);
      const eof = loc.eof();
      fail(`syntax error: ${messageOf(err).split('\n')[0] ?? ''}`, { start: eof, end: eof }, err);
    }
    if (unit === undefined) break;
    parser.restore(initial);
    units.load(unit);
    try {
      parser.feed('');
    } catch (err) {
      const token = (err as { token?: DockerfileToken }).token ?? unit[0]!;
      fail(`syntax error: ${messageOf(err).split('\n')[0] ?? ''}`, { start: loc.start(token), end: loc.end(token) }, err);
    }
    if (parser.results.length !== 1) {
      const last = unit[unit.length - 1]!;
      const at = loc.end(last);
      fail(parser.results.length === 0 ? 'syntax error: unexpected end of input' : 'internal error: ambiguous grammar', { start: at, end: at });
    }
    const item = parser.results[0] as Item | DockerfileToken;
    if (!('kind' in item)) continue; // the directive block, already read
    if (item.kind === 'trivia') {
      comments = triviaComments(item.token.text, comments);
      continue;
    }
    instructions.push(toInstruction(item, comments, loc, warnings));
    comments = [];
  }

  if (instructions.length === 0) {
    const eof = loc.eof();
    const line = body.endsWith('\n') || body === '' ? Math.max(eof.line - 1, 0) : eof.line;
    fail('file with no instructions', loc.lines(line, line));
  }
  if (long) fail(`dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`, loc.lines(long.line, long.line));
  return {
    instructions,
    directives,
    escapeToken,
    warnings,
    startLine: instructions[0]!.startLine,
    endLine: instructions[instructions.length - 1]!.endLine,
  };
}

function toInstruction(item: InstructionItem, comments: string[], loc: Locator, warnings: ParseWarning[]): InstructionNode {
  const first = item.line;
  const lastLine = item.line;
  const last = item.heredocs[item.heredocs.length - 1] ?? lastLine;
  const logical = first.node as LogicalLine;
  const range: SourceRange = { start: loc.start(first), end: loc.end(last) };
  const startLine = first.line;
  const endLine = range.end.line;
  if (lastLine.emptyContinuation) {
    const l = loc.end(lastLine).line;
    warnings.push({
      short: `Empty continuation line found in: ${logical.line.original}`,
      detail: ['Empty continuation lines will become errors in a future release'],
      url: 'https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/',
      range: loc.lines(l, l),
    });
  }
  let heredocs: readonly Heredoc[] = NONE;
  if (item.heredocs.length > 0) {
    heredocs = item.heredocs.map((t) => {
      const spec = logical.heredocs[t.heredocIndex ?? 0]!;
      return { name: spec.name, fileDescriptor: spec.fileDescriptor, expand: spec.expand, chomp: spec.chomp, content: t.content ?? '' };
    });
  }
  return build(logical.line, range, startLine, endLine, comments.length > 0 ? comments : NONE, heredocs);
}

// Shared empty lists: a big file has one node per instruction and one per argument, and most of
// their lists are empty; sharing them keeps the retained heap (and GC time) smaller.
const NONE: readonly never[] = Object.freeze([]);

function build(
  line: LineNode,
  range: SourceRange,
  startLine: number,
  endLine: number,
  comments: readonly string[],
  heredocs: readonly Heredoc[],
): InstructionNode {
  const args: ArgNode[] = line.values.map((value) => ({ value, children: NONE }));
  if (line.child) args[0] = { value: '', children: [build(line.child, range, startLine, endLine, NONE, NONE)] };
  return {
    keyword: line.keyword,
    flags: line.flags.length > 0 ? line.flags : NONE,
    args,
    json: line.json,
    heredocs,
    original: line.original,
    startLine,
    endLine,
    range,
    comments,
  };
}
