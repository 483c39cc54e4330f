/**
 * Image references the way Docker reads them: `[registry[:port]/]repository[:tag][@sha256:<hex>]`.
 *
 * The first path component is a registry when it contains a `.` or a `:`, is `localhost`, or has an
 * uppercase letter (repositories are lowercase); otherwise the registry is Docker Hub (`docker.io`)
 * and a single-component name gets the `library/` prefix (`busybox` → `docker.io/library/busybox:latest`).
 */
import type { Digest } from '../oci/types.js';

/** A parsed image reference. */
export interface ImageReference {
  /** Registry host with optional port, e.g. `docker.io`, `127.0.0.1:5000`, `[::1]:5000`. */
  readonly registry: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  readonly repository: string;
  /** The tag; `latest` when the reference names neither a tag nor a digest. */
  readonly tag?: string;
  readonly digest?: Digest;
}

/** Docker Hub's canonical name. */
export const DEFAULT_REGISTRY = 'docker.io';

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
// A hostname (labels of letters, digits and dashes), or an IPv6 literal in brackets, with an optional port.
const DOMAIN = /^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*|\[[0-9a-fA-F:.%]+\])(?::[0-9]+)?$/;

/**
 * Parses an image reference. Throws a plain `Error` with a one-line message when it is malformed
 * (callers wrap it at their boundary).
 *
 * @example parseReference('127.0.0.1:5000/app:1.0') // { registry: '127.0.0.1:5000', repository: 'app', tag: '1.0' }
 */
export function parseReference(ref: string): ImageReference {
  if (ref === '' || ref !== ref.trim()) throw new Error(`invalid reference format: "${ref}"`);
  let rest = ref;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    const d = rest.slice(at + 1);
    if (!DIGEST.test(d)) throw new Error(`invalid reference format: "${ref}" (bad digest "${d}")`);
    digest = d as Digest;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    if (!TAG.test(tag)) throw new Error(`invalid reference format: "${ref}" (bad tag "${tag}")`);
    rest = rest.slice(0, colon);
  }
  let registry = DEFAULT_REGISTRY;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first !== first.toLowerCase()) {
      if (!DOMAIN.test(first)) throw new Error(`invalid reference format: "${ref}" (bad registry "${first}")`);
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (registry === 'index.docker.io') registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  if (repository.length === 0 || !repository.split('/').every((c) => COMPONENT.test(c))) {
    const upper = repository !== repository.toLowerCase() ? ' (repository name must be lowercase)' : '';
    throw new Error(`invalid reference format: "${ref}"${upper}`);
  }
  if (registry.length + 1 + repository.length > 255) throw new Error(`invalid reference format: "${ref}" (name longer than 255 characters)`);
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** The full form of a reference: `registry/repository[:tag][@digest]` (`docker.io/library/busybox:latest`). */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The host the registry API is served from: Docker Hub's API lives at `registry-1.docker.io`. */
export function registryApiHost(registry: string): string {
  return registry === DEFAULT_REGISTRY ? 'registry-1.docker.io' : registry;
}

/** Splits `host[:port]` (IPv6 literals in brackets) into the bare host and the port text. */
export function splitHostPort(host: string): { hostname: string; port: string | undefined } {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    const port = host.slice(end + 1);
    return { hostname: host.slice(1, end), port: port.startsWith(':') ? port.slice(1) : undefined };
  }
  const colon = host.lastIndexOf(':');
  if (colon !== -1 && host.indexOf(':') === colon) return { hostname: host.slice(0, colon), port: host.slice(colon + 1) };
  return { hostname: host, port: undefined };
}

/** True for loopback hosts (with or without a port): `localhost`, `127.0.0.0/8`, `::1`. */
export function isLoopback(host: string): boolean {
  const { hostname } = splitHostPort(host);
  const h = hostname.toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const m = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}
