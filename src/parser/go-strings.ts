/**
 * Go's string helpers the parser needs byte for byte (`unicode.IsSpace`, `strings.TrimSpace`, `strconv.Quote`), in
 * one place: the line parser, the AST dump, the shell lexer and the .dockerignore reader all use them.
 */

/** Go's `unicode.IsSpace` for one UTF-16 code unit (none of Go's spaces is astral). */
export function isGoSpace(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  if (c < 0x85) return false;
  return (
    c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000
  );
}

/** Go's `strings.TrimSpace` (Unicode white space, both ends). */
export function trimSpace(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isGoSpace(s.charCodeAt(a))) a++;
  while (b > a && isGoSpace(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Go's `strings.TrimLeftFunc(s, unicode.IsSpace)`. */
export function trimLeftSpace(s: string): string {
  let a = 0;
  while (a < s.length && isGoSpace(s.charCodeAt(a))) a++;
  return a === 0 ? s : s.slice(a);
}

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;
const SIMPLE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * Go's `strconv.Quote`: printable runes raw, `\a \b \f \n \r \t \v`, `\xNN` for other
 * controls, `\uNNNN`/`\UNNNNNNNN` for other non-printable runes.
 */
export function goQuote(s: string): string {
  if (SIMPLE.test(s)) return `"${s}"`;
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c >= 0x20 && c < 0x7f) out += ch;
    else if (c < 0x20 || c === 0x7f) {
      switch (c) {
        case 7: out += '\\a'; break;
        case 8: out += '\\b'; break;
        case 9: out += '\\t'; break;
        case 10: out += '\\n'; break;
        case 11: out += '\\v'; break;
        case 12: out += '\\f'; break;
        case 13: out += '\\r'; break;
        default: out += `\\x${c.toString(16).padStart(2, '0')}`;
      }
    } else if (c >= 0xd800 && c <= 0xdfff) out += '\ufffd'; // a lone surrogate: Go would hold U+FFFD
    else if (PRINTABLE.test(ch)) out += ch;
    else if (c <= 0xffff) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += `\\U${c.toString(16).padStart(8, '0')}`;
  }
  return `${out}"`;
}
