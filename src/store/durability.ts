/**
 * Durability of unpacked layers. Step overlays are mounted `volatile` and a layer directory is renamed into the
 * store without an fsync per file (a 5,000-file layer would cost 5,000 disk round trips): fast, but after a power
 * loss or kernel crash such a directory may hold truncated or missing files while its name still claims the
 * diffID. So a layer directory counts as durable only once it carries a `durable` mark, written after a
 * syncfs(2) of the store's filesystem that followed its rename ({@link markLayersDurable}, once at the end of a
 * build). A lost mark only costs a rebuild; a mark cannot exist for unsynced data.
 *
 * The store remembers the boot it was last used in (`boot`, the kernel's boot id). The first kiln process to
 * open it in a new boot, before it writes anything, drops every layer directory without the mark (its blob,
 * if any, is fsynced and unpacks again on use; a layer only kept unpacked makes its step a cache miss), every
 * temp item (no process of an earlier boot runs) and every small record that no longer parses.
 * A process killed in the same boot loses nothing the kernel already had: its layers stay, unmarked until
 * the next mark, and its temp state is recovered by recovery.ts.
 */
import { existsSync, readdirSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { nativeSys } from '../native/sys.js';
import { detachMountsBelow } from './recovery.js';
import { ownedName } from './owner.js';

/** The mark file inside `layers/<hex>/`. */
export const DURABLE_MARK = 'durable';

/** The kernel's id of the running boot; undefined without procfs. */
export function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** syncfs(2) of the filesystem holding `dir`: the addon's on a threadpool thread, else `sync -f`. */
export async function syncFilesystem(dir: string): Promise<void> {
  const sys = nativeSys();
  if (sys !== undefined && typeof sys.syncfs === 'function') {
    const got = new Int32Array(1);
    await new Promise<void>((resolve) => sys.syncfs(dir, got, resolve));
    if (got[0] !== 0) throw new Error(`syncfs ${dir} failed: errno ${-(got[0] ?? 0)}`);
    return;
  }
  const { execa } = await import('execa');
  await execa('sync', ['-f', dir], { stdin: 'ignore' });
}

/** The layer directories (`layers/<hex>`, complete ones) that carry no durable mark yet. */
export function unmarkedLayers(root: string): string[] {
  const layers = path.join(root, 'layers');
  let names: string[];
  try {
    names = readdirSync(layers);
  } catch {
    return [];
  }
  return names.filter((n) => /^[0-9a-f]{64}$/.test(n) && !existsSync(path.join(layers, n, DURABLE_MARK))).map((n) => path.join(layers, n));
}

/**
 * Syncs the store's filesystem and marks every layer directory that existed before the sync as durable.
 * Returns how many it marked. Layers are listed before the sync, so each one marked was complete when it ran.
 */
export async function markLayersDurable(root: string): Promise<number> {
  const pending = unmarkedLayers(root);
  if (pending.length === 0) return 0;
  await syncFilesystem(root);
  let marked = 0;
  for (const dir of pending) {
    try {
      writeFileSync(path.join(dir, DURABLE_MARK), '');
      marked++;
    } catch {
      // removed meanwhile (prune): nothing to mark
    }
  }
  return marked;
}

/** What {@link recoverAfterBoot} did. */
export interface BootRecoveryReport {
  /** Layer directories dropped because they were not known to be durable. */
  readonly droppedLayers: readonly string[];
  /** Records that no longer parsed, moved to `quarantine/`. */
  readonly quarantined: readonly string[];
  /** Temp items of the earlier boot that were removed. */
  readonly removed: readonly string[];
}

/** Whether the store was last used in another boot (or never by a kiln that records it). */
export function needsBootRecovery(root: string, boot: string | undefined): boolean {
  if (boot === undefined) return false;
  try {
    return readFileSync(path.join(root, 'boot'), 'utf8').trim() !== boot;
  } catch {
    return true;
  }
}

/**
 * The recovery of the first open in a new boot (see the module comment); the caller holds the store's
 * `recovery` lock and has checked {@link needsBootRecovery} again under it. A store without a `boot` file
 * (made by an older kiln, or new) was last written in this boot as far as anyone knows: its layers are synced and
 * marked instead of dropped.
 */
export async function recoverAfterBoot(root: string, boot: string): Promise<BootRecoveryReport> {
  const droppedLayers: string[] = [];
  const quarantined: string[] = [];
  const removed: string[] = [];
  const bootFile = path.join(root, 'boot');
  if (!existsSync(bootFile)) {
    await markLayersDurable(root);
  } else {
    for (const dir of unmarkedLayers(root)) {
      await detachMountsBelow(dir).catch(() => undefined);
      await fs.rm(dir, { recursive: true, force: true });
      droppedLayers.push(dir);
    }
    // No process of an earlier boot runs: all temp state is dead (and its mounts are gone with the boot).
    for (const name of readdirSync(path.join(root, 'tmp'))) {
      await fs.rm(path.join(root, 'tmp', name), { recursive: true, force: true });
      removed.push(path.join(root, 'tmp', name));
    }
    for (const name of readdirSync(path.join(root, 'layers')).filter((n) => n.includes('.tmp-'))) {
      await fs.rm(path.join(root, 'layers', name), { recursive: true, force: true });
      removed.push(path.join(root, 'layers', name));
    }
    for (const name of readdirSync(path.join(root, 'leases'))) {
      await fs.rm(path.join(root, 'leases', name), { force: true });
      removed.push(path.join(root, 'leases', name));
    }
    // Small records are written without an fsync: one cut short by the crash no longer parses.
    for (const file of recordFiles(root)) {
      if (parses(file)) continue;
      quarantined.push(quarantine(root, file));
    }
  }
  const tmp = path.join(root, 'tmp', ownedName('boot'));
  writeFileSync(tmp, `${boot}\n`);
  renameSync(tmp, bootFile);
  return { droppedLayers, quarantined, removed };
}

/** The store's small JSON records: tags, cache records, layer records, snapshot metadata. */
export function recordFiles(root: string): string[] {
  const out: string[] = [];
  const add = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      if (depth > 0) add(p, depth - 1);
      else if (name.endsWith('.json')) out.push(p);
    }
  };
  if (existsSync(path.join(root, 'images.json'))) out.push(path.join(root, 'images.json'));
  add(path.join(root, 'cache'), 0);
  add(path.join(root, 'layerinfo'), 1);
  for (const name of readdirSync(path.join(root, 'layers')).filter((n) => /^[0-9a-f]{64}$/.test(n))) {
    const meta = path.join(root, 'layers', name, 'snapshot.json');
    if (existsSync(meta)) out.push(meta);
  }
  return out;
}

/** Whether a JSON file parses. */
export function parses(file: string): boolean {
  try {
    JSON.parse(readFileSync(file, 'utf8'));
    return true;
  } catch {
    return false;
  }
}

/**
 * Moves `file` (a store path) to `quarantine/<its path with / as _>-<time>` and returns the new path. A
 * layer's broken snapshot.json takes the whole layer directory with it.
 */
export function quarantine(root: string, file: string): string {
  const dir = path.join(root, 'quarantine');
  mkdirSync(dir, { recursive: true });
  let rel = path.relative(root, file);
  let source = file;
  const layer = /^layers\/([0-9a-f]{64})(\/|$)/.exec(rel);
  if (layer?.[1] !== undefined) {
    rel = `layers/${layer[1]}`;
    source = path.join(root, rel);
  }
  const target = path.join(dir, `${rel.replace(/\//g, '_')}-${Date.now()}`);
  renameSync(source, target);
  return target;
}
