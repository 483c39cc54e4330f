/** JSON for fuzz cases (byte arrays as base64), so a finding can be written down and replayed. */
export function encodeCase(input: unknown): string {
  // The raw value (`this[k]`), not `v`: a Buffer's toJSON has already run on `v`.
  return (
    JSON.stringify(input, function (this: Record<string, unknown>, k: string, v: unknown) {
      const raw = this[k];
      return raw instanceof Uint8Array ? { $bytes: Buffer.from(raw).toString('base64') } : v;
    }) ?? 'null'
  );
}

/** The inverse of {@link encodeCase}. */
export function decodeCase(text: string): unknown {
  return JSON.parse(text, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && typeof (v as { $bytes?: unknown }).$bytes === 'string'
      ? new Uint8Array(Buffer.from((v as { $bytes: string }).$bytes, 'base64'))
      : v,
  );
}
