/**
 * Containers die with the kiln process that started them. The OCI runtime is started through a guard: a
 * process with PR_SET_PDEATHSIG(SIGKILL) (so it dies with kiln) whose child, also with that death signal,
 * is pid 1 of a new pid namespace and execs the runtime. When the guard dies, that init dies, and the kernel
 * kills every process of the namespace, the container's nested pid namespace included. Without it a
 * `kill -9` of a build left its container running, holding its overlay mounts.
 *
 * The guard is native/run-guard.c when the native helpers are built (one small exec and a fork per RUN), else
 * `setpriv --pdeathsig SIGKILL unshare --pid --fork --kill-child=SIGKILL --mount-proc` (util-linux 2.33 and
 * later), which does the same in two process images. Both give the runtime a private mount namespace with a
 * /proc of its pid namespace (runc finds its children there by pid).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { crunLauncher, runGuard } from '../native/sys.js';

const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];

/**
 * The argv to put in front of a runtime command, or undefined when no guard can be built on this host.
 * @param native the native guard's path, or null for none @default the built one, if any
 */
export function guardPrefix(native: string | null = runGuard() ?? null): readonly string[] | undefined {
  if (native !== null) return [native, String(process.pid)];
  const find = (name: string): string | undefined =>
    [...(process.env['PATH'] ?? '').split(':').filter((d) => d !== ''), ...SBIN_DIRS].map((d) => path.join(d, name)).find((p) => existsSync(p));
  const setpriv = find('setpriv');
  const unshare = find('unshare');
  if (setpriv === undefined || unshare === undefined) return undefined;
  return [setpriv, '--pdeathsig', 'SIGKILL', '--', unshare, '--pid', '--fork', '--kill-child=SIGKILL', '--mount-proc', '--'];
}

/**
 * The argv that runs `command` (a runtime, or native/crun-launch.c in front of crun) under the guard; `command`
 * itself when no guard can be built. The native guard does the launcher's steps itself (`--crun-launch`): one
 * process image and one mount namespace fewer per RUN step (~2 ms here).
 */
export function guardedCommand(command: readonly string[], native: string | null = runGuard() ?? null, launcher: string | null = crunLauncher() ?? null): readonly string[] {
  const prefix = guardPrefix(native);
  if (prefix === undefined) return command;
  if (native !== null && launcher !== null && command[0] === launcher) return [...prefix, '--crun-launch', ...command.slice(1)];
  return [...prefix, ...command];
}

/** The pids of a process' namespaces, outermost first (`NSpid` of /proc/PID/status); undefined when it is gone. */
function nsPids(pid: number | 'self'): number[] | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const line = /^NSpid:\s*(.*)$/m.exec(status)?.[1];
    return line === undefined ? undefined : line.trim().split(/\s+/).map(Number);
  } catch {
    return undefined;
  }
}

/** The children of a process, over all its threads (a Go runtime forks from any thread). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c !== '') out.push(Number(c));
    } catch {
      // thread gone
    }
  }
  return out;
}

/**
 * Our pid of the process below `guardPid` whose pid in the guard's new namespace is `innerPid` (what the runtime
 * writes to its `--pid-file`: its own view). Undefined when there is none (yet, or any more).
 */
export function outerPid(guardPid: number, innerPid: number): number | undefined {
  const depth = nsPids('self')?.length ?? 1; // our namespace's level; the guard's child is one below it
  const seen = new Set<number>();
  const queue = childrenOf(guardPid);
  while (queue.length > 0 && seen.size < 64) {
    const pid = queue.shift() as number;
    if (seen.has(pid)) continue;
    seen.add(pid);
    if (nsPids(pid)?.[depth] === innerPid) return pid;
    queue.push(...childrenOf(pid));
  }
  return undefined;
}
