/**
 * Heredoc words (`<<EOF`, `<<-'EOF'`, `3<<EOF`) as BuildKit recognises them, and the
 * narrow shell-word lexing that needs.
 *
 * BuildKit runs its full shell lexer here (escape `\`, an empty environment with unset variables
 * kept). {@link lexShellWords} stays a separate, narrow lexer rather than `ShellLex.processWords`
 * (shell-words.ts) with `{ rawQuotes, rawEscapes, skipUnsetEnv }`, because the two differ where it
 * matters here: BuildKit keeps `<<` and the blanks after it in one word (`RUN << -EOF` opens a
 * heredoc named `-EOF`, `RUN <<  EOF` one named `EOF`; conformance cases hfl-005, hx-025, hx-026
 * fail with ShellLex), and with raw escapes they disagree on a `\` before a character that
 * cannot be escaped inside double quotes (ShellLex keeps two). With an empty environment every `$` form stays
 * literal, so quote/escape handling and word splitting are all this lexer needs. It only runs on
 * RUN/COPY/ADD lines that contain `<<`.
 */
import { isGoSpace } from './go-strings.js';

/** A heredoc word's meaning, before its body is read. */
export interface HeredocSpec {
  readonly name: string;
  readonly fileDescriptor: number;
  readonly expand: boolean;
  readonly chomp: boolean;
}

/** Options of {@link lexShellWords}. */
export interface ShellWordOptions {
  /** Keep quote characters in the words. @default false */
  readonly rawQuotes?: boolean;
  /** Keep escape characters in the words. @default false */
  readonly rawEscapes?: boolean;
}

/**
 * Splits `src` into shell words with escape `\` and an empty environment (unset variables kept
 * literally). Throws on an unterminated quote or `${`. A `<<` followed by blanks keeps the blanks
 * and the next word in the same word, as BuildKit's lexer does (`<< EOF` is one heredoc word).
 */
export function lexShellWords(src: string, options: ShellWordOptions = {}): string[] {
  const rawQuotes = options.rawQuotes ?? false;
  const rawEscapes = options.rawEscapes ?? false;
  const words: string[] = [];
  let word = '';
  let inWord = false;
  const n = src.length;
  let i = 0;
  while (i < n) {
    const c = src.charCodeAt(i);
    if (isGoSpace(c)) {
      if (inWord && word.endsWith('<<')) {
        // BuildKit treats `<<   NAME` as one word.
        while (i < n && isGoSpace(src.charCodeAt(i))) word += src[i++];
        continue;
      }
      if (inWord && word.length > 0) words.push(word);
      word = '';
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === 0x27) {
      const end = src.indexOf("'", i + 1);
      if (end < 0) throw new Error('unexpected end of statement while looking for matching single-quote');
      word += rawQuotes ? src.slice(i, end + 1) : src.slice(i + 1, end);
      i = end + 1;
      continue;
    }
    if (c === 0x22) {
      if (rawQuotes) word += '"';
      i++;
      let closed = false;
      while (i < n) {
        const d = src.charCodeAt(i);
        if (d === 0x22) { closed = true; i++; break; }
        if (d === 0x5c && i + 1 < n) {
          const e = src.charCodeAt(i + 1);
          if (e === 0x22 || e === 0x24 || e === 0x5c) {
            if (rawEscapes) word += '\\';
            word += src[i + 1];
            i += 2;
            continue;
          }
        }
        if (d === 0x24 && src.charCodeAt(i + 1) === 0x7b) {
          const end = braceEnd(src, i);
          word += src.slice(i, end);
          i = end;
          continue;
        }
        word += src[i++];
      }
      if (!closed) throw new Error('unexpected end of statement while looking for matching double-quote');
      if (rawQuotes) word += '"';
      continue;
    }
    if (c === 0x5c) {
      if (rawEscapes) word += '\\';
      i++;
      if (i < n) {
        const cp = src.codePointAt(i)!;
        const s = String.fromCodePoint(cp);
        word += s;
        i += s.length;
      }
      continue;
    }
    if (c === 0x24 && src.charCodeAt(i + 1) === 0x7b) {
      const end = braceEnd(src, i);
      word += src.slice(i, end);
      i = end;
      continue;
    }
    word += src[i++];
  }
  if (inWord && word.length > 0) words.push(word);
  return words;
}

const RE_HEREDOC = /^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)$/;

function countQuotes(s: string): number {
  let k = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22 || c === 0x27) k++;
  }
  return k;
}

/**
 * BuildKit's `ParseHeredoc`: the heredoc a single word opens, or `undefined` when the word is
 * not a heredoc. Throws when the delimiter has unbalanced quotes.
 */
export function parseHeredoc(word: string): HeredocSpec | undefined {
  const m = RE_HEREDOC.exec(word);
  if (!m) return undefined;
  const rest = m[3]!;
  if (rest.length === 0) return undefined;
  const words = lexShellWords(rest);
  if (words.length !== 1) return undefined;
  const raw = lexShellWords(rest, { rawQuotes: true });
  if (raw.length !== 1) throw new Error(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  const name = words[0]!;
  const fd = m[1] === '' ? 0 : Number(m[1]);
  return {
    name,
    fileDescriptor: Number.isSafeInteger(fd) ? fd : 0,
    // Any quoting in the delimiter word turns expansion off.
    expand: countQuotes(name) === countQuotes(raw[0]!),
    chomp: m[2] === '-',
  };
}

/**
 * BuildKit's `heredocsFromLine`: every heredoc opened by a word of `line` (lexed with raw quotes
 * and escapes, always with escape `\`). A line the shell lexer cannot split opens none.
 */
export function heredocsFromLine(line: string): HeredocSpec[] {
  let words: string[];
  try {
    words = lexShellWords(line, { rawQuotes: true, rawEscapes: true });
  } catch {
    return [];
  }
  const out: HeredocSpec[] = [];
  for (const w of words) {
    const h = parseHeredoc(w);
    if (h) out.push(h);
  }
  return out;
}

/** BuildKit's `ChompHeredocContent`: removes the leading tabs of every line. */
export function chompHeredocContent(content: string): string {
  // Go's (?m)^ only starts a line after \n (JS's m flag would also honour \r, U+2028, U+2029).
  return content.replace(/(?<![^\n])\t+/g, '');
}

/** The index just past the `}` that closes the `${` at `i` (kept verbatim: unset variables stay as written). */
function braceEnd(src: string, i: number): number {
  const end = src.indexOf('}', i + 2);
  if (end < 0) throw new Error("missing '}'");
  return end + 1;
}
