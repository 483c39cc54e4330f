/**
 * File reuse for COPY layers: a rebuilt COPY step hard-links each unchanged file from the layer the same
 * step produced before, and copies only what changed. A link allocates no inode and copies no data: 5,000
 * links take ~45 ms here, where copying the same small files takes several times that (and far more right after
 * many files were deleted, see spreadSubdirs in native/sys.ts), so a one-file-changed rebuild of a 5,000-file COPY
 * no longer re-creates 4,999 files.
 *
 * How a reusable file is found:
 * - When a COPY layer is made (by the direct-write path: files written straight into the step's upperdir),
 *   {@link CopyReuse.commit} writes two small records:
 *   - `layers/<diffID hex>/copy-files.json` beside the layer's `rootfs`: layer path → sha256 of the content
 *     (the build context's digests, already computed for the cache key: nothing is hashed again). It lives and
 *     dies with the layer (prune removes the whole `layers/<hex>` directory);
 *   - `copy-reuse/<sha256 of the step's identity>.json` → the diffID of that layer. The identity is the
 *     context directory plus the instruction as written after expansion (flags, sources, destination), NOT
 *     the parent chain: a changed base or an earlier step still finds the files (they are checked one by one
 *     below, so an unrelated layer found here costs only a few lstats, never a wrong file). One record per
 *     distinct COPY instruction; the last build wins.
 * - On a cache miss, {@link CopyReuse.open} follows the step record to that layer's manifest. For each
 *   regular file to copy, the candidate is the layer's file at the same path, else (a renamed file) any file of
 *   that layer with the same content digest. It is linked only when ALL of these hold: the recorded digest
 *   equals the new source's digest; `lstat` of the candidate shows a regular file with the same size,
 *   permission bits, uid, gid and mtime (to the millisecond, what `utimes` gives a copy) as the copy would
 *   get; and no other file of this layer is linked to the same inode (two paths sharing an inode would make
 *   the tar writer emit a hardlink entry, so the layer's digest would differ from a copied layer's).
 *   Anything else (no record, a pruned layer, ENOENT or EXDEV while linking) falls back to copying.
 *
 * Why sharing inodes between layers is safe:
 * - A stored layer directory is immutable once adopted: it is only ever an overlay lowerdir (read-only) or
 *   read to regenerate its tar. Overlay never writes a lowerdir (copy-up creates a new inode in the upperdir).
 * - The new layer's own writes never touch a linked inode: a linked file is never chown'ed, chmod'ed or
 *   utime'd (it is linked only when its metadata already equals what the copy would set), and a copy that
 *   lands on a path that already exists with more than one link unlinks it first instead of writing through
 *   it (see `copyOne` in runtime/handlers/copy.ts). Directories and symlinks are never linked.
 * - Adoption's xattr pass removes only `trusted.overlay.*` xattrs, which a stored layer no longer has, and
 *   COPY writes no xattrs (Node's copyFile copies none), so "no xattrs" is the metadata both sides share.
 *   If COPY ever carries xattrs over, the manifest must record them and the match must compare them.
 * - A hard link keeps the data alive when the other layer is pruned; prune removing the other layer while we
 *   link only makes `link` fail (ENOENT) and the file is copied.
 * - The tar writer (store/snapshot.ts) treats an inode as a hardlink only when it appears twice IN the layer;
 *   an inode shared with another layer appears once, so it is written as a regular file, byte for byte what
 *   a copy gives: the diffID does not depend on whether files were linked or copied.
 * - A recorded digest is trusted: it is the context's digest of the source, recorded only when the source's
 *   stat (size, mtime, ctime, inode) is the same after the copy as when it was hashed, so a file edited during
 *   the copy is left out of the manifest (it is copied again next time).
 * - Crash safety: links are made in the step's scratch upperdir under `tmp/` (removed like any other step
 *   dir); records are written to a temp file and renamed, and a torn or missing record only disables reuse.
 *   Concurrent builds at worst overwrite each other's step record.
 *
 * Speed: a rebuild of a 5,000-file COPY links nearly every file, so the checks and links are batched
 * ({@link CopyReuse.linkBatch}): with the native addon, one `lstatPaths` call checks a slice of candidates and
 * `linkFiles` links the accepted ones on two threadpool threads (no Stats object and no Node call per file, and the
 * main thread free meanwhile); without it each file
 * goes through {@link CopyReuse.linkSync}. Both apply the same rules in the same order.
 */
import * as fsSync from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Digest } from '../oci/types.js';
import type { LayerStoreApi } from './types.js';
import { ENTRY_FIELDS, EntryField, linkFilesSplit, nativeSys } from '../native/sys.js';

/** The metadata a copied file gets, which a reused file must already have. */
export interface WantedFileMetadata {
  readonly size: number;
  /** Permission bits (`mode & 0o7777`). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** The mtime the copy sets (milliseconds since the epoch). */
  readonly mtimeMs: number;
}

/** A source file as the COPY handler knows it. */
export interface SourceFile {
  readonly abs: string;
  readonly stats: fsSync.Stats;
}

interface Manifest {
  readonly v: 1;
  /** Layer path (relative, `/`-separated) → sha256 hex of the content. */
  readonly files: Record<string, string>;
}

interface StepRecord {
  readonly v: 1;
  readonly diffId: Digest;
}

const MANIFEST = 'copy-files.json';
const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** The directory of step records under the store root. */
export const STEP_RECORD_DIR = 'copy-reuse';

/** What {@link CopyReuse.linkSync} did, for counters and tests. */
export type LinkOutcome = 'linked' | 'no-candidate' | 'metadata-differs' | 'failed';

/** One file for {@link CopyReuse.linkBatch}: the arguments of {@link CopyReuse.linkSync}. */
export interface LinkRequest {
  readonly rel: string;
  readonly target: string;
  readonly sha256: string;
  readonly want: WantedFileMetadata;
}

/** A file for the placer's batch: the source, where it goes, and the metadata a copy would give it. */
export interface PlaceRequest {
  readonly src: SourceFile;
  readonly target: string;
  readonly want: WantedFileMetadata;
}

/** The reuse state of one COPY step being built: the earlier layer's files, and what this layer holds. */
export class CopyReuse {
  private readonly store: LayerStoreApi;
  private readonly identity: string;
  /** Rootfs of the earlier layer, when one was found. */
  private readonly earlierRoot: string | undefined;
  private readonly earlier: Readonly<Record<string, string>>;
  private byDigest: Map<string, string[]> | undefined;
  /** Inodes (`dev:ino`) of the earlier layer already linked into this one. */
  private readonly usedInodes = new Set<string>();
  /** Layer path → digest of what this layer holds (no prototype: paths are data, `__proto__` included). */
  private readonly files: Record<string, string> = Object.create(null) as Record<string, string>;
  /** How many files were linked (for tests and progress). */
  linked = 0;

  private constructor(store: LayerStoreApi, identity: string, earlierRoot: string | undefined, earlier: Record<string, string>) {
    this.store = store;
    this.identity = identity;
    this.earlierRoot = earlierRoot;
    this.earlier = earlier;
  }

  /**
   * Looks up the layer this step (by `identity`: anything that names "the same COPY", e.g. context dir and
   * instruction text) produced last, and loads its manifest. Never fails: without a usable record, nothing
   * is linked.
   */
  static async open(store: LayerStoreApi, identity: string): Promise<CopyReuse> {
    const id = identityHash(identity);
    const record = await readJson<StepRecord>(path.join(store.root, STEP_RECORD_DIR, `${id}.json`));
    const hex = record?.v === 1 && typeof record.diffId === 'string' ? DIGEST_RE.exec(record.diffId)?.[1] : undefined;
    if (hex !== undefined) {
      const layerDir = path.join(store.root, 'layers', hex);
      const manifest = await readJson<Manifest>(path.join(layerDir, MANIFEST));
      if (manifest?.v === 1 && manifest.files && typeof manifest.files === 'object') {
        return new CopyReuse(store, identity, path.join(layerDir, 'rootfs'), manifest.files);
      }
    }
    return new CopyReuse(store, identity, undefined, {});
  }

  /** Whether an earlier layer was found (linking can succeed at all). */
  get hasCandidates(): boolean {
    return this.earlierRoot !== undefined;
  }

  /**
   * Creates `target` (absent; on the store's filesystem) as a hard link to an identical file of the earlier
   * layer, when there is one (see the module comment for "identical"). `rel` is the file's path in the new
   * layer. On success the file is also recorded. Synchronous: one lstat and one link, called in slices.
   */
  linkSync(rel: string, target: string, sha256: string, want: WantedFileMetadata): LinkOutcome {
    const root = this.earlierRoot;
    if (root === undefined) return 'no-candidate';
    const candidates = this.candidatesOf(rel, sha256);
    if (candidates.length === 0) return 'no-candidate';
    let outcome: LinkOutcome = 'metadata-differs';
    for (const candidate of candidates) {
      // A record is data read from disk: never let it name a path outside the earlier layer.
      if (!isSafeRel(candidate)) continue;
      const abs = path.join(root, candidate);
      let st: fsSync.Stats;
      try {
        st = fsSync.lstatSync(abs);
      } catch {
        outcome = 'failed';
        continue;
      }
      const inode = `${st.dev}:${st.ino}`;
      if (!st.isFile() || this.usedInodes.has(inode) || !sameMetadata(st, want)) continue;
      try {
        fsSync.linkSync(abs, target);
      } catch {
        return 'failed'; // EEXIST (the caller copies over it), ENOENT (pruned meanwhile), EXDEV, EMLINK …
      }
      this.usedInodes.add(inode);
      this.files[rel] = sha256;
      this.linked++;
      return 'linked';
    }
    return outcome;
  }

  /**
   * {@link linkSync} for many files at once, by the same rules (each earlier inode linked at most once, in request
   * order for a file's own path). With the addon, the first candidate of every file (its own path, mostly) is checked with one
   * lstat batch and the accepted ones linked with one link batch; a file whose first candidate does not do goes
   * through linkSync (which tries its other candidates).
   */
  async linkBatch(requests: readonly LinkRequest[]): Promise<LinkOutcome[]> {
    const sys = nativeSys();
    const root = this.earlierRoot;
    if (root === undefined) return requests.map(() => 'no-candidate');
    if (typeof sys?.lstatPaths !== 'function' || typeof sys.linkFiles !== 'function') {
      return requests.map((r) => this.linkSync(r.rel, r.target, r.sha256, r.want));
    }
    const outcomes = new Array<LinkOutcome | undefined>(requests.length);
    // The first candidate of each file, as linkSync would pick it.
    // (A file's own path when the earlier layer has it with this content: no digest index needed.)
    const first: Array<string | undefined> = requests.map((r) =>
      Object.hasOwn(this.earlier, r.rel) && this.earlier[r.rel] === r.sha256 ? r.rel : this.candidatesOf(r.rel, r.sha256)[0],
    );
    const probe: number[] = [];
    for (let i = 0; i < requests.length; i++) {
      const c = first[i];
      if (c === undefined) outcomes[i] = 'no-candidate';
      else if (!isSafeRel(c)) outcomes[i] = undefined; // linkSync skips it and tries the others
      else probe.push(i);
    }
    // Plain concatenation: a safe rel has no `..`, and the kernel resolves `.` and `//` as path.join would.
    const prefix = `${root}/`;
    const stats = sys.lstatPaths(probe.map((i) => prefix + first[i]!));
    const accepted: number[] = [];
    const inodes: string[] = [];
    for (let k = 0; k < probe.length; k++) {
      const i = probe[k]!;
      const at = k * ENTRY_FIELDS;
      const mode = stats[at + EntryField.mode]!;
      if (mode < 0) continue; // lstat failed: linkSync decides (other candidates, or 'failed')
      const inode = `${stats[at + EntryField.dev]!}:${stats[at + EntryField.ino]!}`;
      const r = requests[i]!;
      if ((mode & 0o170000) !== 0o100000 || this.usedInodes.has(inode) || !sameNumbers(stats, at, r.want)) continue;
      this.usedInodes.add(inode); // taken now, so a later file of this batch cannot pick the same inode
      accepted.push(i);
      inodes.push(inode);
    }
    const errors = await linkFilesSplit(
      sys,
      accepted.map((i) => prefix + first[i]!),
      accepted.map((i) => requests[i]!.target),
    );
    for (let k = 0; k < accepted.length; k++) {
      const i = accepted[k]!;
      if (errors[k] !== 0) {
        this.usedInodes.delete(inodes[k]!);
        outcomes[i] = 'failed'; // as linkSync: EEXIST, ENOENT (pruned meanwhile), EXDEV, EMLINK … are not retried
        continue;
      }
      const r = requests[i]!;
      this.files[r.rel] = r.sha256;
      this.linked++;
      outcomes[i] = 'linked';
    }
    const result: LinkOutcome[] = [];
    for (let i = 0; i < requests.length; i++) {
      const r = requests[i]!;
      result.push(outcomes[i] ?? this.linkSync(r.rel, r.target, r.sha256, r.want));
    }
    return result;
  }

  /** The earlier layer's files that may stand for `rel` with content `sha256`: `rel` itself first, then renames. */
  private candidatesOf(rel: string, sha256: string): string[] {
    const candidates: string[] = [];
    if (Object.hasOwn(this.earlier, rel) && this.earlier[rel] === sha256) candidates.push(rel);
    for (const other of this.pathsWithDigest(sha256)) if (other !== rel) candidates.push(other);
    return candidates;
  }

  /** Records a file this layer got by copying (its content has digest `sha256`). */
  record(rel: string, sha256: string): void {
    this.files[rel] = sha256;
  }

  /** Forgets a path (it was overwritten by something whose digest is unknown). */
  forget(rel: string): void {
    delete this.files[rel];
  }

  /**
   * After the layer was adopted as `diffId`: writes its manifest beside its rootfs and points this step's
   * record at it. Best effort: a failure only costs reuse next time.
   */
  async commit(diffId: Digest): Promise<void> {
    const hex = DIGEST_RE.exec(diffId)?.[1];
    if (hex === undefined) return;
    const layerDir = path.join(this.store.root, 'layers', hex);
    try {
      // When the layer existed already (the same content built before), its files are as good as ours.
      const manifest: Manifest = { v: 1, files: this.files };
      await writeAtomic(path.join(layerDir, MANIFEST), JSON.stringify(manifest));
      const dir = path.join(this.store.root, STEP_RECORD_DIR);
      await mkdir(dir, { recursive: true });
      await writeAtomic(path.join(dir, `${identityHash(this.identity)}.json`), JSON.stringify({ v: 1, diffId } satisfies StepRecord));
    } catch {
      // Reuse is an optimisation: a read-only or vanished layer dir is not the build's failure.
    }
  }

  /**
   * The COPY handler's view of this reuse state (runtime/handlers/copy.ts `FilePlacer`), for a layer being
   * written at `layerRoot`: `digests` maps each source file's absolute path to the sha256 the build context
   * computed for it (a file without one is always copied and never recorded).
   */
  placer(layerRoot: string, digests: ReadonlyMap<string, string>): {
    placeSync(src: SourceFile, target: string, want: WantedFileMetadata): boolean;
    placeBatch(files: readonly PlaceRequest[]): Promise<boolean[]>;
    copied(src: SourceFile, target: string): void;
    copiedBatch(files: ReadonlyArray<{ readonly src: SourceFile; readonly target: string }>): void;
  } {
    const prefix = `${path.resolve(layerRoot)}/`;
    const relOf = (target: string): string => (target.startsWith(prefix) ? target.slice(prefix.length) : path.relative(layerRoot, target).split(path.sep).join('/'));
    /** Records a copied file's digest when its source is still the file that was hashed (`unchanged`). */
    const recordCopy = (src: SourceFile, target: string, unchanged: boolean): void => {
      const rel = relOf(target);
      const digest = digests.get(src.abs);
      if (digest !== undefined && unchanged) this.record(rel, digest);
      else this.forget(rel);
    };
    const copied = (src: SourceFile, target: string): void => {
      // Recorded only when the source is provably the one that was hashed (unchanged stat after the copy).
      let now: fsSync.Stats | undefined;
      try {
        now = fsSync.lstatSync(src.abs);
      } catch {
        now = undefined;
      }
      const was = src.stats;
      recordCopy(src, target, now !== undefined && now.size === was.size && now.mtimeMs === was.mtimeMs && now.ctimeMs === was.ctimeMs && now.ino === was.ino);
    };
    return {
      placeSync: (src, target, want) => {
        const digest = digests.get(src.abs);
        return digest !== undefined && this.linkSync(relOf(target), target, digest, want) === 'linked';
      },
      placeBatch: async (files) => {
        const placed = new Array<boolean>(files.length).fill(false);
        const requests: LinkRequest[] = [];
        const index: number[] = [];
        for (let i = 0; i < files.length; i++) {
          const f = files[i]!;
          const digest = digests.get(f.src.abs);
          if (digest === undefined) continue;
          requests.push({ rel: relOf(f.target), target: f.target, sha256: digest, want: f.want });
          index.push(i);
        }
        const outcomes = await this.linkBatch(requests);
        for (let k = 0; k < outcomes.length; k++) placed[index[k]!] = outcomes[k] === 'linked';
        return placed;
      },
      copied,
      copiedBatch: (files) => {
        // The same check for many files: one addon call, no Stats object per file.
        const sys = nativeSys();
        if (sys === undefined) {
          for (const { src, target } of files) copied(src, target);
          return;
        }
        const f = sys.lstatPaths(files.map(({ src }) => src.abs));
        files.forEach(({ src, target }, i) => {
          const at = i * ENTRY_FIELDS;
          const was = src.stats;
          const same =
            f[at + EntryField.mode]! >= 0 &&
            f[at + EntryField.size] === was.size &&
            f[at + EntryField.mtimeMs] === was.mtimeMs &&
            f[at + EntryField.ctimeMs] === was.ctimeMs &&
            f[at + EntryField.ino] === was.ino;
          recordCopy(src, target, same);
        });
      },
    };
  }

  private pathsWithDigest(sha256: string): readonly string[] {
    if (this.byDigest === undefined) {
      this.byDigest = new Map();
      for (const p of Object.keys(this.earlier)) {
        const d = this.earlier[p]!;
        const list = this.byDigest.get(d);
        if (list) list.push(p);
        else this.byDigest.set(d, [p]);
      }
    }
    return this.byDigest.get(sha256) ?? [];
  }
}

/** Whether an existing inode already has exactly the metadata a copy would give it. */
export function sameMetadata(st: fsSync.Stats, want: WantedFileMetadata): boolean {
  return (
    st.size === want.size &&
    (st.mode & 0o7777) === want.mode &&
    st.uid === want.uid &&
    st.gid === want.gid &&
    Math.round(st.mtimeMs) === Math.round(want.mtimeMs)
  );
}

/** {@link sameMetadata} on lstat numbers of the addon (`f` from offset `at`, {@link EntryField} order). */
function sameNumbers(f: Float64Array, at: number, want: WantedFileMetadata): boolean {
  return (
    f[at + EntryField.size] === want.size &&
    (f[at + EntryField.mode]! & 0o7777) === want.mode &&
    f[at + EntryField.uid] === want.uid &&
    f[at + EntryField.gid] === want.gid &&
    Math.round(f[at + EntryField.mtimeMs]!) === Math.round(want.mtimeMs)
  );
}

/** A recorded path that stays inside the layer (no absolute path, no `..`). */
function isSafeRel(rel: string): boolean {
  return !rel.startsWith('/') && !DOTDOT_SEGMENT.test(rel);
}

const DOTDOT_SEGMENT = /(?:^|\/)\.\.(?:\/|$)/;

function identityHash(identity: string): string {
  return createHash('sha256').update(identity).digest('hex');
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined; // missing or torn: no reuse
  }
}

async function writeAtomic(file: string, data: string): Promise<void> {
  const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (err) {
    await fsSync.promises.rm(tmp, { force: true });
    throw err;
  }
}
