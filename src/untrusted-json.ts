/**
 * JSON that kiln did not write (an OCI layout's index.json, an archive's manifest.json, a registry's manifest or
 * config) is parsed here. V8's SyntaxError quotes the text it could not parse (`Unexpected token 'r', "root:*:202"…
 * is not valid JSON`): when the file is a symlink to something private, or a registry answers with a page it should
 * not have, that would print its bytes. The error this throws says what was being read, never what it holds.
 */

/** A JSON document could not be parsed; the message names it and quotes nothing of it. */
export class UntrustedJsonError extends Error {
  override name = 'UntrustedJsonError';
}

/** `JSON.parse(text)`, failing with a message that names `what` and holds none of `text`. */
export function parseUntrustedJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // The cause is not attached either: its message is the one that quotes the text.
    throw new UntrustedJsonError(`${what} is not valid JSON`);
  }
}
