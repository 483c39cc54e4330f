/**
 * "Did you mean …?" suggestions for misspelled instructions, flags, mount keys and stage names,
 * in the spirit of BuildKit's `suggest` package: the closest candidate by edit distance wins,
 * provided it is close enough for the length of the word that was written.
 */

/** Levenshtein distance (insert, delete, substitute each cost 1) between two strings. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/**
 * The largest edit distance still worth suggesting for a word of this length.
 * Short words allow 2 edits (`tmp` → `tmpfs`, `bulid` → `build`); longer words one more edit per
 * three characters, capped at 4 so an unrelated word never gets a suggestion.
 */
export function maxSuggestDistance(length: number): number {
  return Math.min(4, Math.max(2, Math.floor(length / 3)));
}

/**
 * The candidate closest to `value`, or undefined when none is close enough, or when `value`
 * matches a candidate exactly (then the error was about something else and a suggestion would mislead).
 * Returns the candidate as spelled in `candidates`.
 * @param caseSensitive compare exactly; otherwise both sides are lower-cased first
 */
export function suggest(value: string, candidates: Iterable<string>, caseSensitive = false): string | undefined {
  if (value === '') return undefined;
  const norm = (s: string): string => (caseSensitive ? s : s.toLowerCase());
  const v = norm(value);
  let best: string | undefined;
  let bestDist = Infinity;
  for (const candidate of candidates) {
    const c = norm(candidate);
    if (c === v) return undefined;
    const d = editDistance(v, c);
    // A suggestion must keep something of the word: never propose a full rewrite.
    if (d < bestDist && d <= maxSuggestDistance(v.length) && d < Math.max(v.length, c.length)) {
      best = candidate;
      bestDist = d;
    }
  }
  return best;
}

/** Appends ` (did you mean X?)` to `message` when {@link suggest} finds a candidate. */
export function withSuggestion(message: string, value: string, candidates: Iterable<string>, caseSensitive = false): string {
  const match = suggest(value, candidates, caseSensitive);
  return match === undefined ? message : `${message} (did you mean ${match}?)`;
}
