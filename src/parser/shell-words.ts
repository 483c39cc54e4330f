/**
 * BuildKit's shell-word lexer: quote and escape processing, `$VAR` / `${VAR…}` expansion and
 * word splitting, with the behaviour of `frontend/dockerfile/shell` (`shell.NewLex(escapeToken)`),
 * quirks included. Used to expand instruction arguments with a stage's ARG/ENV values and to read
 * heredoc delimiter words.
 *
 * The scanner is a single left-to-right pass over code points. The glob patterns of `${v#p}`,
 * `${v%p}` and `${v/p/r}` are matched by a position-set (NFA) simulation, so matching costs
 * O(value length × pattern length) and hostile input cannot trigger exponential backtracking.
 */
import { goQuote, isGoSpace } from './go-strings.js';

/** Variables visible to an expansion: name → value. A name that is absent is unset. */
export type EnvLookup = ReadonlyMap<string, string>;

/** Switches of the lexer, named after BuildKit's `Lex` fields. */
export interface ProcessOptions {
  /**
   * Keep quote characters in the result (quotes still group text).
   * @default false
   */
  rawQuotes?: boolean;
  /**
   * Keep escape characters in the result (the escaped character is still taken literally).
   * @default false
   */
  rawEscapes?: boolean;
  /**
   * Leave references to unset variables as written (`$X`, `${X}`, `${X:-d}`), for a later pass.
   * @default false
   */
  skipUnsetEnv?: boolean;
  /**
   * Treat `'` and `"` as ordinary characters.
   * @default false
   */
  skipProcessQuotes?: boolean;
}

/** Everything one expansion produces. */
export interface WordResult {
  /** The expanded text, without word splitting. */
  result: string;
  /** The expanded text split on unquoted whitespace (whitespace that came from an unquoted expansion splits too). */
  words: string[];
  /** Variable names that were looked up and were set (possibly to ''). */
  matched: Set<string>;
  /** Variable names that were looked up and were unset. */
  unmatched: Set<string>;
}

/**
 * An expansion failed. The message has BuildKit's wording, e.g.
 * `failed to process "${A": syntax error: missing '}'`; `reason` is the part after the prefix.
 * Callers attach the source location.
 */
export class ShellWordError extends Error {
  override name = 'ShellWordError';
  /** The message without the `failed to process "<input>": ` prefix. */
  readonly reason: string;
  constructor(message: string, reason: string = message) {
    super(message);
    this.reason = reason;
  }
}

/**
 * Builds an env lookup from `K=V` entries the way BuildKit's `EnvsFromSlice`/`BuildEnvs` does:
 * the value is everything after the first `=`, a later duplicate wins, and an entry without `=`
 * sets the name to ''.
 */
export function envFromList(list: readonly string[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const entry of list) {
    const eq = entry.indexOf('=');
    if (eq < 0) env.set(entry, '');
    else env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

const EOF = -1;
const CH_DOLLAR = 0x24;
const CH_SQUOTE = 0x27;
const CH_DQUOTE = 0x22;
const CH_LBRACE = 0x7b;
const CH_RBRACE = 0x7d;
const CH_COLON = 0x3a;
const CH_SLASH = 0x2f;
const CH_BACKSLASH = 0x5c;
const CH_NEWLINE = 0x0a;
/** Deepest `${…${…}}` / quote nesting accepted; a shortcut that keeps hostile input off the JS stack limit (BuildKit has no limit). */
const MAX_DEPTH = 1000;

/** An internal failure; the public entry points wrap it with the `failed to process` prefix. */
class Failure extends Error {}


const LETTER = /\p{L}/u;
const DIGIT = /\p{Nd}/u;

/** Go's `unicode.IsLetter`. */
function isLetter(cp: number): boolean {
  if (cp < 0x80) return (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);
  return LETTER.test(String.fromCodePoint(cp));
}

/** Go's `unicode.IsDigit`. */
function isDigit(cp: number): boolean {
  if (cp < 0x80) return cp >= 0x30 && cp <= 0x39;
  return DIGIT.test(String.fromCodePoint(cp));
}

/** The special parameters of POSIX sh 2.5.2; a `$` followed by one of them names exactly that one character. */
function isSpecialParam(cp: number): boolean {
  // @ * # ? - $ ! 0
  return cp === 0x40 || cp === 0x2a || cp === 0x23 || cp === 0x3f || cp === 0x2d || cp === 0x24 || cp === 0x21 || cp === 0x30;
}

/** Text as code points; Go's text/scanner (which BuildKit uses) also drops one leading BOM. */
class Scanner {
  readonly src: string;
  pos: number;
  constructor(src: string) {
    this.src = src;
    this.pos = src.charCodeAt(0) === 0xfeff ? 1 : 0;
  }
  peek(): number {
    return this.pos < this.src.length ? (this.src.codePointAt(this.pos) ?? EOF) : EOF;
  }
  next(): number {
    if (this.pos >= this.src.length) return EOF;
    const cp = this.src.codePointAt(this.pos) ?? EOF;
    this.pos += cp > 0xffff ? 2 : 1;
    return cp;
  }
}

/** Go's `string(rune)` for the characters the lexer reports (EOF becomes U+FFFD). */
function runeString(cp: number): string {
  return cp < 0 ? '\ufffd' : String.fromCodePoint(cp);
}

/** Accumulates the split words: unquoted whitespace ends a word, quoted text never does. */
class Words {
  word = '';
  inWord = false;
  readonly words: string[] = [];
  addChar(cp: number): void {
    if (isGoSpace(cp)) {
      // Whitespace only ends a word that has text; `""` followed by a space yields no word.
      if (this.inWord && this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else this.addRawChar(cp);
  }
  addRawChar(cp: number): void {
    this.word += String.fromCodePoint(cp);
    this.inWord = true;
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(ch.codePointAt(0) ?? 0);
  }
  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }
  finish(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** One expansion run: scanner position, options and the names looked up. */
class Expansion {
  readonly scanner: Scanner;
  readonly env: EnvLookup;
  readonly escape: number;
  readonly rawQuotes: boolean;
  readonly skipUnsetEnv: boolean;
  readonly skipProcessQuotes: boolean;
  rawEscapes: boolean;
  depth = 0;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(word: string, env: EnvLookup, escape: number, options: ProcessOptions) {
    this.scanner = new Scanner(word);
    this.env = env;
    this.escape = escape;
    this.rawQuotes = options.rawQuotes ?? false;
    this.rawEscapes = options.rawEscapes ?? false;
    this.skipUnsetEnv = options.skipUnsetEnv ?? false;
    this.skipProcessQuotes = options.skipProcessQuotes ?? false;
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) throw new Failure(`expansion nested deeper than ${MAX_DEPTH} levels`);
  }

  /** Reads up to `stop` (consumed) or to the end when `stop` is EOF; nested text runs with `rawEscapes` as given. */
  stopOn(stop: number, rawEscapes: boolean): { text: string; words: Words } {
    this.enter();
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      return this.stopOnInner(stop);
    } finally {
      this.rawEscapes = saved;
      this.depth--;
    }
  }

  private stopOnInner(stop: number): { text: string; words: Words } {
    const sc = this.scanner;
    const words = new Words();
    let out = '';
    for (let ch = sc.peek(); ch !== EOF; ch = sc.peek()) {
      if (stop !== EOF && ch === stop) {
        sc.next();
        return { text: out, words };
      }
      if (ch === CH_DOLLAR) {
        const value = this.dollar();
        out += value;
        words.addString(value);
      } else if (!this.skipProcessQuotes && (ch === CH_SQUOTE || ch === CH_DQUOTE)) {
        const value = ch === CH_SQUOTE ? this.singleQuote() : this.doubleQuote();
        out += value;
        words.addRawString(value);
      } else {
        sc.next();
        if (ch === this.escape) {
          if (this.rawEscapes) {
            words.addRawChar(ch);
            out += String.fromCodePoint(ch);
          }
          // The escape character takes the next character literally; at the end it is dropped.
          ch = sc.next();
          if (ch === EOF) break;
          words.addRawChar(ch);
        } else words.addChar(ch);
        out += String.fromCodePoint(ch);
      }
    }
    if (stop !== EOF) throw new Failure(`unexpected end of statement while looking for matching ${runeString(stop)}`);
    return { text: out, words };
  }

  private singleQuote(): string {
    const sc = this.scanner;
    let out = '';
    const open = sc.next();
    if (this.rawQuotes) out += String.fromCodePoint(open);
    // Everything up to the next ' is literal; a ' cannot be escaped inside.
    const end = sc.src.indexOf("'", sc.pos);
    if (end < 0) {
      sc.pos = sc.src.length;
      throw new Failure('unexpected end of statement while looking for matching single-quote');
    }
    out += sc.src.slice(sc.pos, end);
    sc.pos = end + 1;
    if (this.rawQuotes) out += "'";
    return out;
  }

  private doubleQuote(): string {
    this.enter();
    try {
      return this.doubleQuoteInner();
    } finally {
      this.depth--;
    }
  }

  private doubleQuoteInner(): string {
    const sc = this.scanner;
    let out = '';
    const open = sc.next();
    if (this.rawQuotes) out += String.fromCodePoint(open);
    for (;;) {
      const peek = sc.peek();
      if (peek === EOF) throw new Failure('unexpected end of statement while looking for matching double-quote');
      if (peek === CH_DQUOTE) {
        sc.next();
        if (this.rawQuotes) out += '"';
        return out;
      }
      if (peek === CH_DOLLAR) {
        out += this.dollar();
        continue;
      }
      let ch = sc.next();
      if (ch === this.escape) {
        if (this.rawEscapes) out += String.fromCodePoint(ch);
        const after = sc.peek();
        // An escape at the very end is dropped (and the missing quote is reported next).
        if (after === EOF) continue;
        // Only " $ and the escape character itself can be escaped; before anything else the
        // escape stays (BuildKit quirk: with rawEscapes it is then written twice).
        if (after === CH_DQUOTE || after === CH_DOLLAR || after === this.escape) ch = sc.next();
      }
      out += String.fromCodePoint(ch);
    }
  }

  /** Reads a variable name after `$` / `${`: a run of digits, one special parameter, or letters/digits/_. */
  private name(): string {
    const sc = this.scanner;
    const start = sc.pos;
    let ch = sc.peek();
    if (ch === EOF) return '';
    if (isDigit(ch)) {
      while (ch !== EOF && isDigit(ch)) {
        sc.next();
        ch = sc.peek();
      }
      return sc.src.slice(start, sc.pos);
    }
    if (isSpecialParam(ch)) {
      sc.next();
      return String.fromCodePoint(ch);
    }
    while (ch !== EOF && (isLetter(ch) || isDigit(ch) || ch === 0x5f)) {
      sc.next();
      ch = sc.peek();
    }
    return sc.src.slice(start, sc.pos);
  }

  private lookup(name: string): string | undefined {
    const value = this.env.get(name);
    if (value === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return value;
  }

  private dollar(): string {
    const sc = this.scanner;
    sc.next(); // $
    if (sc.peek() !== CH_LBRACE) {
      const name = this.name();
      if (name === '') return '$';
      const value = this.lookup(name);
      if (value === undefined) return this.skipUnsetEnv ? `$${name}` : '';
      return value;
    }
    sc.next(); // {
    const first = sc.peek();
    if (first === EOF) throw new Failure("syntax error: missing '}'");
    if (first === CH_LBRACE || first === CH_RBRACE || first === CH_COLON) throw new Failure('syntax error: bad substitution');
    const name = this.name();
    let ch = sc.next();
    let chs = runeString(ch);
    if (ch === CH_RBRACE) {
      const value = this.lookup(name);
      if (value === undefined) return this.skipUnsetEnv ? `\${${name}}` : '';
      return value;
    }
    // Shortcut on purpose: BuildKit reports `${NAME` at the end as "unsupported modifier (\uFFFD)"; we say what is wrong.
    if (ch === EOF) throw new Failure("syntax error: missing '}'");
    if (ch === CH_SLASH) return this.replace(name);
    let nullIsUnset = false;
    if (ch === CH_COLON) {
      nullIsUnset = true;
      ch = sc.next();
      chs += runeString(ch);
    } else if (ch !== 0x2b && ch !== 0x2d && ch !== 0x3f && ch !== 0x23 && ch !== 0x25) {
      throw new Failure(`unsupported modifier (${chs}) in substitution`);
    }
    const trim = ch === 0x23 || ch === 0x25; // # %
    if (nullIsUnset && trim) throw new Failure(`unsupported modifier (${chs}) in substitution`);
    // Patterns of # and % keep their escapes: the glob matcher interprets them.
    let word = this.nested(CH_RBRACE, trim, "syntax error: missing '}'");
    const value = this.lookup(name);
    if (value === undefined && this.skipUnsetEnv) return `\${${name}${chs}${word}}`;
    const empty = value === undefined || (nullIsUnset && value === '');
    switch (ch) {
      case 0x2d: // -
        return empty ? word : (value ?? '');
      case 0x2b: // +
        return empty ? '' : word;
      case 0x3f: // ?
        if (value === undefined) throw new Failure(`${name}: ${word === '' ? 'is not allowed to be unset' : word}`);
        if (nullIsUnset && value === '') throw new Failure(`${name}: ${word === '' ? 'is not allowed to be empty' : word}`);
        return value;
      case 0x23: // #
      case 0x25: {
        // %: one # or % for the shortest match, doubled for the longest. The doubling is
        // checked after expansion, so `${v#$P}` with P='#x' is a longest match of 'x' (BuildKit quirk).
        const greedy = word.codePointAt(0) === ch;
        if (greedy) word = word.slice(1);
        return ch === 0x25 ? trimSuffix(word, value ?? '', greedy) : trimPrefix(word, value ?? '', greedy);
      }
      default:
        throw new Failure(`unsupported modifier (${chs}) in substitution`);
    }
  }

  private nested(stop: number, rawEscapes: boolean, eofMessage: string): string {
    try {
      return this.stopOn(stop, rawEscapes).text;
    } catch (err) {
      if (err instanceof Failure && this.scanner.peek() === EOF) throw new Failure(eofMessage);
      throw err;
    }
  }

  /** `${name/pattern/replacement}` and `${name//pattern/replacement}`. */
  private replace(name: string): string {
    const sc = this.scanner;
    const all = sc.peek() === CH_SLASH;
    if (all) sc.next();
    const pattern = this.nested(CH_SLASH, true, "syntax error: missing '/' in ${}");
    const replacement = this.nested(CH_RBRACE, true, "syntax error: missing '}'");
    const value = this.lookup(name);
    if (value === undefined && this.skipUnsetEnv) return `\${${name}/${pattern}/${replacement}}`;
    const glob = compileGlobOrFail(pattern);
    return replaceGlob(value ?? '', glob, replacement, all);
  }
}

// ---------------------------------------------------------------------------------------------
// Glob patterns of ${v#p} ${v%p} ${v/p/r}: `*` any run, `?` one character (neither crosses a
// newline, as BuildKit's translation to a Go regexp has it), `\` escapes `*` `?` `\`; `\}` and
// `\/` are the character itself. `[` is literal: there are no bracket expressions.

const STAR = -2;
const ANY = -3;

/** A compiled glob: code points, STAR and ANY. */
export type Glob = readonly number[];

/**
 * Compiles a `${v#p}`-style glob. Throws a ShellWordError `invalid escape '\x'` when `\` precedes
 * anything but `*`, `?`, `\`, `}` or `/` (or ends the pattern).
 */
export function compileGlob(pattern: string): Glob {
  const tokens: number[] = [];
  const sc = new Scanner(pattern);
  for (let ch = sc.next(); ch !== EOF; ch = sc.next()) {
    if (ch === 0x2a) tokens.push(STAR);
    else if (ch === 0x3f) tokens.push(ANY);
    else if (ch === CH_BACKSLASH) {
      const after = sc.peek();
      // In ${…} a } or / has to be escaped; the escape is not part of the pattern.
      if (after === CH_RBRACE || after === CH_SLASH) continue;
      const escaped = sc.next();
      if (escaped !== 0x2a && escaped !== 0x3f && escaped !== CH_BACKSLASH) {
        throw new ShellWordError(`invalid escape '\\${runeString(escaped)}'`);
      }
      tokens.push(escaped);
    } else tokens.push(ch);
  }
  return tokens;
}

function compileGlobOrFail(pattern: string): Glob {
  try {
    return compileGlob(pattern);
  } catch (err) {
    throw new Failure(`invalid pattern (${pattern}) in substitution: ${(err as Error).message}`);
  }
}

/**
 * Reverses a glob for suffix matching, keeping each escape pair (`\x`) in order: `a\*c` → `c\*a`.
 * A trailing lone `\` becomes a leading one.
 */
export function reverseGlobPattern(pattern: string): string {
  const cps = Array.from(pattern);
  const out: string[] = new Array<string>(cps.length);
  const last = cps.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = cps[i] ?? '';
    if (tok === '\\' && i !== last) {
      out[last - i - 1] = tok;
      out[last - i] = cps[i + 1] ?? '';
      i += 2;
    } else {
      out[last - i] = tok;
      i++;
    }
  }
  return out.join('');
}

/** Reverses a string by code points. */
export function reverseCodePoints(s: string): string {
  return Array.from(s).reverse().join('');
}

/** Advances `set` (state → earliest start, -1 absent) over one character into `next`; returns whether any state is live. */
function step(glob: Glob, set: Int32Array, next: Int32Array, cp: number): boolean {
  const m = glob.length;
  next.fill(-1);
  let live = false;
  for (let j = 0; j < m; j++) {
    const start = set[j] ?? -1;
    if (start < 0) continue;
    const tok = glob[j] ?? 0;
    if (tok === STAR) {
      if (cp !== CH_NEWLINE) relax(next, j, start);
    } else if (tok === ANY ? cp !== CH_NEWLINE : tok === cp) relax(next, j + 1, start);
  }
  // A star also matches nothing: carry each state across following stars (forward only).
  for (let j = 0; j <= m; j++) {
    const start = next[j] ?? -1;
    if (start < 0) continue;
    live = true;
    if (j < m && glob[j] === STAR) relax(next, j + 1, start);
  }
  return live;
}

function relax(set: Int32Array, j: number, start: number): void {
  const cur = set[j] ?? -1;
  if (cur < 0 || start < cur) set[j] = start;
}

/** Adds a thread at state 0 starting at `start`, with its star closure. */
function seed(glob: Glob, set: Int32Array, start: number): void {
  for (let j = 0; j <= glob.length; j++) {
    relax(set, j, start);
    if (glob[j] !== STAR) break;
  }
}

function cpAt(s: string, i: number): number {
  return s.codePointAt(i) ?? 0;
}

function width(cp: number): number {
  return cp > 0xffff ? 2 : 1;
}

/**
 * Finds the leftmost match of `glob` in `value` at or after `from` (and exactly at `from` when
 * `anchored`); at that start, the longest match when `greedy`, else the shortest. Returns [start, end] or undefined.
 */
export function findGlob(glob: Glob, value: string, from: number, anchored: boolean, greedy: boolean): [number, number] | undefined {
  const m = glob.length;
  let cur = new Int32Array(m + 1).fill(-1);
  let next = new Int32Array(m + 1);
  let best: [number, number] | undefined;
  for (let i = from; ; ) {
    if (best === undefined && (!anchored || i === from)) seed(glob, cur, i);
    const accept = cur[m] ?? -1;
    if (accept >= 0 && (best === undefined || accept < best[0] || (accept === best[0] && i > best[1]))) {
      best = [accept, i];
      if (!greedy) return best; // shortest: the first accept of the leftmost start
    }
    if (i >= value.length) break;
    if (best !== undefined) {
      // Threads that started after the best match's start can no longer win.
      for (let j = 0; j <= m; j++) if ((cur[j] ?? -1) > best[0]) cur[j] = -1;
    }
    const cp = cpAt(value, i);
    const live = step(glob, cur, next, cp);
    [cur, next] = [next, cur];
    i += width(cp);
    if (!live && (best !== undefined || anchored)) break;
  }
  return best;
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const match = findGlob(compileGlobOrFail(pattern), value, 0, true, greedy);
  return match ? value.slice(match[1]) : value;
}

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // Shortest/longest suffix = shortest/longest prefix of the reversed value, with the reversed pattern.
  return reverseCodePoints(trimPrefix(reverseGlobPattern(pattern), reverseCodePoints(value), greedy));
}

/**
 * Replaces the first (or every) longest-leftmost match of `glob`, like Go's regexp
 * `ReplaceAllString`: an empty match right after a previous match is not replaced, and `$0`/`${0}`
 * in the replacement stand for the match, `$$` for `$` (other `$names` are empty).
 */
function replaceGlob(value: string, glob: Glob, replacement: string, all: boolean): string {
  if (!all) {
    const match = findGlob(glob, value, 0, false, true);
    if (match === undefined) return value;
    return value.slice(0, match[0]) + expandTemplate(replacement, value.slice(match[0], match[1])) + value.slice(match[1]);
  }
  let out = '';
  let lastEnd = 0;
  let search = 0;
  while (search <= value.length) {
    const match = findGlob(glob, value, search, false, true);
    if (match === undefined) break;
    out += value.slice(lastEnd, match[0]);
    if (match[1] > lastEnd || match[0] === 0) out += expandTemplate(replacement, value.slice(match[0], match[1]));
    lastEnd = match[1];
    const w = search < value.length ? width(cpAt(value, search)) : 1;
    search = search + w > match[1] ? search + w : match[1];
  }
  return out + value.slice(lastEnd);
}

/** Go's regexp `Expand` for a pattern without groups: only group 0 exists. */
function expandTemplate(template: string, match: string): string {
  if (!template.includes('$')) return template;
  let out = '';
  let i = 0;
  while (i < template.length) {
    const dollar = template.indexOf('$', i);
    if (dollar < 0) break;
    out += template.slice(i, dollar);
    i = dollar + 1;
    if (template[i] === '$') {
      out += '$';
      i++;
      continue;
    }
    const brace = template[i] === '{';
    let j = brace ? i + 1 : i;
    const nameStart = j;
    while (j < template.length) {
      const cp = cpAt(template, j);
      if (!isLetter(cp) && !isDigit(cp) && cp !== 0x5f) break;
      j += width(cp);
    }
    const name = template.slice(nameStart, j);
    if (name === '' || (brace && template[j] !== '}')) {
      out += '$'; // malformed: the $ is literal
      continue;
    }
    i = brace ? j + 1 : j;
    if (name === '0') out += match;
  }
  return out + template.slice(i);
}


/**
 * BuildKit's shell lexer for one escape character (`\` by default, `` ` `` after `# escape=``).
 * Instances hold no state between calls.
 */
export class ShellLex {
  readonly escapeToken: '\\' | '`';
  constructor(escapeToken: '\\' | '`' = '\\') {
    this.escapeToken = escapeToken;
  }

  /** Processes quotes and escapes and expands variables, without splitting words. Throws ShellWordError. */
  processWord(word: string, env: EnvLookup, options: ProcessOptions = {}): string {
    return this.processWordWithMatches(word, env, options).result;
  }

  /** Expands `word`, then splits unquoted text (including unquoted expansions) on whitespace. Throws ShellWordError. */
  processWords(word: string, env: EnvLookup, options: ProcessOptions = {}): string[] {
    return this.processWordWithMatches(word, env, options).words;
  }

  /** Expands `word` and reports which variable names were looked up, set or unset. Throws ShellWordError. */
  processWordWithMatches(word: string, env: EnvLookup, options: ProcessOptions = {}): WordResult {
    const run = new Expansion(word, env, this.escapeToken.charCodeAt(0), options);
    try {
      const { text, words } = run.stopOn(EOF, run.rawEscapes);
      return { result: text, words: words.finish(), matched: run.matched, unmatched: run.unmatched };
    } catch (err) {
      if (err instanceof Failure || err instanceof ShellWordError) {
        throw new ShellWordError(`failed to process ${goQuote(word)}: ${err.message}`, err.message);
      }
      throw err;
    }
  }
}
