/**
 * Resolves a Dockerfile `USER` string against an image's root filesystem, the way `docker run -u` and
 * `docker build` do: `name`, `uid`, `name:group`, `uid:gid`, with `/etc/passwd` and `/etc/group` read
 * from the (merged) rootfs, never from the host.
 */
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** The ids a container process runs as. */
export interface ResolvedUser {
  readonly uid: number;
  readonly gid: number;
  /** Supplementary groups: the `/etc/group` entries that list the user, when no group was given. */
  readonly additionalGids: readonly number[];
  /** The passwd home directory; `/` when the user has no passwd entry (as runc does). */
  readonly home: string;
}

interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

interface GroupEntry {
  readonly name: string;
  readonly gid: number;
  readonly members: readonly string[];
}

/** Symlinks followed while resolving one path in a rootfs before giving up (Linux's own limit is 40). */
const MAX_SYMLINKS = 40;

/**
 * Maps an absolute path inside a container rootfs to a host path under `root`, following symlinks the
 * way the container would see them: absolute link targets and `..` stay clamped at `root`. Use it for
 * every host-side access to a rootfs, so that an image's `/etc -> /host/etc` style link cannot reach
 * the host. Missing components are kept as they are (the result may not exist).
 */
export async function resolveInRoot(root: string, containerPath: string): Promise<string> {
  const pending = containerPath.split('/').filter((p) => p !== '' && p !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '..') {
      done.pop();
      continue;
    }
    const hostPath = path.join(root, ...done, part);
    // Synchronous: one lstat per path component, where an awaited call costs a threadpool round trip.
    let st: Stats | undefined;
    try {
      st = lstatSync(hostPath, { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    const isLink = st?.isSymbolicLink() ?? false;
    if (st === undefined) {
      // Missing: nothing below it exists, so the rest resolves lexically.
      done.push(part);
      for (const rest of pending) {
        if (rest === '..') done.pop();
        else done.push(rest);
      }
      break;
    }
    if (!isLink) {
      done.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) throw new Error(`too many levels of symbolic links resolving ${containerPath}`);
    const target = readlinkSync(hostPath);
    if (target.startsWith('/')) done.length = 0;
    pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
  }
  return path.join(root, ...done);
}

async function readRootfsFile(root: string, file: string): Promise<string | undefined> {
  try {
    return await readFile(await resolveInRoot(root, file), 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT' || (cause as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw cause;
  }
}

/** Parses /etc/passwd text; malformed lines are skipped, as libc does. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (f[0] === undefined || uid === undefined || gid === undefined) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '' });
  }
  return out;
}

/** Parses /etc/group text; malformed lines are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    const gid = parseId(f[2]);
    if (f[0] === undefined || gid === undefined) continue;
    out.push({ name: f[0], gid, members: (f[3] ?? '').split(',').map((m) => m.trim()).filter((m) => m !== '') });
  }
  return out;
}

function parseId(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  const n = Number(text.trim());
  return n <= 0xffffffff ? n : undefined;
}

/**
 * Resolves a `USER` string against the rootfs at `root` (docker's rules):
 * - `''` is root (0:0);
 * - a name must have a passwd entry, else `unable to find user NAME: no matching entries in passwd file`;
 * - a numeric uid may lack one (its gid is then 0, its home `/`);
 * - `:group` by name must exist in /etc/group; a numeric gid need not;
 * - supplementary groups come from /etc/group membership, only when no group was given.
 * Throws a plain Error; the caller attaches the step's location.
 */
export async function resolveUser(root: string, userSpec: string | undefined): Promise<ResolvedUser> {
  const spec = (userSpec ?? '').trim();
  if (spec === '') return { uid: 0, gid: 0, additionalGids: [], home: '/root' };
  const colon = spec.indexOf(':');
  const userPart = colon === -1 ? spec : spec.slice(0, colon);
  const groupPart = colon === -1 ? undefined : spec.slice(colon + 1);

  const passwdText = await readRootfsFile(root, '/etc/passwd');
  const passwd = passwdText === undefined ? [] : parsePasswd(passwdText);
  const numericUid = parseId(userPart);
  // A name is looked up by name; a number by uid (docker matches either, name first).
  const entry = passwd.find((p) => p.name === userPart) ?? (numericUid === undefined ? undefined : passwd.find((p) => p.uid === numericUid));
  if (entry === undefined && numericUid === undefined) {
    throw new Error(`unable to find user ${userPart}: no matching entries in passwd file`);
  }
  const uid = entry?.uid ?? (numericUid as number);
  let gid = entry?.gid ?? 0;
  const home = entry?.home || '/';

  let additionalGids: number[] = [];
  if (groupPart !== undefined && groupPart !== '') {
    const groupText = await readRootfsFile(root, '/etc/group');
    const groups = groupText === undefined ? [] : parseGroup(groupText);
    const numericGid = parseId(groupPart);
    const g = groups.find((x) => x.name === groupPart) ?? (numericGid === undefined ? undefined : groups.find((x) => x.gid === numericGid));
    if (g === undefined && numericGid === undefined) {
      throw new Error(`unable to find group ${groupPart}: no matching entries in group file`);
    }
    gid = g?.gid ?? (numericGid as number);
  } else if (entry !== undefined) {
    const groupText = await readRootfsFile(root, '/etc/group');
    const groups = groupText === undefined ? [] : parseGroup(groupText);
    additionalGids = [...new Set(groups.filter((g) => g.members.includes(entry.name)).map((g) => g.gid))];
  }
  return { uid, gid, additionalGids, home };
}

/**
 * The owner BuildKit's file operations give what they create for a `user[:group]` option (llb.WithUser, as
 * WORKDIR's mkdir gets USER), by its readUser: a numeric user is uid and gid both; a name takes its passwd
 * uid and gid, and stays 0:0 when it has no entry (no error); a group, numeric or by /etc/group name, then
 * replaces the gid.
 */
export async function fileOpOwner(root: string, spec: string): Promise<{ uid: number; gid: number }> {
  const colon = spec.indexOf(':');
  const userPart = colon === -1 ? spec : spec.slice(0, colon);
  const groupPart = colon === -1 ? undefined : spec.slice(colon + 1);
  let uid = 0;
  let gid = 0;
  const numericUid = parseId(userPart);
  if (numericUid !== undefined) {
    uid = numericUid;
    gid = numericUid;
  } else {
    const text = await readRootfsFile(root, '/etc/passwd');
    const entry = (text === undefined ? [] : parsePasswd(text)).find((p) => p.name === userPart);
    if (entry) ({ uid, gid } = entry);
  }
  if (groupPart !== undefined) {
    const numericGid = parseId(groupPart);
    if (numericGid !== undefined) gid = numericGid;
    else {
      const text = await readRootfsFile(root, '/etc/group');
      const g = (text === undefined ? [] : parseGroup(text)).find((x) => x.name === groupPart);
      if (g) gid = g.gid;
    }
  }
  return { uid, gid };
}
