/**
 * The build cache shared through a registry: `--cache-to type=registry,ref=HOST/REPO:TAG[,mode=min|max]`,
 * `--cache-to type=inline` and `--cache-from type=registry,ref=…`, named as buildx names them.
 *
 * A step's cache key (`cache-key.ts`) is a sha256 chain over sha256 inputs only, so the same key names
 * the same step on every machine. A shared cache is a list of records `{ key, layer, created }`:
 *
 * Registry cache (`type=registry`): an OCI image manifest pushed at `ref`:
 * ```json
 * { "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 *   "config": { "mediaType": "application/vnd.kiln.cache.config.v1+json", "digest": "sha256:…", "size": 123 },
 *   "layers": [ { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:…", "size": 456 }, … ],
 *   "annotations": { "io.kiln.cache.version": "1" } }
 * ```
 * whose config blob is a {@link CacheConfig}:
 * ```json
 * { "kilnCacheVersion": 1,
 *   "records": [ { "key": "<64 hex>", "created": "2024-…Z",
 *                  "layer": { "diffId": "sha256:…", "digest": "sha256:… (gzip blob)", "size": 456,
 *                             "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip" } },
 *                { "key": "<64 hex>", "created": "…", "layer": null } ],
 *   "cacheMounts": [ { "name": "<32 hex: the store's cache-mounts/ dir>", "layer": { …as above… } } ] }
 * ```
 * Records are sorted by key. Every layer a record names (and every cache-mount tar) is one of the
 * manifest's layers, so the registry keeps the blobs for as long as the manifest exists.
 * `mode=min` (the default) exports the steps whose layers the final image has (the target stage's
 * chain); `mode=max` exports every step of every stage the build ran. `cache-mounts=true` adds the
 * `RUN --mount=type=cache` directories as gzip tars (made and extracted like layers).
 *
 * Inline cache (`type=inline`): the min-mode records go into the image config itself, as the top-level
 * field `"kiln.cache.v0": { "kilnCacheVersion": 1, "records": [...] }`, and the record layers are the
 * image's own (gzip) layer blobs, so pushing the image carries its cache. This changes the image's
 * config digest, as BuildKit's inline cache does. `--cache-from type=registry,ref=IMAGE` reads either
 * form.
 *
 * Import is lazy: the manifest and config are fetched at build start (a missing ref is a warning, not
 * an error), and a layer is downloaded only when a step misses the local cache and hits a record. The
 * blob is verified twice (its digest, then the diffID of the gunzipped tar, as a pull does); a record
 * whose blob fails verification is refused with a warning and the step runs.
 */
import { parseUntrustedJson } from '../untrusted-json.js';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Descriptor, Digest, ImageConfig, ImageManifest } from '../oci/types.js';
import { RegistryClient, fileBlobSource } from '../registry/client.js';
import { hostPlatform } from '../oci/platform.js';
import { sha256Digest } from '../oci/digest.js';
import { pullLayer } from '../registry/pull.js';
import { formatReference, parseReference } from '../registry/reference.js';
import type { ImageReference } from '../registry/reference.js';
import { extractLayer } from '../store/extract.js';
import type { LayerStore } from '../store/layer-store.js';
import { snapshotDirectory } from '../store/snapshot.js';
import type { LayerInfo } from '../store/types.js';
import type { CacheExportSpec, CacheImportSpec } from './options.js';

/** Media type of the registry cache's config blob. */
export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.kiln.cache.config.v1+json';
/** The image config field that holds an inline cache. */
export const INLINE_CACHE_FIELD = 'kiln.cache.v0';
/** Manifest layer annotation naming the cache-mount directory a blob holds. */
export const CACHE_MOUNT_ANNOTATION = 'io.kiln.cache.mount';

/** A layer as a shared cache record names it: the compressed blob in the registry and its diffID. */
export interface CacheLayerRef {
  readonly diffId: Digest;
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: string;
}

/** One step of a shared cache. `layer` is null for a step that changed no file (e.g. WORKDIR of an existing dir). */
export interface RemoteCacheRecord {
  readonly key: string;
  readonly layer: CacheLayerRef | null;
  readonly created: string;
}

/** The config blob of a registry cache (and the value of an inline cache field). */
export interface CacheConfig {
  readonly kilnCacheVersion: 1;
  readonly records: readonly RemoteCacheRecord[];
  readonly cacheMounts?: ReadonlyArray<{ readonly name: string; readonly layer: CacheLayerRef }>;
}

/** A step's record in the local store (the shape `layer-step.ts` keeps under the step's key). */
export interface StepCacheRecord {
  readonly layer: LayerInfo | null;
  readonly created: string;
}

/** What the step executor asks of a shared cache: a lookup after a local miss, and every step's outcome. */
export interface StepCacheHook {
  /** The record for `key`, its layer imported into the local store; undefined on a miss. */
  lookup(key: string): Promise<StepCacheRecord | undefined>;
  /** Notes a step's record and the stage's layers after it (for export). */
  record(key: string, record: StepCacheRecord, layersAfter: readonly LayerInfo[]): void;
}

/** Options of {@link RemoteCache.open}. */
export interface RemoteCacheOptions {
  readonly cacheFrom: readonly CacheImportSpec[];
  readonly cacheTo: readonly CacheExportSpec[];
  readonly insecureRegistries?: readonly string[];
  readonly signal?: AbortSignal | undefined;
  /** Non-fatal problems (a missing cache ref, a refused blob). */
  readonly warn: (message: string) => void;
  readonly progress?: (message: string) => void;
}

interface Source {
  readonly client: RegistryClient;
  readonly repo: string;
  readonly name: string;
}

interface Noted {
  readonly record: StepCacheRecord;
  readonly layersAfter: readonly Digest[];
}

const HEX64 = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MOUNT_NAME = /^[0-9a-f]{32}$/;
/** Cache configs are small JSON; anything larger is refused rather than buffered. */
const MAX_CONFIG_BYTES = 64 * 1024 * 1024;

function validLayerRef(l: unknown): l is CacheLayerRef {
  const r = l as Partial<CacheLayerRef> | null;
  return (
    typeof r === 'object' && r !== null && typeof r.diffId === 'string' && DIGEST.test(r.diffId) && typeof r.digest === 'string' &&
    DIGEST.test(r.digest) && typeof r.size === 'number' && Number.isSafeInteger(r.size) && r.size >= 0 && typeof r.mediaType === 'string'
  );
}

/** Checks a parsed cache config; malformed records are dropped (a shared cache is untrusted input). */
export function parseCacheConfig(json: unknown): CacheConfig | undefined {
  const c = json as Partial<CacheConfig> | null;
  if (typeof c !== 'object' || c === null || c.kilnCacheVersion !== 1 || !Array.isArray(c.records)) return undefined;
  const records = c.records.filter(
    (r): r is RemoteCacheRecord => typeof r === 'object' && r !== null && typeof r.key === 'string' && HEX64.test(r.key) && typeof r.created === 'string' && (r.layer === null || validLayerRef(r.layer)),
  );
  const mounts = Array.isArray(c.cacheMounts) ? c.cacheMounts.filter((m) => typeof m === 'object' && m !== null && typeof m.name === 'string' && MOUNT_NAME.test(m.name) && validLayerRef(m.layer)) : [];
  return { kilnCacheVersion: 1, records, ...(mounts.length > 0 ? { cacheMounts: mounts } : {}) };
}

/** Reads a small blob whole, verifying its digest. */
async function fetchSmallBlob(client: RegistryClient, repo: string, digest: Digest, signal: AbortSignal | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of client.getBlob(repo, digest, signal)) {
    size += chunk.length;
    if (size > MAX_CONFIG_BYTES) throw new RegistryError(`blob ${digest} is too large for a cache config`);
    chunks.push(Buffer.from(chunk));
  }
  const bytes = Buffer.concat(chunks);
  if (sha256Digest(bytes) !== digest) throw new RegistryError(`refused blob ${digest}: content does not match its digest`);
  return bytes;
}

/**
 * A build's shared cache: the records imported from `--cache-from` sources and the steps noted for
 * `--cache-to` exports. One per build.
 */
export class RemoteCache implements StepCacheHook {
  readonly #store: LayerStore;
  readonly #options: RemoteCacheOptions;
  readonly #imported = new Map<string, { record: RemoteCacheRecord; source: Source }>();
  readonly #lookups = new Map<string, Promise<StepCacheRecord | undefined>>();
  readonly #noted = new Map<string, Noted>();

  private constructor(store: LayerStore, options: RemoteCacheOptions) {
    this.#store = store;
    this.#options = options;
  }

  /** Fetches the records of every `cacheFrom` source (and imports their cache mounts when the store has none yet). */
  static async open(store: LayerStore, options: RemoteCacheOptions): Promise<RemoteCache> {
    const cache = new RemoteCache(store, options);
    for (const spec of options.cacheFrom) await cache.#load(spec);
    return cache;
  }

  #client(ref: ImageReference): RegistryClient {
    return new RegistryClient(ref.registry, { insecureRegistries: [...(this.#options.insecureRegistries ?? [])] });
  }

  async #load(spec: CacheImportSpec): Promise<void> {
    const { signal } = this.#options;
    const ref = parseCacheRef('--cache-from', spec.ref);
    const name = formatReference(ref);
    const client = this.#client(ref);
    const source: Source = { client, repo: ref.repository, name };
    let manifest: ImageManifest;
    try {
      manifest = (await client.resolveManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest', hostPlatform(), signal)).parsed;
    } catch (err) {
      signal?.throwIfAborted();
      this.#options.warn(`cache source ${name} not loaded: ${messageOf(err)}`);
      return;
    }
    let config: CacheConfig | undefined;
    try {
      const bytes = await fetchSmallBlob(client, ref.repository, manifest.config.digest, signal);
      const json = parseUntrustedJson(bytes.toString('utf8'), `cache config ${manifest.config.digest}`) as Record<string, unknown>;
      // A registry cache's config is the cache; an image's config may carry an inline cache.
      config = manifest.config.mediaType === CACHE_CONFIG_MEDIA_TYPE ? parseCacheConfig(json) : parseCacheConfig(json[INLINE_CACHE_FIELD]);
    } catch (err) {
      signal?.throwIfAborted();
      this.#options.warn(`cache source ${name} not loaded: ${messageOf(err)}`);
      return;
    }
    if (config === undefined) {
      this.#options.warn(`cache source ${name} holds no kiln build cache`);
      return;
    }
    let n = 0;
    for (const record of config.records) {
      if (this.#imported.has(record.key)) continue; // the first source that names a key wins
      this.#imported.set(record.key, { record, source });
      n++;
    }
    this.#options.progress?.(`cache ${name}: ${String(n)} records`);
    for (const m of config.cacheMounts ?? []) await this.#importCacheMount(m.name, m.layer, source);
  }

  /** Extracts a cache-mount tar into `cache-mounts/<name>` unless that directory exists already. */
  async #importCacheMount(name: string, layer: CacheLayerRef, source: Source): Promise<void> {
    const { signal } = this.#options;
    const dir = path.join(this.#store.root, 'cache-mounts', name);
    if (await stat(dir).catch(() => undefined)) return;
    const tmp = path.join(this.#store.root, 'tmp', `cache-mount-${name}-${String(process.pid)}-${Date.now().toString(36)}`);
    try {
      await this.#pullBlob(layer, source);
      await mkdir(tmp, { recursive: true });
      await extractLayer(await this.#store.openLayerTar(layer.diffId, signal), tmp, { mode: 'apply', ...(signal ? { signal } : {}) });
      await mkdir(path.dirname(dir), { recursive: true });
      await rename(tmp, dir);
      this.#options.progress?.(`cache mount ${name} imported from ${source.name}`);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      signal?.throwIfAborted();
      this.#options.warn(`cache mount ${name} from ${source.name} not imported: ${messageOf(err)}`);
    }
  }

  /** Downloads a record's blob into the store (verified: blob digest, then diffID) unless it is there. */
  async #pullBlob(layer: CacheLayerRef, source: Source): Promise<LayerInfo> {
    const have = await this.#store.findLayerBlob(layer.diffId);
    if (have !== undefined) return have;
    const desc: Descriptor = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
    await pullLayer(source.client, this.#store, source.repo, desc, layer.diffId, this.#options.signal, () => {});
    const local = await this.#store.findLayerBlob(layer.diffId);
    if (local === undefined) throw new RegistryError(`layer ${layer.diffId} missing after its download`);
    return local;
  }

  lookup(key: string): Promise<StepCacheRecord | undefined> {
    let p = this.#lookups.get(key);
    if (p === undefined) {
      p = this.#lookup(key);
      this.#lookups.set(key, p);
    }
    return p;
  }

  async #lookup(key: string): Promise<StepCacheRecord | undefined> {
    const found = this.#imported.get(key);
    if (found === undefined) return undefined;
    const { record, source } = found;
    let layer: LayerInfo | null = null;
    if (record.layer !== null) {
      try {
        layer = await this.#pullBlob(record.layer, source);
      } catch (err) {
        this.#options.signal?.throwIfAborted();
        this.#options.warn(`cache record ${key.slice(0, 12)} from ${source.name} refused: ${messageOf(err)}`);
        return undefined;
      }
    }
    const local: StepCacheRecord = { layer, created: record.created };
    // Kept locally, so the next build hits without the registry.
    await this.#store.putCache(key, local);
    return local;
  }

  record(key: string, record: StepCacheRecord, layersAfter: readonly LayerInfo[]): void {
    this.#noted.set(key, { record, layersAfter: layersAfter.map((l) => l.diffId) });
  }

  /** The noted steps of a mode, sorted by key: `min` keeps those whose layers are a prefix of the final image's. */
  #select(mode: 'min' | 'max', finalDiffIds: readonly Digest[]): Array<[string, StepCacheRecord]> {
    const out: Array<[string, StepCacheRecord]> = [];
    for (const [key, n] of this.#noted) {
      if (mode === 'min' && !(n.layersAfter.length <= finalDiffIds.length && n.layersAfter.every((d, i) => finalDiffIds[i] === d))) continue;
      out.push([key, n.record]);
    }
    return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async #gzipRef(layer: LayerInfo): Promise<CacheLayerRef> {
    const { signal } = this.#options;
    const gz = await this.#store.compressLayer(layer.diffId, 'gzip', signal ? { signal } : {});
    return { diffId: layer.diffId, digest: gz.digest, size: gz.size, mediaType: gz.mediaType };
  }

  async #records(mode: 'min' | 'max', finalDiffIds: readonly Digest[]): Promise<RemoteCacheRecord[]> {
    const out: RemoteCacheRecord[] = [];
    for (const [key, r] of this.#select(mode, finalDiffIds)) {
      out.push({ key, created: r.created, layer: r.layer === null ? null : await this.#gzipRef(r.layer) });
    }
    return out;
  }

  /**
   * With `--cache-to type=inline`, adds the min-mode records to the image config (field
   * {@link INLINE_CACHE_FIELD}) before the image is stored and pushed.
   */
  async decorateConfig(config: ImageConfig, finalLayers: readonly LayerInfo[]): Promise<void> {
    if (!this.#options.cacheTo.some((s) => s.type === 'inline')) return;
    const records = await this.#records('min', finalLayers.map((l) => l.diffId));
    const value: CacheConfig = { kilnCacheVersion: 1, records };
    (config as ImageConfig & Record<string, unknown>)[INLINE_CACHE_FIELD] = value;
  }

  /** Pushes every `type=registry` cache export. */
  async export(finalLayers: readonly LayerInfo[]): Promise<void> {
    for (const spec of this.#options.cacheTo) {
      if (spec.type === 'registry') await this.#exportRegistry(spec, finalLayers.map((l) => l.diffId));
    }
  }

  async #exportRegistry(spec: Extract<CacheExportSpec, { type: 'registry' }>, finalDiffIds: readonly Digest[]): Promise<void> {
    const { signal } = this.#options;
    const ref = parseCacheRef('--cache-to', spec.ref);
    const name = formatReference(ref);
    this.#options.progress?.(`exporting cache to ${name}`);
    const client = this.#client(ref);
    const repo = ref.repository;
    const layers = new Map<Digest, Descriptor>();
    const upload = async (digest: Digest, size: number): Promise<void> => {
      signal?.throwIfAborted();
      if ((await client.headBlob(repo, digest, signal)) !== undefined) return;
      await client.uploadBlob(repo, digest, fileBlobSource(this.#store.blobPath(digest), size), signal ? { signal } : {});
    };
    const addLayer = async (l: CacheLayerRef, annotations?: Record<string, string>): Promise<void> => {
      if (layers.has(l.digest)) return;
      await upload(l.digest, l.size);
      layers.set(l.digest, { mediaType: l.mediaType, digest: l.digest, size: l.size, ...(annotations ? { annotations } : {}) });
    };

    const records = await this.#records(spec.mode ?? 'min', finalDiffIds);
    for (const r of records) if (r.layer !== null) await addLayer(r.layer);
    const cacheMounts: Array<{ name: string; layer: CacheLayerRef }> = [];
    if (spec.cacheMounts === true) {
      const base = path.join(this.#store.root, 'cache-mounts');
      for (const mount of (await readdir(base).catch(() => [] as string[])).filter((n) => MOUNT_NAME.test(n)).sort()) {
        const tar = await snapshotDirectory(path.join(base, mount), this.#store, signal ? { signal } : {});
        const layer = await this.#gzipRef(tar);
        await addLayer(layer, { [CACHE_MOUNT_ANNOTATION]: mount });
        cacheMounts.push({ name: mount, layer });
      }
    }
    const config: CacheConfig = { kilnCacheVersion: 1, records, ...(cacheMounts.length > 0 ? { cacheMounts } : {}) };
    const configBytes = Buffer.from(JSON.stringify(config));
    const configBlob = await this.#store.writeBlobBytes(configBytes);
    await upload(configBlob.digest, configBlob.size);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: configBlob.digest, size: configBlob.size },
      layers: [...layers.values()],
      annotations: { 'io.kiln.cache.version': '1' },
    };
    await client.putManifest(repo, ref.tag ?? ref.digest ?? 'latest', Buffer.from(JSON.stringify(manifest)), MEDIA_TYPES.ociManifest, signal);
    this.#options.progress?.(`cache exported to ${name}: ${String(records.length)} records`);
  }
}

/** A cache image reference from `--cache-from`/`--cache-to`, or a RegistryError naming the flag. */
function parseCacheRef(flag: '--cache-from' | '--cache-to', ref: string): ImageReference {
  try {
    return parseReference(ref);
  } catch (cause) {
    throw new RegistryError(`${flag} ${ref}: ${messageOf(cause)}`, undefined, { cause });
  }
}
