/**
 * Safe layer extraction. A layer tar is untrusted input, so nothing it says may land outside the target:
 * - names are cleaned: absolute names are taken relative to the target (as in a container's root), `.` is
 *   dropped, and a `..` that climbs above the root is an error;
 * - parent directories are resolved component by component INSIDE the target: a symlink met on the way is
 *   followed as the container would see it (absolute targets restart at the target, `..` stops at it), so a
 *   symlink pointing out cannot be written through;
 * - the last component is never followed: an existing entry there is removed and replaced, files are
 *   created with O_EXCL|O_NOFOLLOW, hardlink targets are resolved the same way and must exist inside;
 * - device nodes are made only when running as root (mknod(2) through the native addon, or `mknod`), ownership is applied only as root;
 * - operations batched to the end (overlay whiteouts, xattrs, directory metadata) re-resolve their paths.
 *
 * Whiteouts: in `apply` mode (extracting onto an existing tree) `.wh.x` deletes x unless this layer wrote it,
 * and `.wh..wh..opq` empties the directory of everything this layer did not write. In `overlay` mode (an
 * unpacked layer used as an overlayfs lowerdir) they become overlay whiteouts: a 0/0 character device and
 * the `trusted.overlay.opaque=y` xattr (through the native addon, or `mknod` and `setfattr` from Debian's `attr` package).
 */
import * as fs from 'node:fs/promises';
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, chmodSync, lstatSync, lutimesSync, mkdirSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { RuntimeError, messageOf } from '../errors.js';
import { nativeSys } from '../native/sys.js';
import { readTar } from './tar.js';
import type { TarHeader } from './tar.js';

/** How whiteout entries are treated; see the module comment. */
export type ExtractMode = 'apply' | 'overlay';

/** Options of {@link extractLayer}. */
export interface ExtractOptions {
  readonly signal?: AbortSignal;
  /** @default 'apply' */
  readonly mode?: ExtractMode;
}

/** What an extraction did. */
export interface ExtractResult {
  readonly entries: number;
}

const MAX_SYMLINKS = 40;
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

/** Cleans a tar name into path components inside the root; throws when it climbs above the root. */
export function cleanEntryName(name: string): string[] {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) throw new RuntimeError(`layer entry "${name}" points outside the target directory`);
      parts.pop();
    } else {
      if (part.includes('\0')) throw new RuntimeError(`layer entry name contains a NUL byte`);
      parts.push(part);
    }
  }
  return parts;
}

const isErrno = (err: unknown, code: string): boolean =>
  typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;

/*
 * The per-entry calls (lstat, mkdir, open/write/close, chown, chmod, utimes) are synchronous: each is a few µs,
 * where an awaited one is a threadpool round trip of 0.1–0.3 ms on a loaded machine, and a file costs seven of
 * them (a 9,000-entry Debian base took 12 s to unpack, GNU tar 2.7 s). The tar stream is still read
 * asynchronously, so the event loop runs between chunks.
 */
async function lstatOrUndefined(p: string): Promise<import('node:fs').Stats | undefined> {
  return lstatSyncOrUndefined(p);
}

function lstatSyncOrUndefined(p: string): import('node:fs').Stats | undefined {
  try {
    return lstatSync(p);
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/**
 * Extracts a layer tar (uncompressed) into `targetDir`; see the module comment for the safety rules.
 * Every failure (a malformed tar, an entry the filesystem refuses) is a RuntimeError; cancellation rethrows
 * the signal's reason.
 */
export async function extractLayer(
  tarStream: Readable | AsyncIterable<Uint8Array>,
  targetDir: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  const where = { entry: '' };
  try {
    return await extractEntries(tarStream, targetDir, options, where);
  } catch (cause) {
    // A hostile entry may make a filesystem call fail in any way (an empty symlink target, a uid the kernel
    // refuses): every such failure is a RuntimeError naming the entry, never a bare errno error.
    if (cause instanceof RuntimeError || (options.signal?.aborted && cause === options.signal.reason)) throw cause;
    const at = where.entry === '' ? '' : ` at entry "${where.entry.slice(0, 200)}"`;
    throw new RuntimeError(`cannot extract layer${at}: ${messageOf(cause)}`, { cause });
  }
}

async function extractEntries(
  tarStream: Readable | AsyncIterable<Uint8Array>,
  targetDir: string,
  options: ExtractOptions,
  where: { entry: string },
): Promise<ExtractResult> {
  const { signal } = options;
  const mode = options.mode ?? 'apply';
  const root = path.resolve(targetDir);
  const asRoot = process.getuid?.() === 0;
  const knownDirs = new Set<string>();
  const written = new Set<string>();
  const dirMeta: Array<{ parts: string[]; header: TarHeader }> = [];
  const pendingXattrs: Array<{ parts: string[]; xattrs: Map<string, Buffer> }> = [];
  const overlayWhiteouts: Array<{ parts: string[]; header: TarHeader }> = [];
  const overlayOpaque: string[][] = [];
  let entries = 0;

  const abs = (parts: readonly string[]): string => path.join(root, ...parts);

  const forget = (parts: readonly string[]): void => {
    const key = parts.join('/');
    if (!knownDirs.has(key)) return;
    for (const k of knownDirs) if (k === key || k.startsWith(`${key}/`)) knownDirs.delete(k);
  };

  /** Resolves directory components inside the root, following symlinks within it; creates missing ones. */
  async function resolveDir(parts: readonly string[], create: boolean): Promise<string[]> {
    const resolved: string[] = [];
    const queue = [...parts];
    let links = 0;
    while (queue.length > 0) {
      const part = queue.shift() as string;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        resolved.pop();
        continue;
      }
      const next = [...resolved, part];
      const key = next.join('/');
      if (knownDirs.has(key)) {
        resolved.push(part);
        continue;
      }
      const st = await lstatOrUndefined(abs(next));
      if (st === undefined) {
        if (!create) throw new RuntimeError(`layer entry refers to missing directory /${key}`);
        mkdirSync(abs(next), { mode: 0o755 });
      } else if (st.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) throw new RuntimeError(`too many levels of symbolic links at /${key}`);
        const target = await fs.readlink(abs(next));
        if (target.startsWith('/')) resolved.length = 0;
        queue.unshift(...target.split('/'));
        continue;
      } else if (!st.isDirectory()) {
        throw new RuntimeError(`layer entry needs /${key} to be a directory, but it is not`);
      }
      knownDirs.add(key);
      resolved.push(part);
    }
    return resolved;
  }

  async function removeExisting(parts: readonly string[]): Promise<void> {
    forget(parts);
    await fs.rm(abs(parts), { recursive: true, force: true });
  }

  async function applyMeta(parts: readonly string[], h: TarHeader, isSymlink: boolean): Promise<void> {
    const p = abs(parts);
    if (asRoot) lchownSync(p, h.uid, h.gid);
    if (!isSymlink) chmodSync(p, h.mode & 0o7777); // after chown, which clears setuid bits
    lutimesSync(p, h.mtime, h.mtime);
  }

  for await (const { header, body } of readTar(tarStream as AsyncIterable<Uint8Array>, signal)) {
    signal?.throwIfAborted();
    entries++;
    where.entry = header.name;
    const parts = cleanEntryName(header.name);
    const base = parts.at(-1);
    if (base === undefined) continue; // the root directory itself: the target keeps its own metadata
    const parent = await resolveDir(parts.slice(0, -1), true);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE_MARKER) {
        if (mode === 'overlay') overlayOpaque.push(parent);
        else {
          for (const child of await fs.readdir(abs(parent))) {
            const childParts = [...parent, child];
            if (!written.has(childParts.join('/'))) await removeExisting(childParts);
          }
        }
      } else {
        const victim = base.slice(WHITEOUT_PREFIX.length);
        if (victim === '' || victim === '.' || victim === '..') throw new RuntimeError(`invalid whiteout entry "${header.name}"`);
        const victimParts = [...parent, victim];
        if (mode === 'overlay') overlayWhiteouts.push({ parts: victimParts, header });
        else if (!written.has(victimParts.join('/'))) await removeExisting(victimParts);
      }
      continue;
    }

    const dest = [...parent, base];
    const key = dest.join('/');
    const existing = await lstatOrUndefined(abs(dest));
    if (header.type === 'directory') {
      if (existing && !existing.isDirectory()) await removeExisting(dest);
      if (!existing || !existing.isDirectory()) mkdirSync(abs(dest), { mode: 0o700 });
      knownDirs.add(key);
      written.add(key);
      dirMeta.push({ parts: dest, header });
      if (header.xattrs && header.xattrs.size > 0) pendingXattrs.push({ parts: dest, xattrs: header.xattrs });
      continue;
    }
    if (existing) await removeExisting(dest);

    switch (header.type) {
      case 'file': {
        const fd = openSync(abs(dest), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        try {
          for await (const chunk of body) {
            let off = 0;
            while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
          }
          // On the open file: no path lookups, and nothing can have replaced it since O_EXCL made it.
          if (asRoot) fchownSync(fd, header.uid, header.gid);
          fchmodSync(fd, header.mode & 0o7777); // after chown, which clears setuid bits
          futimesSync(fd, header.mtime, header.mtime);
        } finally {
          closeSync(fd);
        }
        break;
      }
      case 'link': {
        const targetParts = cleanEntryName(header.linkname ?? '');
        const targetBase = targetParts.at(-1);
        if (targetBase === undefined) throw new RuntimeError(`hardlink "${header.name}" has no target`);
        const target = [...(await resolveDir(targetParts.slice(0, -1), false)), targetBase];
        const st = await lstatOrUndefined(abs(target));
        if (!st || st.isDirectory()) throw new RuntimeError(`hardlink "${header.name}" points to "${header.linkname ?? ''}", which is not a file in the layer`);
        await fs.link(abs(target), abs(dest));
        break;
      }
      case 'symlink':
        await fs.symlink(header.linkname ?? '', abs(dest));
        await applyMeta(dest, header, true);
        break;
      case 'char':
      case 'block':
      case 'fifo': {
        if (header.type !== 'fifo' && !asRoot) continue; // device nodes need root; skipped otherwise
        const sys = nativeSys();
        if (sys !== undefined) {
          try {
            sys.mknod(abs(dest), NODE_TYPE_BITS[header.type] | (header.mode & 0o7777), header.devmajor ?? 0, header.devminor ?? 0);
          } catch (cause) {
            throw new RuntimeError(`cannot create ${header.type} node /${key}: ${messageOf(cause)}`, { cause });
          }
          await applyMeta(dest, header, false);
          break;
        }
        const { execa } = await import('execa');
        const mode8 = (header.mode & 0o7777).toString(8);
        const args =
          header.type === 'fifo'
            ? ['mkfifo', ['-m', mode8, '--', abs(dest)]] as const
            : ['mknod', ['-m', mode8, '--', abs(dest), header.type === 'char' ? 'c' : 'b', String(header.devmajor ?? 0), String(header.devminor ?? 0)]] as const;
        try {
          await execa(args[0], [...args[1]], signal ? { cancelSignal: signal } : {});
        } catch (cause) {
          throw new RuntimeError(`cannot create ${header.type} node /${key}: ${messageOf(cause)}`, { cause });
        }
        await applyMeta(dest, header, false);
        break;
      }
    }
    written.add(key);
    if (header.xattrs && header.xattrs.size > 0 && header.type !== 'link') pendingXattrs.push({ parts: dest, xattrs: header.xattrs });
  }

  where.entry = '';
  // Batched work: every path is resolved again, so nothing replaced later in the tar can redirect it.
  const again = async (parts: readonly string[]): Promise<string[] | undefined> => {
    try {
      const last = parts.at(-1);
      return last === undefined ? [] : [...(await resolveDir(parts.slice(0, -1), false)), last];
    } catch {
      return undefined;
    }
  };
  const sys = nativeSys();
  if (overlayWhiteouts.length > 0 || overlayOpaque.length > 0) {
    const nodes: string[] = [];
    const made: Array<{ parts: string[]; header: TarHeader }> = [];
    for (const w of overlayWhiteouts) {
      const p = await again(w.parts);
      if (p) {
        await removeExisting(p);
        nodes.push(abs(p));
        made.push({ parts: p, header: w.header });
      }
    }
    const opaque: string[] = [];
    for (const o of overlayOpaque) {
      const p = await again(o);
      if (p) opaque.push(abs(p));
    }
    try {
      if (sys !== undefined) {
        // 0/0 character devices, mode 0666 less the umask, as mknod(1) makes them.
        for (const node of nodes) sys.mknod(node, NODE_TYPE_BITS.char | 0o666, 0, 0);
      } else if (nodes.length > 0) {
        const { execa } = await import('execa');
        await execa('sh', ['-c', 'for p; do mknod -- "$p" c 0 0 || exit 1; done', 'sh', ...nodes], signal ? { cancelSignal: signal } : {});
      }
      // The whiteout keeps the .wh. entry's owner and mtime, so re-snapshotting gives the same layer.
      for (const { parts, header } of made) {
        if (asRoot) await fs.lchown(abs(parts), header.uid, header.gid);
        await fs.lutimes(abs(parts), header.mtime, header.mtime);
      }
      if (sys !== undefined) {
        for (const dir of opaque) sys.lsetxattr(dir, 'trusted.overlay.opaque', Buffer.from('y'));
      } else if (opaque.length > 0) {
        const { execa } = await import('execa');
        await execa('setfattr', ['-h', '-n', 'trusted.overlay.opaque', '-v', 'y', '--', ...opaque], signal ? { cancelSignal: signal } : {});
      }
    } catch (cause) {
      throw new RuntimeError(`cannot create overlay whiteouts (needs root, mknod and setfattr from "attr"): ${messageOf(cause)}`, { cause });
    }
  }
  if (pendingXattrs.length > 0 && sys !== undefined) {
    for (const { parts, xattrs } of pendingXattrs) {
      const p = await again(parts);
      if (!p) continue;
      for (const [name, value] of xattrs) {
        try {
          sys.lsetxattr(abs(p), name, value);
        } catch (cause) {
          // Without root, trusted.* and security.* cannot be set; as root, a failure is an error.
          if (asRoot || (cause as NodeJS.ErrnoException).code !== 'EPERM') {
            throw new RuntimeError(`cannot set xattr ${name} on /${p.join('/')}: ${messageOf(cause)}`, { cause });
          }
        }
      }
    }
  } else if (pendingXattrs.length > 0) {
    let dump = '';
    for (const { parts, xattrs } of pendingXattrs) {
      const p = await again(parts);
      if (!p) continue;
      dump += `# file: ${escapeForGetfattr(abs(p))}\n`;
      for (const [k, v] of xattrs) dump += `${k}=0x${v.toString('hex')}\n`;
      dump += '\n';
    }
    const { execa } = await import('execa');
    const r = await execa('setfattr', ['-h', '--restore=-'], { input: Buffer.from(dump, 'latin1'), reject: false, ...(signal ? { cancelSignal: signal } : {}) });
    // Without root, trusted.* and security.* cannot be set; as root, a failure is an error.
    if (r.failed && (asRoot || r.exitCode === undefined)) {
      throw new RuntimeError(`cannot set xattrs: ${String(r.stderr).trim() || r.shortMessage}`);
    }
  }
  for (const { parts, header } of dirMeta.reverse()) {
    const p = await again(parts);
    if (p && (await lstatOrUndefined(abs(p)))?.isDirectory()) await applyMeta(p, header, false);
  }
  return { entries };
}

/** The file-type bits of mknod(2)'s mode. */
const NODE_TYPE_BITS = { char: 0o020000, block: 0o060000, fifo: 0o010000 } as const;

function escapeForGetfattr(p: string): string {
  // setfattr --restore reads getfattr's escaping: \ooo for backslash, newline and other unprintable bytes.
  let out = '';
  for (const byte of Buffer.from(p)) {
    out += byte === 0x5c || byte < 0x20 || byte === 0x7f ? `\\${byte.toString(8).padStart(3, '0')}` : String.fromCharCode(byte);
  }
  return out;
}
