/**
 * What a dead kiln left behind, recovered by the next kiln process that opens the store (any command): its
 * step directories and half-written files in `tmp/`, its half-unpacked layers, its container bundles and secret
 * files in memory-backed storage, its scratch directories in the system temp dir (owner.ts makeOwnedTempDir),
 * the overlay mounts inside any of those, and its lease. What a live process
 * owns is never touched: ownership is the pid and start time in each item's name (see owner.ts).
 *
 * Containers themselves die with the kiln that started them (src/runtime/run-guard.ts), so only their mounts
 * and directories are left to recover here.
 */
import { lstatSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { MNT_DETACH, nativeSys } from '../native/sys.js';
import { OWNED_TEMP_RE, ownerAlive, ownerOfName, PRIVATE_DIR_RE, privateDirBases } from './owner.js';

/** What a recovery did. */
export interface RecoveryReport {
  /** Directories and files of dead processes that were removed. */
  readonly removed: readonly string[];
  /** Mount points of dead processes that were detached. */
  readonly unmounted: readonly string[];
}

/** Mount points from /proc/self/mountinfo (unescaped). */
export function mountPoints(): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => m !== undefined)
    .map((m) => m.replace(/\\([0-7]{3})/g, (_x, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** Detaches every mount at or below `dir`, deepest first; returns those it detached. Throws when one stays. */
export async function detachMountsBelow(dir: string, mounts: readonly string[] = mountPoints()): Promise<string[]> {
  const below = mounts.filter((m) => m === dir || m.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
  const done: string[] = [];
  for (const m of below) {
    const sys = nativeSys();
    try {
      if (sys !== undefined) sys.umount2(m, MNT_DETACH);
      else await (await import('execa')).execa('umount', ['-l', m], { stdin: 'ignore' });
      done.push(m);
    } catch {
      // already gone, or not ours to unmount: checked below
    }
  }
  if (below.length > 0 && mountPoints().some((m) => m === dir || m.startsWith(`${dir}/`))) {
    throw new Error(`cannot unmount what is mounted below ${dir}`);
  }
  return done;
}

/** The entries of `dir` whose names carry an owner (see owner.ts) that is no longer running. */
function deadEntries(dir: string, filter: (name: string) => boolean = () => true): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const dead: string[] = [];
  for (const name of names) {
    if (!filter(name)) continue;
    const owner = ownerOfName(name);
    if (owner !== undefined && !ownerAlive(owner)) dead.push(path.join(dir, name));
  }
  return dead;
}

/**
 * Recovers what dead kiln processes left (see the module comment). Cheap when there is nothing to do: a few
 * directory listings, no mountinfo read. Removal of what is found is awaited (a dead build's step directory can
 * hold gigabytes).
 */
export async function recoverDeadOwners(root: string, tempBase: string = tmpdir()): Promise<RecoveryReport> {
  const uid = process.getuid?.();
  const items = [
    ...deadEntries(path.join(root, 'tmp')),
    ...deadEntries(path.join(root, 'layers'), (n) => n.includes('.tmp-')),
    // Private dirs in shared places (/dev/shm, the system temp dir): only our own user's.
    ...[
      ...privateDirBases().map((base) => [base, PRIVATE_DIR_RE] as const),
      [tempBase, OWNED_TEMP_RE] as const,
    ].flatMap(([base, re]) =>
      deadEntries(base, (n) => re.test(n)).filter((p) => {
        const st = lstatSync(p, { throwIfNoEntry: false });
        return st !== undefined && st.isDirectory() && (uid === undefined || st.uid === uid);
      }),
    ),
  ];
  const removed: string[] = [];
  const unmounted: string[] = [];
  if (items.length > 0) {
    const mounts = mountPoints();
    for (const item of items) {
      try {
        unmounted.push(...(await detachMountsBelow(item, mounts)));
      } catch {
        continue; // never remove through a mount
      }
      await fs.rm(item, { recursive: true, force: true }).then(
        () => removed.push(item),
        () => undefined,
      );
    }
  }
  // Leases of dead processes (`<pid> <host> <since> [<start>]`): they would keep prune's grace window open.
  const leases = path.join(root, 'leases');
  let names: string[] = [];
  try {
    names = readdirSync(leases);
  } catch {
    // none
  }
  for (const name of names) {
    const file = path.join(leases, name);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const [pid, host, , start] = text.trim().split(' ');
    if (pid === undefined || host !== hostname()) continue;
    if (!ownerAlive(start === undefined ? pid : `${pid}.${start}`)) {
      rmSync(file, { force: true });
      removed.push(file);
    }
  }
  return { removed, unmounted };
}
