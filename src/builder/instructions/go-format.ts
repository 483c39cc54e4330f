/** Go's formatting of values, as BuildKit writes them into history lines (`%v`, `%q`, time.Duration). */

/** Go's `%v` of a string slice, as BuildKit writes SHELL history: `[a b]`. */
export function goList(list: readonly string[]): string {
  return `[${list.join(' ')}]`;
}

/** Go's `%q` of a string slice, as BuildKit writes CMD/ENTRYPOINT history: `["a" "b"]`. */
export function goQuoteList(list: readonly string[]): string {
  return `[${list.map((s) => JSON.stringify(s)).join(' ')}]`;
}

/** Go's time.Duration String(): `0s`, `1.5ms`, `5s`, `1m30s`, `1h0m0s`. */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const sign = ns < 0 ? '-' : '';
  let u = Math.abs(ns);
  // Integer part and the fraction with trailing zeros dropped, as Go's fmtFrac does.
  const withFrac = (v: number, unit: number): string => {
    const frac = String(v % unit).padStart(String(unit).length - 1, '0').replace(/0+$/, '');
    return `${Math.floor(v / unit)}${frac ? `.${frac}` : ''}`;
  };
  if (u < 1e3) return `${sign}${u}ns`;
  if (u < 1e6) return `${sign}${withFrac(u, 1e3)}µs`;
  if (u < 1e9) return `${sign}${withFrac(u, 1e6)}ms`;
  const hours = Math.floor(u / 3.6e12);
  u -= hours * 3.6e12;
  const minutes = Math.floor(u / 6e10);
  u -= minutes * 6e10;
  return `${sign}${hours ? `${hours}h` : ''}${hours || minutes ? `${minutes}m` : ''}${withFrac(u, 1e9)}s`;
}
