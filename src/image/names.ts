/** Image names in the forms archives use: containerd's full names and docker's short ones. */

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
