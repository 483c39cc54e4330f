/** JSON for fuzz cases (byte arrays as base64), so a finding can be written down and replayed. */
export function encodeCase(input: unknown): string {
  return JSON.stringify(input, (_k, v: unknown) => (v instanceof Uint8Array ? { $bytes: Buffer.from(v).toString('base64') } : v)) ?? 'null';
}

/** The inverse of {@link encodeCase}. */
export function decodeCase(text: string): unknown {
  return JSON.parse(text, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && typeof (v as { $bytes?: unknown }).$bytes === 'string'
      ? new Uint8Array(Buffer.from((v as { $bytes: string }).$bytes, 'base64'))
      : v,
  );
}
