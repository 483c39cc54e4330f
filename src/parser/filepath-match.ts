/**
 * Go's `path/filepath.Match` on Unix, the one glob engine of kiln's: COPY and ADD source wildcards are matched with
 * it (BuildKit's copier resolves them with filepath.Match), and a `.dockerignore` pattern is valid exactly when
 * filepath.Match accepts it (patternmatcher checks `filepath.Match(pattern, ".")`; its own matching then runs a
 * regexp translation, see dockerignore.ts).
 *
 * It works on the UTF-8 bytes, as Go does: a `*` skips byte by byte, and `?` or a class then reads one rune, which
 * is U+FFFD for a byte in the middle of a character.
 */

/** Go's `filepath.ErrBadPattern` text. */
export const BAD_PATTERN = 'syntax error in pattern';

/** A malformed pattern (Go's `filepath.ErrBadPattern`). */
export class BadPatternError extends Error {
  override name = 'BadPatternError';
  constructor() {
    super(BAD_PATTERN);
  }
}

const STAR = 0x2a;
const QUESTION = 0x3f;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const BACKSLASH = 0x5c;
const CARET = 0x5e;
const DASH = 0x2d;
const SLASH = 0x2f;
const RUNE_ERROR = 0xfffd;

/** Go's `utf8.DecodeRune` on bytes that are valid UTF-8 except where a `*` cut a character: [rune, width]. */
function decodeRune(b: Uint8Array, i: number, end: number): [number, number] {
  const c = b[i]!;
  if (c < 0x80) return [c, 1];
  const n = c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (n === 0 || i + n > end) return [RUNE_ERROR, 1];
  let r = n === 2 ? c & 0x1f : n === 3 ? c & 0x0f : c & 0x07;
  for (let k = 1; k < n; k++) {
    const cc = b[i + k]!;
    if ((cc & 0xc0) !== 0x80) return [RUNE_ERROR, 1];
    r = (r << 6) | (cc & 0x3f);
  }
  return [r, n];
}

/** scanChunk: skips leading stars, then takes up to the next star outside a class. Returns [star, chunkEnd]. */
function scanChunk(p: Uint8Array, start: number): [boolean, number, number] {
  let i = start;
  let star = false;
  while (i < p.length && p[i] === STAR) {
    i++;
    star = true;
  }
  const chunkStart = i;
  let inRange = false;
  for (; i < p.length; i++) {
    const c = p[i];
    if (c === BACKSLASH) {
      if (i + 1 < p.length) i++;
    } else if (c === OPEN) inRange = true;
    else if (c === CLOSE) inRange = false;
    else if (c === STAR && !inRange) break;
  }
  return [star, chunkStart, i];
}

/** getEsc: one possibly escaped character of a class, at `i` of a chunk ending at `end`. Returns [rune, next]. */
function getEsc(p: Uint8Array, i: number, end: number): [number, number] {
  if (i >= end || p[i] === DASH || p[i] === CLOSE) throw new BadPatternError();
  if (p[i] === BACKSLASH) {
    i++;
    if (i >= end) throw new BadPatternError();
  }
  const [r, n] = decodeRune(p, i, end);
  if (r === RUNE_ERROR && n === 1) throw new BadPatternError();
  if (i + n >= end) throw new BadPatternError(); // the class is not terminated
  return [r, i + n];
}

/**
 * matchChunk: whether the chunk p[cs, ce) matches the start of s[si…]; the index in `s` after it, or -1. The whole
 * chunk is read even after a mismatch, so a malformed one always throws.
 */
function matchChunk(p: Uint8Array, cs: number, ce: number, s: Uint8Array, n: number, si: number): number {
  let failed = false;
  let i = cs;
  while (i < ce) {
    if (!failed && si >= n) failed = true;
    const c = p[i];
    if (c === OPEN) {
      let r = 0;
      if (!failed) {
        const [rune, width] = decodeRune(s, si, n);
        r = rune;
        si += width;
      }
      i++;
      let negated = false;
      if (i < ce && p[i] === CARET) {
        negated = true;
        i++;
      }
      let match = false;
      let nrange = 0;
      for (;;) {
        if (i < ce && p[i] === CLOSE && nrange > 0) {
          i++;
          break;
        }
        let lo: number;
        [lo, i] = getEsc(p, i, ce);
        let hi = lo;
        if (p[i] === DASH) [hi, i] = getEsc(p, i + 1, ce);
        if (lo <= r && r <= hi) match = true;
        nrange++;
      }
      if (match === negated) failed = true;
    } else if (c === QUESTION) {
      if (!failed) {
        if (s[si] === SLASH) failed = true;
        si += decodeRune(s, si, n)[1];
      }
      i++;
    } else {
      if (c === BACKSLASH) {
        i++;
        if (i >= ce) throw new BadPatternError();
      }
      if (!failed) {
        if (p[i] !== s[si]) failed = true;
        si++;
      }
      i++;
    }
  }
  return failed ? -1 : si;
}

/** Go's `filepath.Match(pattern, name)` (Unix): whether all of `name` matches; throws {@link BadPatternError}. */
export function filepathMatch(pattern: string, name: string): boolean {
  const s = Buffer.from(name, 'utf8');
  return matchBytes(Buffer.from(pattern, 'utf8'), s, s.length);
}

/** Match on the first `n` bytes of `s`. */
function matchBytes(p: Uint8Array, s: Uint8Array, n: number): boolean {
  let pi = 0;
  let si = 0;
  pattern: while (pi < p.length) {
    const [star, cs, ce] = scanChunk(p, pi);
    pi = ce;
    if (star && cs === ce) {
      // A trailing * matches the rest unless it holds a /.
      for (let i = si; i < n; i++) if (s[i] === SLASH) return false;
      return true;
    }
    const t = matchChunk(p, cs, ce, s, n, si);
    // The last chunk must use up the name; otherwise the star may still find a match further on.
    if (t >= 0 && (t === n || pi < p.length)) {
      si = t;
      continue;
    }
    if (star) {
      for (let i = si; i < n && s[i] !== SLASH; i++) {
        const u = matchChunk(p, cs, ce, s, n, i + 1);
        if (u >= 0) {
          if (pi >= p.length && u < n) continue;
          si = u;
          continue pattern;
        }
      }
    }
    // Before answering no, the rest of the pattern must be well formed.
    while (pi < p.length) {
      const [, rs, re] = scanChunk(p, pi);
      pi = re;
      matchChunk(p, rs, re, s, n, n);
    }
    return false;
  }
  return si === n;
}

/** Whether a COPY source path segment holds a wildcard (`*`, `?` or `[`), so that it is matched against names. */
export function hasWildcard(segment: string): boolean {
  return /[*?[]/.test(segment);
}

/**
 * A matcher of directory entry names for one wildcard segment of a COPY source: filepath.Match, where a malformed
 * pattern matches nothing (BuildKit's copier ignores the error: `match, _ := filepath.Match(…)`).
 */
export function segmentMatcher(segment: string): (name: string) => boolean {
  const p = Buffer.from(segment, 'utf8');
  // Names are encoded into one buffer of the matcher's own (no allocation per name: a COPY may test thousands).
  let scratch = new Uint8Array(256);
  const encoder = new TextEncoder();
  return (name) => {
    if (name.length * 3 > scratch.length) scratch = new Uint8Array(name.length * 3);
    const { written } = encoder.encodeInto(name, scratch);
    try {
      return matchBytes(p, scratch, written);
    } catch (err) {
      if (err instanceof BadPatternError) return false;
      throw err;
    }
  };
}
