/**
 * `COPY --chmod` values: octal (`755`, `0644`) or symbolic (`u=rwx,g=rx,o=rx`, `a+x`).
 * Symbolic clauses apply in order starting from no permission bits, because kiln applies one mode to
 * everything a COPY writes (BuildKit does the same for octal modes).
 */
export function parseChmod(spec: string): number {
  if (/^[0-7]{3,4}$/.test(spec)) return Number.parseInt(spec, 8);
  let mode = 0;
  for (const clause of spec.split(',')) {
    const m = /^([ugoa]*)([+=-])([rwxXst]*)$/.exec(clause);
    if (!m) throw new Error(`invalid chmod parameter: ${spec}`);
    const who = m[1] || 'a';
    let bits = 0;
    for (const p of m[3]!) {
      const shiftBits = p === 'r' ? 4 : p === 'w' ? 2 : p === 'x' || p === 'X' ? 1 : 0;
      for (const w of who === 'a' ? 'ugo' : who) {
        const shift = w === 'u' ? 6 : w === 'g' ? 3 : 0;
        bits |= shiftBits << shift;
        if (p === 's' && w === 'u') bits |= 0o4000;
        if (p === 's' && w === 'g') bits |= 0o2000;
        if (p === 't') bits |= 0o1000;
      }
    }
    let mask = 0;
    for (const w of who === 'a' ? 'ugo' : who) mask |= w === 'u' ? 0o4700 : w === 'g' ? 0o2070 : 0o1007;
    if (m[2] === '=') mode = (mode & ~mask) | bits;
    else if (m[2] === '+') mode |= bits;
    else mode &= ~bits;
  }
  return mode;
}
