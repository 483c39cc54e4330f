/**
 * `.dockerignore`: the reader (moby/patternmatcher `ignorefile.ReadAll`) and the matcher
 * (`patternmatcher.New` + `MatchesOrParentMatches` / `MatchesUsingParentResults`), with their
 * behaviour on Unix, quirks included.
 *
 * Upstream turns each pattern into a Go regexp source (`*` becomes `[^/]*`, `**` a group of any text ending in a slash, classes are copied
 * verbatim …). kiln builds the same source text and runs it on a small regexp engine of its own
 * (a Thompson NFA simulated over position sets), so odd patterns behave as upstream's regexp would,
 * and matching costs O(path length × pattern length) with no backtracking.
 */
import { join, dirname, basename } from 'node:path';
import { trimSpace } from './go-strings.js';
import { BAD_PATTERN, BadPatternError, filepathMatch } from './filepath-match.js';


/** A `.dockerignore` pattern is malformed; the message is upstream's (`syntax error in pattern`, `illegal exclusion pattern: "!"`). */
export class IgnorePatternError extends Error {
  override name = 'IgnorePatternError';
}

/** Go's `filepath.Clean` (Unix): collapse `//`, drop `.`, resolve `..` lexically, no trailing `/`. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const s = (rooted ? '/' : '') + out.join('/');
  return s === '' ? '.' : s;
}

/** Go's `filepath.Dir` (Unix). */
function dirOf(p: string): string {
  return cleanPath(p.slice(0, p.lastIndexOf('/') + 1));
}

/** bufio.Scanner's default limit: a longer line fails the read, as upstream. */
const MAX_LINE_BYTES = 64 * 1024;

/**
 * Reads `.dockerignore` text into patterns (`ignorefile.ReadAll`): a BOM on the first line is
 * dropped; a line starting with `#` (first column only) is a comment; lines are trimmed and empty
 * ones skipped; a leading `!` (exception) is kept and the rest trimmed again; the pattern is
 * `filepath.Clean`ed and one leading `/` removed (`/` alone stays). A lone `!` is returned as `!`
 * (PatternMatcher.compile rejects it).
 */
export function readIgnoreFile(content: string): string[] {
  const patterns: string[] = [];
  if (content === '') return patterns;
  const lines = content.split('\n');
  // Like bufio.ScanLines: a final newline does not start another line; a trailing \r is dropped.
  if (lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] ?? '';
    if (Buffer.byteLength(line) + (i < lines.length - 1 ? 1 : 0) > MAX_LINE_BYTES) {
      throw new IgnorePatternError('error reading .dockerignore: bufio.Scanner: token too long');
    }
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (i === 0 && line.startsWith('\ufeff')) line = line.slice(1);
    if (line.startsWith('#')) continue;
    let pattern = trimSpace(line);
    if (pattern === '') continue;
    const invert = pattern.startsWith('!');
    if (invert) pattern = trimSpace(pattern.slice(1));
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    patterns.push(invert ? `!${pattern}` : pattern);
  }
  return patterns;
}

/**
 * The ignore files that apply to a build, in lookup order: `<Dockerfile>.dockerignore` next to the
 * Dockerfile, then `.dockerignore` at the context root. BuildKit uses the first that exists
 * (the Dockerfile-specific file wins outright; the two are never merged).
 */
export function ignoreFileFor(dockerfilePath: string, contextDir: string): string[] {
  return [join(dirname(dockerfilePath), `${basename(dockerfilePath)}.dockerignore`), join(contextDir, '.dockerignore')];
}

// Validation: patternmatcher checks `filepath.Match(pattern, ".")`, which reports the syntax errors of every chunk.
function validateGlob(pattern: string): void {
  try {
    filepathMatch(pattern, '.');
  } catch (err) {
    if (err instanceof BadPatternError) throw new IgnorePatternError(BAD_PATTERN);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream's pattern → regexp translation.

/** How a cleaned pattern is matched, as upstream decides it. */
export type MatchType = 'exact' | 'prefix' | 'suffix' | 'regexp';

/**
 * Translates a cleaned pattern (without `!`) the way patternmatcher does for separator `sep`:
 * the match type and, for `regexp`, the Go regexp source. Exposed for conformance checks.
 */
export function patternToRegexpSource(pattern: string, sep: '/' | '\\' = '/'): { type: MatchType; source: string } {
  const escSep = sep === '\\' ? '\\\\' : sep;
  let re = '^';
  let type: MatchType = 'exact';
  const cps = Array.from(pattern);
  let p = 0;
  for (let iter = 0; p < cps.length; iter++) {
    const ch = cps[p++] ?? '';
    if (ch === '*') {
      if (cps[p] === '*') {
        p++;
        if (cps[p] === sep) p++; // "**/" is "**"
        if (p >= cps.length) {
          // Trailing "**" matches everything below, like .gitignore.
          if (type === 'exact') type = 'prefix';
          else {
            re += '.*';
            type = 'regexp';
          }
        } else {
          re += `(.*${escSep})?`;
          type = 'regexp';
        }
        if (iter === 0) type = 'suffix';
      } else {
        re += `[^${escSep}]*`;
        type = 'regexp';
      }
    } else if (ch === '?') {
      re += `[^${escSep}]`;
      type = 'regexp';
    } else if ('.+()|{}$'.includes(ch)) {
      re += `\\${ch}`;
    } else if (ch === '\\') {
      if (sep === '\\') {
        re += escSep;
        continue;
      }
      if (p < cps.length) {
        re += `\\${cps[p++] ?? ''}`;
        type = 'regexp';
      } else re += '\\';
    } else if (ch === '[' || ch === ']') {
      re += ch;
      type = 'regexp';
    } else re += ch;
  }
  return type === 'regexp' ? { type, source: `${re}$` } : { type, source: '' };
}

// ---------------------------------------------------------------------------------------------
// A small regexp engine for the sources above (Go RE2 syntax subset: literals, escapes, `.`,
// classes with ranges/negation/escapes/[:posix:], \d\s\w and negations, groups, `|`, `* + ?`,
// `^ $ \A \z \b \B`). Unsupported syntax (\p, \Q, {n,m} repeats) is reported as a bad pattern:
// a shortcut, since upstream-generated sources can only contain those from escaped pattern text.

type Ranges = readonly number[]; // [lo, hi, lo, hi, …]
type Inst =
  | { op: 'char'; ranges: Ranges; negate: boolean; next: number }
  | { op: 'split'; x: number; y: number }
  | { op: 'assert'; kind: 'bol' | 'eol' | 'wordb' | 'nwordb'; next: number }
  | { op: 'match' };

class RegexSyntaxError extends Error {}

const DIGIT_R: Ranges = [0x30, 0x39];
const SPACE_R: Ranges = [0x09, 0x0a, 0x0c, 0x0d, 0x20, 0x20];
const WORD_R: Ranges = [0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a];
const POSIX: Readonly<Record<string, Ranges>> = {
  alnum: [0x30, 0x39, 0x41, 0x5a, 0x61, 0x7a],
  alpha: [0x41, 0x5a, 0x61, 0x7a],
  ascii: [0x00, 0x7f],
  blank: [0x09, 0x09, 0x20, 0x20],
  cntrl: [0x00, 0x1f, 0x7f, 0x7f],
  digit: DIGIT_R,
  graph: [0x21, 0x7e],
  lower: [0x61, 0x7a],
  print: [0x20, 0x7e],
  punct: [0x21, 0x2f, 0x3a, 0x40, 0x5b, 0x60, 0x7b, 0x7e],
  space: [0x09, 0x0d, 0x20, 0x20],
  upper: [0x41, 0x5a],
  word: WORD_R,
  xdigit: [0x30, 0x39, 0x41, 0x46, 0x61, 0x66],
};

function negateRanges(r: Ranges): number[] {
  const out: number[] = [];
  let lo = 0;
  const sorted: [number, number][] = [];
  for (let i = 0; i < r.length; i += 2) sorted.push([r[i] ?? 0, r[i + 1] ?? 0]);
  sorted.sort((a, b) => a[0] - b[0]);
  for (const [a, b] of sorted) {
    if (a > lo) out.push(lo, a - 1);
    lo = Math.max(lo, b + 1);
  }
  if (lo <= 0x10ffff) out.push(lo, 0x10ffff);
  return out;
}

function inRanges(r: Ranges, cp: number): boolean {
  for (let i = 0; i < r.length; i += 2) if (cp >= (r[i] ?? 0) && cp <= (r[i + 1] ?? -1)) return true;
  return false;
}

/** Fragment of a program under construction: its entry and the dangling exits to patch. */
interface Frag {
  start: number;
  outs: ((target: number) => void)[];
}

class RegexCompiler {
  private readonly s: readonly number[];
  private i = 0;
  readonly prog: Inst[] = [];
  constructor(source: string) {
    this.s = Array.from(source, (c) => c.codePointAt(0) ?? 0);
  }

  compile(): Inst[] {
    const frag = this.alt();
    if (this.i < this.s.length) throw new RegexSyntaxError('unexpected )');
    const match = this.emit({ op: 'match' });
    this.patch(frag, match);
    // Entry is prog[frag.start]; move it to a known slot by a leading split-free jump is unneeded:
    this.entry = frag.start;
    return this.prog;
  }
  entry = 0;

  private emit(inst: Inst): number {
    this.prog.push(inst);
    return this.prog.length - 1;
  }
  private patch(f: Frag, target: number): void {
    for (const o of f.outs) o(target);
  }
  private empty(): Frag {
    // An epsilon: a split whose both arms go to the same place.
    const idx = this.emit({ op: 'split', x: -1, y: -1 });
    const inst = this.prog[idx] as { op: 'split'; x: number; y: number };
    return {
      start: idx,
      outs: [
        (t) => {
          inst.x = t;
          inst.y = t;
        },
      ],
    };
  }
  private peek(): number | undefined {
    return this.s[this.i];
  }

  private alt(): Frag {
    let left = this.concat();
    while (this.peek() === 0x7c) {
      this.i++;
      const right = this.concat();
      const idx = this.emit({ op: 'split', x: left.start, y: right.start });
      left = { start: idx, outs: [...left.outs, ...right.outs] };
    }
    return left;
  }

  private concat(): Frag {
    let frag: Frag | undefined;
    for (let c = this.peek(); c !== undefined && c !== 0x7c && c !== 0x29; c = this.peek()) {
      const piece = this.repeat();
      if (frag === undefined) frag = piece;
      else {
        this.patch(frag, piece.start);
        frag = { start: frag.start, outs: piece.outs };
      }
    }
    return frag ?? this.empty();
  }

  private repeat(): Frag {
    const atomStart = this.i;
    let frag = this.atom();
    let repeated = false;
    for (let c = this.peek(); c === 0x2a || c === 0x2b || c === 0x3f; c = this.peek()) {
      if (repeated) throw new RegexSyntaxError('invalid nested repetition operator');
      if (this.i === atomStart) throw new RegexSyntaxError('missing argument to repetition operator');
      this.i++;
      if (this.peek() === 0x3f) this.i++; // lazy: same language
      const split = this.emit({ op: 'split', x: frag.start, y: -1 });
      const inst = this.prog[split] as { op: 'split'; x: number; y: number };
      const exit = (t: number): void => {
        inst.y = t;
      };
      if (c === 0x2a) {
        this.patch(frag, split);
        frag = { start: split, outs: [exit] };
      } else if (c === 0x2b) {
        this.patch(frag, split);
        frag = { start: frag.start, outs: [exit] };
      } else frag = { start: split, outs: [...frag.outs, exit] };
      repeated = true;
    }
    return frag;
  }

  private char(ranges: Ranges, negate = false): Frag {
    const idx = this.emit({ op: 'char', ranges, negate, next: -1 });
    const inst = this.prog[idx] as { next: number };
    return { start: idx, outs: [(t) => (inst.next = t)] };
  }
  private assert(kind: 'bol' | 'eol' | 'wordb' | 'nwordb'): Frag {
    const idx = this.emit({ op: 'assert', kind, next: -1 });
    const inst = this.prog[idx] as { next: number };
    return { start: idx, outs: [(t) => (inst.next = t)] };
  }

  private atom(): Frag {
    const c = this.s[this.i++];
    switch (c) {
      case undefined:
        throw new RegexSyntaxError('missing argument');
      case 0x28: {
        // (  — (?flags) is not supported
        if (this.peek() === 0x3f) throw new RegexSyntaxError('unsupported group');
        const inner = this.alt();
        if (this.s[this.i++] !== 0x29) throw new RegexSyntaxError('missing )');
        return inner;
      }
      case 0x2a:
      case 0x2b:
      case 0x3f:
        throw new RegexSyntaxError('missing argument to repetition operator');
      case 0x2e:
        return this.char([0x0a, 0x0a], true); // . does not match \n
      case 0x5e:
        return this.assert('bol');
      case 0x24:
        return this.assert('eol');
      case 0x5b:
        return this.klass();
      case 0x5c: {
        const e = this.s[this.i];
        if (e === 0x41) {
          this.i++;
          return this.assert('bol');
        }
        if (e === 0x7a) {
          this.i++;
          return this.assert('eol');
        }
        if (e === 0x62 || e === 0x42) {
          this.i++;
          return this.assert(e === 0x62 ? 'wordb' : 'nwordb');
        }
        const perl = this.perlClass();
        if (perl) return this.char(perl.ranges, perl.negate);
        const cp = this.escape();
        return this.char([cp, cp]);
      }
      default:
        return this.char([c, c]);
    }
  }

  private perlClass(): { ranges: Ranges; negate: boolean } | undefined {
    const e = this.s[this.i];
    const map: Record<number, Ranges> = { 0x64: DIGIT_R, 0x73: SPACE_R, 0x77: WORD_R };
    const lower = e === undefined ? undefined : e | 0x20;
    if (e === undefined || lower === undefined || !(lower in map) || !/[dswDSW]/.test(String.fromCodePoint(e))) return undefined;
    this.i++;
    return { ranges: map[lower] ?? [], negate: e !== lower };
  }

  /** After a `\`: the escaped character. */
  private escape(): number {
    const e = this.s[this.i++];
    if (e === undefined) throw new RegexSyntaxError('trailing backslash at end of expression');
    if (e < 0x80 && !/[0-9A-Za-z]/.test(String.fromCharCode(e))) return e;
    const simple: Record<number, number> = { 0x61: 7, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9, 0x76: 11 };
    if (e in simple) return simple[e] ?? 0;
    if (e >= 0x30 && e <= 0x37) {
      // \0.. octal; a lone \1-\7 would be a backreference, which RE2 rejects
      if (e !== 0x30 && !(this.s[this.i] !== undefined && (this.s[this.i] ?? 0) >= 0x30 && (this.s[this.i] ?? 0) <= 0x37)) {
        throw new RegexSyntaxError('invalid escape sequence');
      }
      let v = e - 0x30;
      for (let n = 1; n < 3; n++) {
        const d = this.s[this.i];
        if (d === undefined || d < 0x30 || d > 0x37) break;
        v = v * 8 + d - 0x30;
        this.i++;
      }
      return v;
    }
    if (e === 0x78) {
      const hex = (d: number | undefined): number => {
        const v = d === undefined ? NaN : parseInt(String.fromCodePoint(d), 16);
        if (Number.isNaN(v)) throw new RegexSyntaxError('invalid escape sequence');
        return v;
      };
      if (this.peek() === 0x7b) {
        this.i++;
        let v = 0;
        let n = 0;
        while (this.peek() !== 0x7d) {
          v = v * 16 + hex(this.s[this.i++]);
          if (++n > 8 || v > 0x10ffff) throw new RegexSyntaxError('invalid escape sequence');
        }
        this.i++;
        if (n === 0) throw new RegexSyntaxError('invalid escape sequence');
        return v;
      }
      const a = hex(this.s[this.i++]);
      const b = hex(this.s[this.i++]);
      return a * 16 + b;
    }
    throw new RegexSyntaxError('invalid escape sequence');
  }

  private klass(): Frag {
    let negate = false;
    if (this.peek() === 0x5e) {
      negate = true;
      this.i++;
    }
    const ranges: number[] = [];
    let first = true;
    for (;;) {
      const c = this.peek();
      if (c === undefined) throw new RegexSyntaxError('missing closing ]');
      if (c === 0x5d && !first) {
        this.i++;
        break;
      }
      first = false;
      if (c === 0x5b && this.s[this.i + 1] === 0x3a) {
        const end = this.s.indexOf(0x3a, this.i + 2);
        if (end >= 0 && this.s[end + 1] === 0x5d) {
          let name = String.fromCodePoint(...this.s.slice(this.i + 2, end));
          let neg = false;
          if (name.startsWith('^')) {
            neg = true;
            name = name.slice(1);
          }
          const r = POSIX[name];
          if (!r) throw new RegexSyntaxError('invalid character class range');
          ranges.push(...(neg ? negateRanges(r) : r));
          this.i = end + 2;
          continue;
        }
      }
      if (c === 0x5c) {
        this.i++;
        const perl = this.perlClass();
        if (perl) {
          ranges.push(...(perl.negate ? negateRanges(perl.ranges) : perl.ranges));
          continue;
        }
        this.i--;
      }
      const lo = this.classChar();
      let hi = lo;
      if (this.peek() === 0x2d && this.s[this.i + 1] !== undefined && this.s[this.i + 1] !== 0x5d) {
        this.i++;
        hi = this.classChar();
        if (hi < lo) throw new RegexSyntaxError('invalid character class range');
      }
      ranges.push(lo, hi);
    }
    return this.char(ranges, negate);
  }

  private classChar(): number {
    const c = this.s[this.i++];
    if (c === undefined) throw new RegexSyntaxError('missing closing ]');
    if (c === 0x5c) return this.escape();
    return c;
  }
}

function isWordChar(cp: number | undefined): boolean {
  return cp !== undefined && inRanges(WORD_R, cp);
}

/** A compiled regexp: search semantics of Go's `MatchString` (a match anywhere). */
class Program {
  private readonly prog: Inst[];
  private readonly entry: number;
  constructor(source: string) {
    const c = new RegexCompiler(source);
    this.prog = c.compile();
    this.entry = c.entry;
    const first = this.prog[this.entry];
    this.anchored = first?.op === 'assert' && first.kind === 'bol';
  }
  private readonly anchored: boolean;

  test(text: string): boolean {
    const cps = Array.from(text, (ch) => ch.codePointAt(0) ?? 0);
    const n = this.prog.length;
    let cur: number[] = [];
    let next: number[] = [];
    const mark = new Int32Array(n).fill(-1);
    let gen = 0;
    const stack: number[] = [];
    const add = (list: number[], pc0: number, pos: number): boolean => {
      stack.push(pc0);
      while (stack.length) {
        const pc = stack.pop() ?? 0;
        if (pc < 0 || mark[pc] === gen) continue;
        mark[pc] = gen;
        const inst = this.prog[pc];
        if (!inst) continue;
        switch (inst.op) {
          case 'match':
            stack.length = 0;
            return true;
          case 'split':
            stack.push(inst.y, inst.x);
            break;
          case 'assert': {
            const before = cps[pos - 1];
            const after = cps[pos];
            const ok =
              inst.kind === 'bol'
                ? pos === 0
                : inst.kind === 'eol'
                  ? pos === cps.length
                  : (isWordChar(before) !== isWordChar(after)) === (inst.kind === 'wordb');
            if (ok) stack.push(inst.next);
            break;
          }
          case 'char':
            list.push(pc);
            break;
        }
      }
      return false;
    };
    for (let pos = 0; ; pos++) {
      // Threads carried over were added in this generation already; then start a new search here
      // (upstream sources begin with ^, so only position 0 can start a match and a dead set ends the search).
      if (pos === 0 || !this.anchored) {
        if (add(cur, this.entry, pos)) return true;
      } else if (cur.length === 0) return false;
      if (pos >= cps.length) return false;
      const cp = cps[pos] ?? 0;
      gen++;
      next.length = 0;
      for (const pc of cur) {
        const inst = this.prog[pc];
        if (inst?.op !== 'char') continue;
        if (inRanges(inst.ranges, cp) !== inst.negate && add(next, inst.next, pos + 1)) return true;
      }
      [cur, next] = [next, cur];
    }
  }
}

// ---------------------------------------------------------------------------------------------

/** One pattern segment (no `/`, no `**`) against one path segment, as the full pattern would match it. */
function segmentMatches(seg: string, name: string): boolean {
  try {
    const { type, source } = patternToRegexpSource(seg);
    if (type !== 'regexp') return seg === name;
    return new Program(source).test(name);
  } catch {
    return true; // cannot tell: walk
  }
}

/**
 * The upstream regexp source of a pattern as a native RegExp, for patterns without classes or escapes (no `[`,
 * `]` or backslash): their sources hold only literals (those Go's syntax needs escaped come escaped), `[^/]`,
 * `[^/]*`, an optional group of any text ending in a slash, `.*`, `^` and `$`, which mean the same in RE2 and in
 * a `u`-flag RegExp once `.` is spelled `[^\n]` (RE2's `.` excludes only a newline). That is most real patterns
 * (`*.log`, `build*`, `**` then a name), and V8's matcher is ~100x faster than the NFA walk; everything else keeps
 * the NFA, which follows RE2 exactly.
 */
function nativeRegExp(pattern: string, source: string): RegExp | undefined {
  if (/[[\]\\]/.test(pattern)) return undefined;
  let out = '';
  let stars = 0;
  // A leading `**/` (the group `(.*/)?` right after `^`) backtracks over the path's slashes only.
  const lead = source.startsWith('^(.*/)?') ? '^(.*/)?'.length : 0;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') {
      out += c + (source[i + 1] ?? '');
      i++;
      continue;
    }
    if (c === '*' && i >= lead) stars++;
    out += c === '.' ? '[^\\n]' : c;
  }
  // V8 backtracks: two stars that can overlap cost O(n^2) and k stars O(n^k) on a path that does not match
  // (`a*a*a*…b`). One star (besides a leading `**/`) stays linear in practice; more go to the NFA.
  if (stars > 1) return undefined;
  try {
    return new RegExp(out, 'u');
  } catch {
    return undefined;
  }
}

/**
 * For tests: how the NFA and, when the pattern qualifies, the native RegExp answer for one (cleaned, regexp-type)
 * pattern and path; the two must always agree.
 */
export function matchBothWays(pattern: string, path: string): { nfa: boolean; native: boolean | undefined } {
  const { type, source } = patternToRegexpSource(pattern);
  if (type !== 'regexp') throw new Error(`${pattern} is not a regexp pattern`);
  return { nfa: new Program(source).test(path), native: nativeRegExp(pattern, source)?.test(path) };
}

/** One compiled `.dockerignore` line. */
export interface IgnorePattern {
  /** The cleaned pattern without its `!`. */
  readonly pattern: string;
  /** True for `!pattern` (re-includes what earlier patterns excluded). */
  readonly exclusion: boolean;
}

/** What a directory's match left for its children (upstream `MatchInfo`): per pattern, whether the directory matched it. */
export interface MatchInfo {
  readonly parentMatched: readonly boolean[];
}

class CompiledPattern implements IgnorePattern {
  readonly pattern: string;
  readonly exclusion: boolean;
  readonly dirs: number;
  private type: MatchType | undefined;
  private program: Program | undefined;
  /** The same regexp as a native RegExp, when the pattern is simple enough for both to agree (see nativeRegExp). */
  private native: RegExp | undefined;
  constructor(pattern: string, exclusion: boolean) {
    this.pattern = pattern;
    this.exclusion = exclusion;
    this.dirs = pattern.split('/').length;
  }

  /** Upstream compiles lazily, at the first match; a regexp that does not compile fails every match. */
  match(path: string): boolean {
    if (this.type === undefined) {
      const { type, source } = patternToRegexpSource(this.pattern);
      if (type === 'regexp') {
        try {
          this.program = new Program(source);
        } catch {
          throw new IgnorePatternError(BAD_PATTERN);
        }
        this.native = nativeRegExp(this.pattern, source);
      }
      this.type = type;
    }
    switch (this.type) {
      case 'exact':
        return path === this.pattern;
      case 'prefix':
        return path.startsWith(this.pattern.slice(0, -2));
      case 'suffix': {
        const suffix = this.pattern.slice(2);
        if (path.endsWith(suffix)) return true;
        return suffix.startsWith('/') && path === suffix.slice(1); // **/foo matches foo
      }
      case 'regexp':
        return this.native !== undefined ? this.native.test(path) : (this.program?.test(path) ?? false);
    }
  }

  /**
   * Whether this pattern could match a path strictly below the directory whose segments are `dirParts`:
   * segment by segment, until a `**` (anything may follow) or the end of the directory's segments.
   */
  couldMatchBelow(dirParts: readonly string[]): boolean {
    const parts = this.pattern.split('/');
    for (let i = 0; i < dirParts.length; i++) {
      const seg = parts[i];
      // The pattern ends at an ancestor of the path (or at the directory itself): whatever it matches there
      // applies to everything below, through the parent rule.
      if (seg === undefined) return true;
      if (seg.includes('**')) return true;
      if (!segmentMatches(seg, dirParts[i] ?? '')) return false;
    }
    return true;
  }

  /** Whether any ancestor directory of `path` (`a`, `a/b`, … of `Dir(path)`) matches. */
  matchParents(path: string): boolean {
    const parent = dirOf(path);
    if (parent === '.') return false;
    const dirs = parent.split('/');
    for (let i = 1; i <= dirs.length; i++) {
      try {
        if (this.match(dirs.slice(0, i).join('/'))) return true;
      } catch {
        // upstream ignores errors of the parent checks
      }
    }
    return false;
  }
}

/**
 * The compiled `.dockerignore` patterns. Later patterns win; `!` patterns re-include.
 * Paths are relative to the context root and use `/`.
 */
export class PatternMatcher {
  private readonly compiled: readonly CompiledPattern[];
  /** True when some pattern is a `!` exception. */
  readonly hasExclusions: boolean;

  private constructor(compiled: CompiledPattern[]) {
    this.compiled = compiled;
    this.hasExclusions = compiled.some((p) => p.exclusion);
  }

  /**
   * Compiles patterns (`patternmatcher.New`): each is trimmed (empty ones dropped) and cleaned, a
   * leading `!` marks an exception, and the glob syntax is checked. Throws IgnorePatternError
   * (`illegal exclusion pattern: "!"`, `syntax error in pattern`).
   */
  static compile(patterns: readonly string[]): PatternMatcher {
    const out: CompiledPattern[] = [];
    for (const raw of patterns) {
      let p = trimSpace(raw);
      if (p === '') continue;
      // Cleaned before the ! is looked at, as upstream does (so `!a/../b` loses its !).
      p = cleanPath(p);
      let exclusion = false;
      if (p.startsWith('!')) {
        if (p.length === 1) throw new IgnorePatternError('illegal exclusion pattern: "!"');
        exclusion = true;
        p = p.slice(1);
      }
      validateGlob(p);
      out.push(new CompiledPattern(p, exclusion));
    }
    return new PatternMatcher(out);
  }

  /** The patterns, in order. */
  get patterns(): readonly IgnorePattern[] {
    return this.compiled;
  }

  /**
   * True when `path` is ignored: the last pattern matching the path or one of its parent
   * directories decides (`MatchesOrParentMatches`). Throws IgnorePatternError for a pattern whose
   * class cannot compile (e.g. the range in `[Local-Only]`).
   */
  matchesOrParentMatches(path: string): boolean {
    let matched = false;
    for (const p of this.compiled) {
      // An include pattern cannot change a match, nor an exception a non-match.
      if (p.exclusion !== matched) continue;
      const hit = p.match(path) || p.matchParents(path);
      if (hit) matched = !p.exclusion;
    }
    return matched;
  }

  /**
   * The same answer as {@link matchesOrParentMatches}, for a top-down walk: pass the `info` the
   * path's parent directory got (omit it for a path whose parent was not matched first), so parent
   * directories are never re-checked. Throws IgnorePatternError like matchesOrParentMatches.
   */
  matchesUsingParentResults(path: string, parent?: MatchInfo): { matched: boolean; info: MatchInfo } {
    const parentMatched = parent?.parentMatched ?? [];
    if (parentMatched.length !== 0 && parentMatched.length !== this.compiled.length) {
      throw new IgnorePatternError('wrong number of values in parentMatched');
    }
    let matched = false;
    const info: boolean[] = new Array<boolean>(this.compiled.length).fill(false);
    this.compiled.forEach((p, i) => {
      let hit = parentMatched[i] ?? false;
      if (!hit) {
        if (p.exclusion !== matched) return;
        hit = p.match(path);
        if (!hit && parentMatched.length === 0) hit = p.matchParents(path);
      }
      info[i] = hit;
      if (hit) matched = !p.exclusion;
    });
    return { matched, info: { parentMatched: info } };
  }

  /**
   * Whether an exception (`!`) pattern could re-include something strictly below directory `dir` (a cleaned
   * context path). A directory the patterns exclude must still be walked when this is true, because a path
   * below it may be re-included (and then the directory stays in the context as its parent), as moby's and
   * fsutil's walkers descend into it. Answers true whenever it cannot rule that out (a `**`, a class it cannot
   * compile), so it only ever costs a walk, never a file.
   */
  mayReincludeBelow(dir: string): boolean {
    if (!this.hasExclusions) return false;
    const dirParts = dir === '' || dir === '.' ? [] : dir.split('/');
    for (const p of this.compiled) {
      if (!p.exclusion) continue;
      if (p.couldMatchBelow(dirParts)) return true;
    }
    return false;
  }

  /** The deprecated `PatternMatcher.Matches`: like matchesOrParentMatches but checks only the parent at the pattern's depth. */
  matches(path: string): boolean {
    let matched = false;
    const parent = dirOf(path);
    const parentDirs = parent.split('/');
    for (const p of this.compiled) {
      if (p.exclusion !== matched) continue;
      let hit = p.match(path);
      if (!hit && parent !== '.' && p.dirs <= parentDirs.length) {
        try {
          hit = p.match(parentDirs.slice(0, p.dirs).join('/'));
        } catch {
          hit = false;
        }
      }
      if (hit) matched = !p.exclusion;
    }
    return matched;
  }
}

/**
 * The deprecated package-level `patternmatcher.Matches(path, patterns)`: compiles the patterns,
 * cleans the path (`.` never matches) and applies {@link PatternMatcher.matches}. Kept for the
 * legacy conformance table; BuildKit uses matchesOrParentMatches.
 */
export function legacyMatches(path: string, patterns: readonly string[]): boolean {
  const pm = PatternMatcher.compile(patterns);
  const clean = cleanPath(path);
  if (clean === '.') return false;
  return pm.matches(clean);
}
