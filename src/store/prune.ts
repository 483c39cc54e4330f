/**
 * The store's garbage collector: mark from the records (tags and cache records), sweep blobs, layer infos,
 * unpacked layers and abandoned temp entries. Reads every part's files, so it is a function of the parts, not one
 * of them.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Descriptor, ImageManifest } from '../oci/types.js';
import { DIGEST_RE, digestHex, readJson } from './files.js';
import type { Leases } from './leases.js';
import type { Locks } from './locks.js';
import { ownerAlive, ownerOfName } from './owner.js';
import type { Records } from './records.js';
import { detachMountsBelow, mountPoints } from './recovery.js';
import type { LayerInfo } from './types.js';

/** Temp entries without an owner pid in their name are removed by prune only after this long. */
const TEMP_GRACE_MS = 60 * 60 * 1000;

/** What {@link prune} needs of a store. */
export interface PruneParts {
  readonly root: string;
  readonly records: Records;
  readonly locks: Locks;
  readonly leases: Leases;
}

/**
 * Mark and sweep: marks from tags and cache records (every `sha256:` digest a record mentions), follows
 * manifests/indexes to configs and layers and layers to all their stored variants, then removes unmarked
 * blobs, unpacked layers, layer records and the temp files of processes that no longer run.
 * While other processes write to the store (their `leases/<pid>`), unreferenced blobs and unpacked layers
 * at least as new as the oldest such lease are kept: a build's layer is unreferenced until its cache record
 * or tag is written. Shortcut: the lease lasts as long as the writing process, not just its build, and a
 * prune inside a writing process does not protect that process's own unreferenced writes.
 */
export async function prune(parts: PruneParts, options: { signal?: AbortSignal } = {}): Promise<{ removedBlobs: number; freedBytes: number }> {
  const { signal } = options;
  const { root } = parts;
  return parts.locks.withLock('gc', async () => {
    const blobs = new Set<string>();
    const diffIds = new Set<string>();
    const pending: string[] = [];
    const mark = (digest: string): void => {
      const m = DIGEST_RE.exec(digest);
      if (m?.[1] && !blobs.has(m[1])) {
        blobs.add(m[1]);
        pending.push(m[1]);
      }
    };
    const collect = (value: unknown): void => {
      if (typeof value === 'string') mark(value);
      else if (Array.isArray(value)) value.forEach(collect);
      else if (value && typeof value === 'object') Object.values(value).forEach(collect);
    };
    for (const { digest } of await parts.records.listTags()) mark(digest);
    for await (const record of parts.records.cacheRecords()) collect(record);
    while (pending.length > 0) {
      signal?.throwIfAborted();
      const hex = pending.pop() as string;
      diffIds.add(hex); // a marked uncompressed layer digest is its own diffID
      const file = path.join(root, 'blobs', 'sha256', hex);
      const st = await fs.stat(file).catch(() => undefined);
      if (st && st.size < 4 * 1024 * 1024) {
        const doc = await fs.readFile(file, 'utf8').then(parseJsonOrUndefined, () => undefined);
        if (doc && typeof doc === 'object') {
          const m = doc as Partial<ImageManifest> & { manifests?: Descriptor[]; rootfs?: { diff_ids?: string[] } };
          if (m.config?.digest) mark(m.config.digest);
          for (const l of Array.isArray(m.layers) ? m.layers : []) mark(l.digest);
          for (const d of Array.isArray(m.manifests) ? m.manifests : []) mark(d.digest);
          for (const d of Array.isArray(m.rootfs?.diff_ids) ? m.rootfs.diff_ids : []) mark(d);
        }
      }
      // Every stored variant of a live layer stays (the compressed ones are the export cache).
      const infoDir = path.join(root, 'layerinfo', hex);
      for (const name of await fs.readdir(infoDir).catch(() => [] as string[])) {
        const info = await readJson<LayerInfo>(path.join(infoDir, name)).catch(() => undefined);
        if (info) mark(info.digest);
      }
    }
    // A marked compressed blob keeps its diffID's records and unpacked layer too.
    for (const hex of await fs.readdir(path.join(root, 'layerinfo'))) {
      for (const name of await fs.readdir(path.join(root, 'layerinfo', hex)).catch(() => [] as string[])) {
        const info = await readJson<LayerInfo>(path.join(root, 'layerinfo', hex, name)).catch(() => undefined);
        if (info && blobs.has(digestHex(info.digest))) diffIds.add(hex);
      }
    }

    // Items at least as new as the oldest live lease of another process may be an unfinished build's (with
    // a second of slack for coarse mtimes).
    const lease = await parts.leases.oldestForeign();
    const leased = (st: { mtimeMs: number } | undefined): boolean => lease !== undefined && st !== undefined && st.mtimeMs >= lease - 1000;
    let removedBlobs = 0;
    let freedBytes = 0;
    const blobDir = path.join(root, 'blobs', 'sha256');
    for (const hex of await fs.readdir(blobDir)) {
      signal?.throwIfAborted();
      if (blobs.has(hex)) continue;
      const st = await fs.stat(path.join(blobDir, hex)).catch(() => undefined);
      if (leased(st)) continue;
      await fs.rm(path.join(blobDir, hex), { force: true });
      removedBlobs++;
      freedBytes += st?.size ?? 0;
    }
    for (const hex of await fs.readdir(path.join(root, 'layerinfo'))) {
      if (!diffIds.has(hex)) await fs.rm(path.join(root, 'layerinfo', hex), { recursive: true, force: true });
    }
    const mounts = mountPoints();
    const removeTree = async (p: string): Promise<void> => {
      // A dead build's mounts are detached first; never recurse into a live mount (a merged rootfs would
      // expose its lower layers to the rm).
      if (mounts.some((m) => m === p || m.startsWith(`${p}/`))) {
        const ok = await detachMountsBelow(p, mounts).then(
          () => true,
          () => false,
        );
        if (!ok) return;
      }
      await fs.rm(p, { recursive: true, force: true });
    };
    const abandoned = async (p: string, name: string): Promise<boolean> => {
      const owner = ownerOfName(name);
      if (owner !== undefined) return !ownerAlive(owner);
      // Temp entries of other components (e.g. step scratch dirs) carry no pid: old ones only.
      const st = await fs.lstat(p).catch(() => undefined);
      return st !== undefined && Date.now() - st.mtimeMs > TEMP_GRACE_MS;
    };
    for (const name of await fs.readdir(path.join(root, 'layers'))) {
      signal?.throwIfAborted();
      const p = path.join(root, 'layers', name);
      const remove = name.includes('.tmp-') ? await abandoned(p, name) : !diffIds.has(name) && !leased(await fs.lstat(p).catch(() => undefined));
      if (remove) await removeTree(p);
    }
    for (const name of await fs.readdir(path.join(root, 'tmp'))) {
      const p = path.join(root, 'tmp', name);
      if (await abandoned(p, name)) await removeTree(p);
    }
    return { removedBlobs, freedBytes };
  });
}

function parseJsonOrUndefined(text: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
