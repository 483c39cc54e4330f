/**
 * Who owns a piece of temp state (a step directory, a container bundle, a secret file, a half-written blob):
 * the process that made it, named by its pid and its start time, so that a later kiln can tell what a dead one
 * left (and recover it) from what a live one is using, even when the pid has been reused since.
 */
import { mkdirSync, readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomHex } from '../oci/digest.js';

/** A process' start time (clock ticks since boot, field 22 of /proc/PID/stat); undefined when it does not exist. */
export function processStartTime(pid: number | 'self'): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    // Unreadable for another reason than absence (hidepid): we cannot tell, so the caller sees "alive".
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : '?';
  }
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

// A fact about this process that never changes, read once (module state allowed as a memoised constant).
let selfToken: string | undefined;

/** This process as an owner: `<pid>.<start time>`. */
export function selfOwner(): string {
  return (selfToken ??= `${process.pid}.${processStartTime('self') ?? '0'}`);
}

/** Whether the owner `token` (`<pid>.<start>` or, from older kiln versions, `<pid>`) is still running. */
export function ownerAlive(token: string): boolean {
  const [pidText, start] = token.split('.');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return start === undefined || token === selfOwner();
  const now = processStartTime(pid);
  if (now === undefined) return false;
  return start === undefined || now === '?' || now === start;
}

/** A fresh, unique name for temp state of this process: `<prefix>-<pid>.<start>-<12 hex digits>`. */
export function ownedName(prefix: string): string {
  return `${prefix}-${selfOwner()}-${randomHex(6)}`;
}

/** The owner token in a name made by {@link ownedName} (or by older versions: `<prefix>-<pid>-<hex>`), if any. */
export function ownerOfName(name: string): string | undefined {
  return /-(\d+(?:\.\d+)?)-[0-9a-f]{12}$/.exec(name)?.[1];
}

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/**
 * The memory-backed directories where kiln keeps per-process private state that must never reach a disk
 * (secrets, container bundles whose config holds secret environment values): `$XDG_RUNTIME_DIR` and
 * `/dev/shm`, those of them that are a tmpfs or ramfs. Each item gets its own 0700 directory with an
 * unguessable name there, so a world-writable parent (/dev/shm) is safe.
 */
export function memoryDirs(): string[] {
  const candidates = [process.env['XDG_RUNTIME_DIR'], '/dev/shm'].filter((d): d is string => d !== undefined && d !== '' && path.isAbsolute(d));
  return [...new Set(candidates)].filter((d) => {
    try {
      const type = statfsSync(d).type;
      return type === TMPFS_MAGIC || type === RAMFS_MAGIC;
    } catch {
      return false;
    }
  });
}

/** Names of private dirs made by {@link makePrivateDir}: `kiln-<kind>-<owner>-<hex>`. */
export const PRIVATE_DIR_RE = /^kiln-(run|secret)-/;

/**
 * Makes a fresh private (0700) directory for this process in memory-backed storage (see {@link memoryDirs}).
 * `kind` `run` (a container bundle) falls back to the system temp dir when the host has no memory-backed
 * directory; `secret` never does, and throws instead.
 */
export function makePrivateDir(kind: 'run' | 'secret'): string {
  const base = memoryDirs()[0] ?? (kind === 'run' ? os.tmpdir() : undefined);
  if (base === undefined) {
    throw new Error('no memory-backed directory for secrets: neither $XDG_RUNTIME_DIR nor /dev/shm is a tmpfs; kiln never writes a secret to disk');
  }
  return makeOwnedDir(base, `kiln-${kind}`);
}

/** A fresh 0700 directory in `base` named by {@link ownedName}; fails if it exists: never a directory someone else made. */
function makeOwnedDir(base: string, prefix: string): string {
  const dir = path.join(base, ownedName(prefix));
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** Where {@link makePrivateDir} may have put directories: the memory-backed ones, else the system temp dir. */
export function privateDirBases(): string[] {
  const memory = memoryDirs();
  return memory.length > 0 ? memory : [os.tmpdir()];
}

/** The kinds of scratch directory kiln makes in the system temp dir (os.tmpdir()), each named by its owner. */
export type TempKind = 'ovl' | 'ssh' | 'import' | 'seccomp' | 'empty-context';

/** Names of {@link makeOwnedTempDir}'s directories: `kiln-<kind>-<owner>-<hex>`. */
export const OWNED_TEMP_RE = /^kiln-(ovl|ssh|import|seccomp|empty-context)-/;

/**
 * Makes a fresh private (0700) scratch directory in the system temp dir, named after this process (like
 * mkdtemp, but with an owner a later kiln can check): a killed kiln's overlay helper links, SSH agent
 * socket, unpacked archive or seccomp bundle is then recovered by the next one (store/recovery.ts) instead
 * of lingering until reboot.
 */
export function makeOwnedTempDir(kind: TempKind, base: string = os.tmpdir()): string {
  return makeOwnedDir(base, `kiln-${kind}`);
}
