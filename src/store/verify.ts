/**
 * `kiln store verify`: re-hashes what the store serves and quarantines what no longer matches its name.
 * - every blob (`blobs/sha256/<hex>`) against its digest;
 * - every unpacked layer (`layers/<diffID hex>`): one built here (it has `snapshot.json`) regenerates its tar,
 *   which must hash to the diffID; one unpacked from a blob is compared with a fresh extraction of that blob
 *   (whose tar must hash to the diffID), both read back as kiln's tar of the directory; one with neither
 *   cannot be checked and is reported as such;
 * - every small record (tags, cache records, layer records) must parse.
 * What is wrong is moved to `quarantine/` (nothing is deleted), so the store stops serving it: a build then
 * misses the cache for that step, or unpacks the layer again from its blob.
 */
import { createReadStream, existsSync, mkdirSync, readdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { crypto } from '../oci/digest.js';
import { messageOf } from '../errors.js';
import type { Digest } from '../oci/types.js';
import { parses, quarantine, recordFiles } from './durability.js';
import type { LayerStore } from './layer-store.js';
import { ownedName } from './owner.js';

/** One thing {@link verifyStore} found wrong. */
export interface VerifyProblem {
  readonly kind: 'blob' | 'layer' | 'record';
  /** The store path it concerns. */
  readonly path: string;
  readonly detail: string;
  /** Where it was moved; undefined when it was only reported (`quarantine: false`, or it cannot be checked). */
  readonly quarantinedTo?: string;
}

/** What {@link verifyStore} checked and found. */
export interface VerifyReport {
  readonly blobs: number;
  readonly layers: number;
  readonly records: number;
  /** Layers that could not be checked (neither built here nor with a stored blob); not moved. */
  readonly unverifiable: readonly string[];
  readonly problems: readonly VerifyProblem[];
}

/** Options of {@link verifyStore}. */
export interface VerifyOptions {
  readonly signal?: AbortSignal;
  /** Move what is wrong to `quarantine/`. @default true */
  readonly quarantine?: boolean;
  /** Called as each item has been checked. */
  readonly onProgress?: (item: { kind: 'blob' | 'layer' | 'record'; path: string; ok: boolean }) => void;
}

async function sha256OfStream(stream: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = crypto().createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Re-hashes the store's blobs, unpacked layers and records, quarantining what is wrong (see the module comment).
 * @param target an open store, or `{ root }` (@default root `$KILN_ROOT`, else `~/.cache/kiln`)
 */
export async function verifyStore(target: LayerStore | { readonly root?: string } = {}, options: VerifyOptions = {}): Promise<VerifyReport> {
  const store = 'withLock' in target ? target : await (await import('./layer-store.js')).LayerStore.open(target.root);
  const { signal } = options;
  const move = options.quarantine ?? true;
  const root = store.root;
  // Not while a prune sweeps: it could remove what we are reading.
  return store.withLock('gc', async () => {
    const problems: VerifyProblem[] = [];
    const unverifiable: string[] = [];
    const report = (kind: VerifyProblem['kind'], p: string, detail: string): void => {
      let quarantinedTo: string | undefined;
      if (move) {
        try {
          quarantinedTo = quarantine(root, p);
        } catch {
          // gone meanwhile
        }
      }
      problems.push({ kind, path: p, detail, ...(quarantinedTo === undefined ? {} : { quarantinedTo }) });
      options.onProgress?.({ kind, path: p, ok: false });
    };

    const blobDir = path.join(root, 'blobs', 'sha256');
    const blobNames = readdirSync(blobDir).filter((n) => /^[0-9a-f]{64}$/.test(n));
    for (const hex of blobNames) {
      signal?.throwIfAborted();
      const file = path.join(blobDir, hex);
      const got = await sha256OfStream(createReadStream(file, { highWaterMark: 1024 * 1024 })).catch((err: unknown) => `unreadable: ${messageOf(err)}`);
      if (got !== `sha256:${hex}`) report('blob', file, `content hashes to ${got}`);
      else options.onProgress?.({ kind: 'blob', path: file, ok: true });
    }

    const { layerTarStream } = await import('./snapshot.js');
    const dirDigest = (dir: string, sourceDateEpoch?: number): Promise<string> =>
      sha256OfStream(layerTarStream(dir, { ...(signal ? { signal } : {}), ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }) }, undefined, undefined, true));
    const layerNames = readdirSync(path.join(root, 'layers')).filter((n) => /^[0-9a-f]{64}$/.test(n));
    for (const hex of layerNames) {
      signal?.throwIfAborted();
      const dir = path.join(root, 'layers', hex);
      const rootfs = path.join(dir, 'rootfs');
      const diffId = `sha256:${hex}` as Digest;
      if (!existsSync(rootfs)) {
        report('layer', dir, 'no rootfs directory');
        continue;
      }
      const metaFile = path.join(dir, 'snapshot.json');
      try {
        if (existsSync(metaFile)) {
          // Built here: its tar regenerates exactly.
          const meta = JSON.parse(await fs.readFile(metaFile, 'utf8')) as { sourceDateEpoch?: number };
          const got = await dirDigest(rootfs, typeof meta.sourceDateEpoch === 'number' ? meta.sourceDateEpoch : undefined);
          if (got !== diffId) report('layer', dir, `its directory now gives diffID ${got}`);
          else options.onProgress?.({ kind: 'layer', path: dir, ok: true });
          continue;
        }
        if (!(await hasLayerBlob(store, diffId))) {
          unverifiable.push(dir);
          continue;
        }
        // Unpacked from a blob (another tool's tar need not regenerate byte for byte): extract it again and
        // compare both directories as kiln's tar of them.
        const scratch = path.join(root, 'tmp', ownedName('verify'));
        mkdirSync(scratch, { mode: 0o700 });
        try {
          const fresh = path.join(scratch, 'rootfs');
          mkdirSync(fresh);
          const blobDiffId = await store.extractLayerTar(diffId, fresh, signal);
          if (blobDiffId !== diffId) {
            unverifiable.push(dir); // the blob itself is wrong: reported by the blob pass or its record check
            continue;
          }
          const [want, got] = [await dirDigest(fresh), await dirDigest(rootfs)];
          if (want !== got) report('layer', dir, 'its directory differs from its blob');
          else options.onProgress?.({ kind: 'layer', path: dir, ok: true });
        } finally {
          await fs.rm(scratch, { recursive: true, force: true });
        }
      } catch (err) {
        if (signal?.aborted === true) throw err;
        report('layer', dir, `cannot be read back: ${messageOf(err)}`);
      }
    }

    const records = recordFiles(root);
    for (const file of records) {
      if (!existsSync(file)) continue; // went with a quarantined layer
      if (parses(file)) options.onProgress?.({ kind: 'record', path: file, ok: true });
      else report('record', file, 'does not parse');
    }
    return { blobs: blobNames.length, layers: layerNames.length, records: records.length, unverifiable, problems };
  });
}

/** Whether a blob of the layer (any compression) is stored, without writing or regenerating anything. */
async function hasLayerBlob(store: LayerStore, diffId: Digest): Promise<boolean> {
  if (await store.hasBlob(diffId)) return true;
  const infoDir = path.join(store.root, 'layerinfo', diffId.slice(7));
  for (const name of await fs.readdir(infoDir).catch(() => [] as string[])) {
    try {
      const info = JSON.parse(await fs.readFile(path.join(infoDir, name), 'utf8')) as { digest?: Digest };
      if (info.digest !== undefined && (await store.hasBlob(info.digest))) return true;
    } catch {
      // a broken record: the record pass reports it
    }
  }
  return false;
}
