/**
 * Unpacked layers: `layers/<diffID hex>/rootfs`, each layer's content once, used read-only as an overlayfs
 * lowerdir. A layer gets there by unpacking its tar (verified against the diffID before it is renamed into place)
 * or by adopting a step's upperdir; an adopted layer has no blob until one is needed, and its tar is regenerated
 * from the directory (`layers/<hex>/snapshot.json` says how), verified against the diffID as it streams.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { RuntimeError, messageOf } from '../errors.js';
import type { Digest } from '../oci/types.js';
import { spreadSubdirs } from '../native/sys.js';
import { crypto } from '../oci/digest.js';
import { markLayersDurable } from './durability.js';
import { digestHex, exists, readJson, tempName } from './files.js';
import type { Leases } from './leases.js';
import type { Locks } from './locks.js';
import type { XattrTree } from './snapshot.js';
import type { AdoptOptions } from './types.js';

// extract.js and snapshot.js are loaded on use (unpacking, adopting, regenerating a layer): a fully cached
// build needs none of them, and every module costs start-up time.
const snapshotModule = () => import('./snapshot.js');

/**
 * Extracts a layer's tar (overlay form: whiteouts as 0/0 devices) into `dest` and returns the sha256 of the whole
 * stream, also what follows the tar's end marker (extraction stops there), for the caller to check against the
 * diffID.
 */
export async function extractHashed(tar: AsyncIterable<Uint8Array>, dest: string, signal?: AbortSignal): Promise<Digest> {
  const hash = crypto().createHash('sha256');
  const source = tar[Symbol.asyncIterator]();
  const read = async (): Promise<IteratorResult<Uint8Array>> => {
    const r = await source.next();
    if (r.done !== true) hash.update(r.value);
    return r;
  };
  // `return` is not forwarded, so stopping extraction early does not close the source before it is drained.
  const hashing: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({ next: read, return: async () => ({ done: true, value: undefined }) }),
  };
  try {
    await (await import('./extract.js')).extractLayer(hashing, dest, { mode: 'overlay', ...(signal ? { signal } : {}) });
    while ((await read()).done !== true) signal?.throwIfAborted();
  } catch (err) {
    await source.return?.();
    throw err;
  }
  return `sha256:${hash.digest('hex')}`;
}

/** The unpacked layers of the store at `root`; remembers whether it put one in place since the last {@link makeDurable}. */
export class UnpackedLayers {
  readonly #root: string;
  readonly #locks: Locks;
  readonly #leases: Leases;
  /** Whether this instance put a layer directory into the store since its last {@link UnpackedLayers.makeDurable}. */
  #written = false;

  constructor(root: string, locks: Locks, leases: Leases) {
    this.#root = root;
    this.#locks = locks;
    this.#leases = leases;
  }

  #dir(diffId: Digest): string {
    return path.join(this.#root, 'layers', digestHex(diffId));
  }

  /** Whether the layer is unpacked. */
  async has(diffId: Digest): Promise<boolean> {
    return exists(path.join(this.#dir(diffId), 'rootfs'));
  }

  /**
   * Syncs the store's filesystem once and marks every layer directory put in place before that as durable
   * (see durability.ts); nothing to do when this instance put no layer in place. Returns how many layers it marked.
   */
  async makeDurable(): Promise<number> {
    if (!this.#written) return 0;
    this.#written = false;
    return markLayersDurable(this.#root);
  }

  /**
   * The layer's rootfs, unpacking it once (under the layer's lock) from the tar `openTar` gives when it is not
   * unpacked yet. The tar's digest is checked against the diffID before the directory is renamed into place.
   */
  async unpack(diffId: Digest, openTar: (signal?: AbortSignal) => Promise<AsyncIterable<Uint8Array>>, signal?: AbortSignal): Promise<string> {
    const hex = digestHex(diffId);
    const dir = this.#dir(diffId);
    const rootfs = path.join(dir, 'rootfs');
    if (await exists(rootfs)) return rootfs;
    return this.#locks.withLock(`layer-${hex}`, async () => {
      if (await exists(rootfs)) return rootfs;
      const tmpDir = path.join(this.#root, 'layers', tempName(`${hex}.tmp`));
      spreadSubdirs(path.join(this.#root, 'layers'));
      try {
        await fs.mkdir(path.join(tmpDir, 'rootfs'), { recursive: true });
        // The diffID is checked before the directory is renamed into place: a pulled layer is verified here, on first use.
        const got = await extractHashed(await openTar(signal), path.join(tmpDir, 'rootfs'), signal);
        if (got !== diffId) {
          throw new RuntimeError(`layer ${diffId}: its stored content has diffID ${got}, not the one the image names; refused (pull the image again from a trustworthy source)`);
        }
        await fs.rename(tmpDir, dir);
        this.#written = true;
      } catch (err) {
        await fs.rm(tmpDir, { recursive: true, force: true });
        throw err;
      }
      return rootfs;
    });
  }

  /** See {@link LayerStoreApi.adoptUnpackedLayer}. */
  async adopt(diffId: Digest, dir: string, options: AdoptOptions = {}): Promise<string> {
    await this.#leases.take();
    const hex = digestHex(diffId);
    const target = this.#dir(diffId);
    const rootfs = path.join(target, 'rootfs');
    return this.#locks.withLock(`layer-${hex}`, async () => {
      if (await exists(rootfs)) {
        await fs.rm(dir, { recursive: true, force: true });
        return rootfs;
      }
      // A former upperdir carries overlay's private xattrs (origin, impure, …); a lowerdir should not.
      const source = path.resolve(dir);
      const { readXattrTree, stripOverlayXattrs } = await snapshotModule();
      const xattrs = (options.xattrs as XattrTree | undefined) ?? (await readXattrTree(source, undefined, '^trusted\\.overlay\\.'));
      await stripOverlayXattrs(xattrs);
      // layers/<hex> appears complete or not at all: assemble it under a temp name, then rename.
      const tmpDir = path.join(this.#root, 'layers', tempName(`${hex}.tmp`));
      mkdirSync(tmpDir);
      try {
        const meta = {
          ...(options.size !== undefined ? { size: options.size } : {}),
          ...(options.sourceDateEpoch !== undefined ? { sourceDateEpoch: options.sourceDateEpoch } : {}),
        };
        writeFileSync(path.join(tmpDir, 'snapshot.json'), JSON.stringify(meta));
        renameSync(dir, path.join(tmpDir, 'rootfs'));
        renameSync(tmpDir, target);
        this.#written = true;
      } catch (err) {
        await fs.rm(tmpDir, { recursive: true, force: true });
        throw new RuntimeError(`cannot adopt ${dir} as layer ${diffId}: ${messageOf(err)}`, { cause: err });
      }
      return rootfs;
    });
  }

  /**
   * The layer's tar regenerated from its unpacked directory, hashed as it streams: the stream fails (at the
   * end, or as soon as it exceeds the recorded size) when the directory no longer produces `diffId`.
   * Undefined when the layer is not unpacked. `consumedAtOnce`: the consumer is done with each chunk before it
   * asks for the next, so the tar stream may reuse its buffers (see layerTarStream).
   */
  async regeneratedTar(diffId: Digest, signal?: AbortSignal, consumedAtOnce = false): Promise<AsyncIterable<Buffer> | undefined> {
    const dir = this.#dir(diffId);
    const rootfs = path.join(dir, 'rootfs');
    if (!(await exists(rootfs))) return undefined;
    const meta = (await readJson<{ size?: number; sourceDateEpoch?: number }>(path.join(dir, 'snapshot.json'))) ?? {};
    const tampered = (detail: string): RuntimeError =>
      new RuntimeError(`layer ${diffId}: its unpacked directory ${rootfs} no longer matches the layer (${detail}); remove it (kiln prune after untagging) and rebuild`);
    return (async function* () {
      const hash = crypto().createHash('sha256');
      let size = 0;
      const options = {
        ...(signal ? { signal } : {}),
        ...(typeof meta.sourceDateEpoch === 'number' ? { sourceDateEpoch: meta.sourceDateEpoch } : {}),
      };
      const { layerTarStream } = await snapshotModule();
      for await (const chunk of layerTarStream(rootfs, options, undefined, undefined, consumedAtOnce)) {
        hash.update(chunk);
        size += chunk.length;
        if (typeof meta.size === 'number' && size > meta.size) throw tampered(`more than ${meta.size} bytes`);
        yield chunk;
      }
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== diffId) throw tampered(`it now gives ${got}`);
    })();
  }
}
