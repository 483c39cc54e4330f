/** Image names as the store keys them: `name:tag`, with `:latest` added when no tag or digest is given (as docker does). */

// The store's name form is an image-naming fact: image/names.ts keeps it (the sources resolve names too).
export { normalizeTag } from '../image/names.js';

/** Checks a `-t` value the way docker build does; returns an error message or undefined. */
export function validateTag(name: string): string | undefined {
  const re = /^(?:[a-zA-Z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$/;
  return re.test(name) ? undefined : `invalid tag "${name}": invalid reference format`;
}
