/** Image names as the store keys them: `name:tag`, with `:latest` added when no tag or digest is given (as docker does). */

/** `app` → `app:latest`, `reg:5000/app` → `reg:5000/app:latest`; `app:1` and `app@sha256:…` unchanged. */
export function normalizeTag(name: string): string {
  if (name.includes('@')) return name;
  const lastSlash = name.lastIndexOf('/');
  const lastColon = name.lastIndexOf(':');
  return lastColon > lastSlash ? name : `${name}:latest`;
}

/** Checks a `-t` value the way docker build does; returns an error message or undefined. */
export function validateTag(name: string): string | undefined {
  const re = /^(?:[a-zA-Z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$/;
  return re.test(name) ? undefined : `invalid tag "${name}": invalid reference format`;
}
