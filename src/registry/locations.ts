/**
 * Where blobs are known to exist in registries (`registry/repository`), kept as small build-cache
 * records of the store, so that a push can mount a blob from another repository instead of uploading it.
 */
import type { Digest } from '../oci/types.js';
import type { LayerStoreApi } from '../store/types.js';

interface LocationRecord {
  readonly locations: string[];
}

const MAX_LOCATIONS = 16;

function cacheKey(digest: Digest): string {
  return `registry-blob-${digest.slice('sha256:'.length)}`;
}

/** The repositories (`registry/repository`) known to hold a blob, most recent first. */
export async function blobLocations(store: LayerStoreApi, digest: Digest): Promise<string[]> {
  const record = await store.getCache<LocationRecord>(cacheKey(digest));
  return Array.isArray(record?.locations) ? record.locations.filter((l) => typeof l === 'string') : [];
}

/** Records that `registry/repository` holds a blob. */
export async function recordBlobLocation(store: LayerStoreApi, digest: Digest, registry: string, repository: string): Promise<void> {
  const here = `${registry}/${repository}`;
  const known = await blobLocations(store, digest);
  if (known[0] === here) return;
  await store.putCache(cacheKey(digest), { locations: [here, ...known.filter((l) => l !== here)].slice(0, MAX_LOCATIONS) });
}
