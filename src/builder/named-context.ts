/**
 * Named build contexts (`--build-context NAME=VALUE`, the API's `buildContexts`) and the line between what the
 * command line may name and what a Dockerfile may name.
 *
 * A named context is a local directory (`DIR`, absolute or relative to the working directory, with its own
 * .dockerignore), an OCI layout (`oci-layout://DIR[:TAG]`) or an image (`docker-image://REF`). In a
 * Dockerfile, `FROM NAME`, `COPY --from=NAME` and `RUN --mount=from=NAME` use it, ahead of a stage or image of
 * the same name (as BuildKit: a stage with that name is overridden).
 *
 * Host paths come only from there. A Dockerfile is untrusted text: a `FROM` or `--from` value it writes is an
 * image reference, and one with a scheme (`oci-layout://…`, `docker-image://…`) is refused as BuildKit refuses it
 * (`invalid reference format`), before anything on the host is looked at.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { BuildError } from '../errors.js';

export type NamedContext =
  | { readonly kind: 'local'; readonly dir: string }
  | { readonly kind: 'oci-layout'; readonly path: string; readonly ref?: string }
  | { readonly kind: 'image'; readonly ref: string };

const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Reads one `--build-context` value. A relative directory is taken from `cwd`; a directory that does not exist
 * is a usage error naming the context, raised before the build starts.
 */
export function parseNamedContext(name: string, value: string, cwd: string): NamedContext {
  if (value.startsWith('oci-layout://')) {
    const rest = value.slice('oci-layout://'.length);
    const m = /^(.*?)(?::([\w][\w.-]*))?$/.exec(rest);
    const dir = m?.[1] || rest;
    const tag = m?.[2];
    return { kind: 'oci-layout', path: path.resolve(cwd, dir), ...(tag ? { ref: tag } : {}) };
  }
  if (value.startsWith('docker-image://')) return { kind: 'image', ref: value.slice('docker-image://'.length) };
  if (SCHEME.test(value)) {
    throw new BuildError('USAGE', `--build-context ${name}=${value}: unsupported context source (kiln takes a directory, oci-layout:// or docker-image://)`);
  }
  const dir = path.resolve(cwd, value);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new BuildError('USAGE', `--build-context ${name}=${value}: not a directory`);
  return { kind: 'local', dir };
}

/** The named contexts of a build, read once. Names match as written or lower-cased (stage names are lower-case). */
export function parseNamedContexts(values: Readonly<Record<string, string>>, cwd: string): ReadonlyMap<string, NamedContext> {
  const out = new Map<string, NamedContext>();
  for (const [name, value] of Object.entries(values)) out.set(name, parseNamedContext(name, value, cwd));
  return out;
}

/** The named context `ref` names, if any. */
export function lookupNamedContext(contexts: ReadonlyMap<string, NamedContext>, ref: string): NamedContext | undefined {
  return contexts.get(ref) ?? contexts.get(ref.toLowerCase());
}

/**
 * Checks an image reference written in a Dockerfile (`FROM`, `COPY --from`, `RUN --mount=from=`): a value with a
 * scheme names a host path or another source, which only the command line may do.
 */
export function checkDockerfileImageRef(ref: string): void {
  if (SCHEME.test(ref)) {
    throw new BuildError(
      'DOCKERFILE',
      `invalid reference format: "${ref}" (a Dockerfile names images only; local directories and OCI layouts are given with --build-context NAME=…)`,
    );
  }
}
