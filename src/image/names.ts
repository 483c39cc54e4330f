/** Image names in the forms the store and archives use: the store's `name:tag`, containerd's full names and docker's short ones. */

/** `app` → `app:latest`, `reg:5000/app` → `reg:5000/app:latest`; `app:1` and `app@sha256:…` unchanged. */
export function normalizeTag(name: string): string {
  if (name.includes('@')) return name;
  const lastSlash = name.lastIndexOf('/');
  const lastColon = name.lastIndexOf(':');
  return lastColon > lastSlash ? name : `${name}:latest`;
}

/**
 * An image name in the full form BuildKit writes into archives (docker's ParseNormalizedNamed + TagNameOnly):
 * `app` → `docker.io/library/app:latest`, `me/app:1` → `docker.io/me/app:1`, `host:5000/app` → `host:5000/app:latest`.
 */
export function fullImageName(ref: string): string {
  const at = ref.indexOf('@');
  const name = at < 0 ? ref : ref.slice(0, at);
  const digest = at < 0 ? '' : ref.slice(at);
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  let full: string;
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    full = first === 'index.docker.io' ? `docker.io${name.slice(slash)}` : name;
  } else full = slash < 0 ? `docker.io/library/${name}` : `docker.io/${name}`;
  const tagged = /:[^/]*$/.test(full) || digest !== '' ? full : `${full}:latest`;
  return `${tagged}${digest}`;
}

/** docker's short form of a name (`docker.io/library/app:1` → `app:1`), as `docker save` writes RepoTags. */
export function familiarImageName(ref: string): string {
  const full = fullImageName(ref);
  if (full.startsWith('docker.io/library/') && !full.slice('docker.io/library/'.length).includes('/')) return full.slice('docker.io/library/'.length);
  if (full.startsWith('docker.io/')) return full.slice('docker.io/'.length);
  return full;
}
