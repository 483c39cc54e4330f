/**
 * Splitting one logical Dockerfile line into keyword, flags and argument nodes, the way
 * BuildKit's parser does (`splitCommand`, `extractBuilderFlags`, `parseWords`, `parseNameVal`,
 * the JSON-array forms and the per-instruction dispatch table).
 *
 * Helpers throw plain `Error`s; `parse.ts` attaches the file and range at the boundary.
 */
import { goQuote as goQuoteForError, isGoSpace, trimLeftSpace, trimSpace } from './go-strings.js';

/** The error BuildKit reports for a JSON array holding something other than strings. */
export const NOT_STRING_ARRAY = 'when using JSON array syntax, arrays must be comprised of strings only';

// BuildKit's reWhitespace: ASCII blanks only (no \n, no Unicode spaces).
const RE_WHITESPACE = /[\t\v\f\r ]+/;
const RE_WHITESPACE_G = /[\t\v\f\r ]+/g;

/** Splits like Go's `regexp.Split(s, 2)` on `[\t\v\f\r ]+`. */
function splitOnce(s: string): [string] | [string, string] {
  const m = RE_WHITESPACE.exec(s);
  if (!m) return [s];
  return [s.slice(0, m.index), s.slice(m.index + m[0].length)];
}

/**
 * BuildKit's `parseWords`: splits on Unicode white space, honouring `'`/`"` quotes and the
 * escape token, but keeping quotes and escapes in the words (used by ENV, LABEL and ARG).
 */
export function parseWords(rest: string, escapeToken: string): string[] {
  // Every word is a slice of `rest` (quotes and escapes stay in), so the scan only tracks where
  // words start and end; building words char by char made a long-lived string node per char.
  // Code units suffice: no surrogate is a space, a quote or an escape token.
  const words: string[] = [];
  const esc = escapeToken.charCodeAt(0);
  let inQuote = false;
  let inWord = false;
  let start = 0;
  let quote = 0;
  let blankOK = false;
  const n = rest.length;
  let end = n; // where the last word ends: an escape token at the very end is dropped
  let pos = 0;
  while (pos < n) {
    const ch = rest.charCodeAt(pos);
    if (!inWord && !inQuote) {
      if (isGoSpace(ch)) { pos++; continue; }
      inWord = true;
      start = pos;
    }
    if (inWord) {
      if (isGoSpace(ch)) {
        inWord = false;
        if (blankOK || pos > start) words.push(rest.slice(start, pos));
        blankOK = false;
        pos++;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        blankOK = true;
        inWord = false;
        inQuote = true;
      }
      if (ch === esc) {
        if (pos + 1 === n) { end = pos; break; }
        pos++; // unquoted escape: it and the next char stay, even a quote
      }
      pos++;
      continue;
    }
    // inQuote
    if (ch === quote) { inQuote = false; inWord = true; }
    if (ch === esc && quote !== 0x27) {
      if (pos + 1 === n) { inQuote = false; inWord = true; end = pos; break; }
      pos++;
    }
    pos++;
  }
  if ((inWord || inQuote) && (blankOK || end > start)) words.push(rest.slice(start, end));
  return words;
}

/** Result of a per-instruction argument parser: the Next chain values and the json attribute. */
export interface ParsedArgs {
  readonly values: string[];
  readonly json: boolean;
}

const NONE: ParsedArgs = { values: [], json: false };

/**
 * BuildKit's `parseNameVal` (ENV, LABEL): old form `k v` gives `[k, v, ""]`, new form
 * `k=v …` gives `[k, v, "=", …]` with quotes kept.
 */
export function parseNameVal(rest: string, key: string, escapeToken: string): string[] {
  const words = parseWords(rest, escapeToken);
  const first = words[0];
  if (first === undefined) return [];
  if (!first.includes('=')) {
    const parts = splitOnce(rest);
    if (parts.length < 2) throw new Error(`${key} must have two arguments`);
    return [parts[0], parts[1]!, ''];
  }
  const out: string[] = [];
  for (const word of words) {
    const i = word.indexOf('=');
    if (i < 0) throw new Error(`Syntax error - can't find = in ${goQuoteForError(word)}. Must be of the form: name=value`);
    out.push(word.slice(0, i), word.slice(i + 1), '=');
  }
  return out;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const LONE_SURROGATE_G = new RegExp(LONE_SURROGATE.source, 'g');

/**
 * BuildKit's `parseJSON`: the values of a JSON array of strings, `undefined` when `rest` is not
 * a JSON array at all; throws {@link NOT_STRING_ARRAY} for an array holding a non-string.
 */
export function parseJsonArray(rest: string): string[] | undefined {
  const s = trimLeftSpace(rest);
  if (s.charCodeAt(0) !== 0x5b) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(s);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const out: string[] = [];
  for (const v of parsed as unknown[]) {
    if (typeof v !== 'string') throw new Error(NOT_STRING_ARRAY);
    // Go's decoder turns lone surrogate escapes into U+FFFD.
    out.push(LONE_SURROGATE.test(v) ? v.replace(LONE_SURROGATE_G, '\ufffd') : v);
  }
  return out;
}

function whitespaceDelimited(rest: string): ParsedArgs {
  if (rest === '') return NONE;
  return { values: rest.split(RE_WHITESPACE_G), json: false };
}

function maybeJson(rest: string): ParsedArgs {
  if (rest === '') return NONE;
  const arr = parseJsonArray(rest);
  if (arr) return { values: arr, json: true };
  return { values: [rest], json: false };
}

function maybeJsonToList(rest: string): ParsedArgs {
  const arr = parseJsonArray(rest);
  if (arr) return { values: arr, json: true };
  return whitespaceDelimited(rest);
}

function healthConfig(rest: string): ParsedArgs {
  // Upstream scans bytes here; ASCII blanks are what matters in practice.
  // Shortcut: a non-ASCII char whose UTF-8 form contains byte 0x85/0xA0 is not treated as a split.
  let sep = 0;
  while (sep < rest.length && !isAsciiSpace(rest.charCodeAt(sep))) sep++;
  let next = sep;
  while (next < rest.length && isAsciiSpace(rest.charCodeAt(next))) next++;
  if (sep === 0) return NONE;
  const cmd = maybeJson(rest.slice(next));
  return { values: [rest.slice(0, sep), ...cmd.values], json: cmd.json };
}

function isAsciiSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

/** Keyword (lowercase) → how its argument string becomes argument nodes. ONBUILD is handled apart. */
const DISPATCH: Record<string, (rest: string, esc: string) => ParsedArgs> = {
  add: maybeJsonToList,
  arg: (rest, esc) => ({ values: parseWords(rest, esc), json: false }),
  cmd: maybeJson,
  copy: maybeJsonToList,
  entrypoint: maybeJson,
  env: (rest, esc) => ({ values: parseNameVal(rest, 'ENV', esc), json: false }),
  expose: whitespaceDelimited,
  from: whitespaceDelimited,
  healthcheck: healthConfig,
  label: (rest, esc) => ({ values: parseNameVal(rest, 'LABEL', esc), json: false }),
  maintainer: (rest) => (rest === '' ? NONE : { values: [rest], json: false }),
  run: maybeJson,
  shell: maybeJson,
  stopsignal: (rest) => (rest === '' ? NONE : { values: [rest], json: false }),
  user: (rest) => (rest === '' ? NONE : { values: [rest], json: false }),
  volume: maybeJsonToList,
  workdir: (rest) => (rest === '' ? NONE : { values: [rest], json: false }),
};

/**
 * BuildKit's `extractBuilderFlags`: takes the leading `--flag` words off `line`.
 * Upstream walks bytes (non-ASCII bytes become Latin-1 runes); this does the same so flag
 * values compare equal to BuildKit's.
 */
export function extractBuilderFlags(line: string, escapeToken: string): { rest: string; flags: string[] } {
  let i = 0;
  while (i < line.length && isAsciiSpace(line.charCodeAt(i))) i++;
  if (line.charCodeAt(i) !== 0x2d || line.charCodeAt(i + 1) !== 0x2d) return { rest: line.slice(i), flags: [] };
  const bytes = Buffer.from(line, 'utf8');
  const esc = escapeToken.charCodeAt(0);
  const isSp = (b: number): boolean => isAsciiSpace(b) || b === 0x85 || b === 0xa0;
  const flags: string[] = [];
  const n = bytes.length;
  // Word bytes are copied into `out` and read back as Latin-1 once per word.
  const out = Buffer.allocUnsafe(n);
  let w = 0;
  let wordStart = 0;
  const isDashDash = (): boolean => w - wordStart === 2 && out[wordStart] === 0x2d && out[wordStart + 1] === 0x2d;
  const pushWord = (): void => {
    flags.push(out.toString('latin1', wordStart, w));
    wordStart = w;
  };
  let phase: 0 | 1 | 2 = 0; // spaces, word, quote
  let quote = 0;
  let blankOK = false;
  for (let pos = 0; pos <= n; pos++) {
    const ch = pos < n ? bytes[pos]! : -1;
    if (phase === 0) {
      if (pos === n) break;
      if (isSp(ch)) continue;
      if (ch !== 0x2d || pos + 1 === n || bytes[pos + 1] !== 0x2d) return { rest: bytes.subarray(pos).toString('utf8'), flags };
      phase = 1;
    }
    if (pos === n) {
      if (!isDashDash() && (blankOK || w > wordStart)) pushWord();
      break;
    }
    if (phase === 1) {
      if (isSp(ch)) {
        phase = 0;
        if (isDashDash()) return { rest: bytes.subarray(pos).toString('utf8'), flags };
        if (blankOK || w > wordStart) pushWord();
        wordStart = w;
        blankOK = false;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) { quote = ch; blankOK = true; phase = 2; continue; }
      let c = ch;
      if (c === esc) {
        if (pos + 1 === n) continue;
        pos++;
        c = bytes[pos]!;
      }
      out[w++] = c;
      continue;
    }
    // phase 2: in quote
    if (ch === quote) { phase = 1; continue; }
    let c = ch;
    if (c === esc) {
      if (pos + 1 === n) { phase = 1; continue; }
      pos++;
      c = bytes[pos]!;
    }
    out[w++] = c;
  }
  return { rest: '', flags };
}

/** The parts of one logical line (BuildKit's `newNodeFromLine`), before positions are attached. */
export interface LineNode {
  readonly keyword: string;
  readonly flags: string[];
  readonly values: string[];
  readonly json: boolean;
  /** For ONBUILD: the nested trigger line. */
  readonly child: LineNode | undefined;
  readonly original: string;
}

/** Splits a logical line into keyword, flags and arguments (BuildKit's `splitCommand` + dispatch). */
export function parseLine(line: string, escapeToken: string): LineNode {
  const t = trimSpace(line);
  const parts = splitOnce(t);
  const keyword = parts[0];
  let flags: string[] = [];
  let rest = '';
  if (parts.length === 2) {
    const r = extractBuilderFlags(parts[1], escapeToken);
    flags = r.flags;
    rest = trimSpace(r.rest);
  }
  const lower = keyword.toLowerCase();
  if (lower === 'onbuild') {
    if (rest === '') return { keyword, flags, values: [], json: false, child: undefined, original: line };
    const child = parseLine(rest, escapeToken);
    return { keyword, flags, values: [''], json: false, child, original: line };
  }
  const fn = DISPATCH[lower];
  // Unknown keywords are kept with one empty argument (BuildKit's parseIgnore).
  const args = fn ? fn(rest, escapeToken) : { values: [''], json: false };
  return { keyword, flags, values: args.values, json: args.json, child: undefined, original: line };
}

/** BuildKit's `canContainHeredoc`: RUN/COPY/ADD (directly or under ONBUILD) in shell form. */
export function canContainHeredoc(node: LineNode): boolean {
  const n = node.child && node.keyword.toLowerCase() === 'onbuild' ? node.child : node;
  const k = n.keyword.toLowerCase();
  return (k === 'run' || k === 'copy' || k === 'add') && !n.json;
}
