// The guard that makes a runtime and its containers die with kiln (src/runtime/run-guard.ts), native and
// setpriv/unshare variants: a SIGKILL of the process that started it kills everything below it, and the pid
// a runtime writes from inside the guard's namespace maps back to ours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { guardedCommand, guardPrefix, outerPid } from '../../src/runtime/run-guard.js';
import { runGuard } from '../../src/native/sys.js';

const variants: Array<[string, readonly string[] | undefined]> = [
  ['native', runGuard() === undefined ? undefined : guardPrefix()],
  ['setpriv + unshare', guardPrefix(null)],
];

function alive(pid: number): boolean {
  try {
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
  } catch {
    return false;
  }
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end && !check()) await new Promise((r) => setTimeout(r, 20));
  return check();
}

for (const [name, prefix] of variants) {
  test(`${name}: everything below the guard dies when the process that started it is killed`, { skip: prefix === undefined && 'not built' }, async (t) => {
    // A shell stands in for kiln: it starts the guard (the native guard takes its parent's pid) and is killed.
    const argv = prefix![0]!.endsWith('kiln-run-guard') ? [prefix![0]!, '$$'] : prefix!.map((a) => `'${a}'`);
    const script = `${argv.join(' ')} /bin/sh -c 'sleep 1000 & echo $!; wait' & wait`;
    const parent = spawn('/bin/sh', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    // Whatever fails below, nothing outlives the test (a stray `sleep 1000` would hold the test process).
    t.after(() => {
      parent.kill('SIGKILL');
      parent.stdout.destroy();
    });
    const inner = await new Promise<number>((resolve) => parent.stdout.once('data', (c: Buffer) => resolve(Number(c.toString().trim()))));
    assert.ok(inner > 1 && inner < 10, `the step's pid is of a fresh namespace: ${inner}`);
    // From the shell: its child is the guard (or setpriv, which became unshare).
    const guard = Number(readFileSync(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').trim().split(' ')[0]);
    const sleeper = outerPid(guard, inner);
    assert.ok(sleeper !== undefined, 'the namespace pid maps to ours');
    // `$!` is printed as soon as the shell forks, maybe before its child has exec'd sleep.
    const cmdline = (): string => {
      try {
        return readFileSync(`/proc/${sleeper}/cmdline`, 'utf8');
      } catch {
        return '';
      }
    };
    assert.ok(await until(() => cmdline() === 'sleep\u00001000\u0000', 2000), `the namespace pid is the sleep: ${JSON.stringify(cmdline())}`);
    parent.kill('SIGKILL');
    assert.ok(await until(() => !alive(sleeper), 2000), 'the sleep died with its starter');
  });
}

test('guardedCommand: the native guard takes over the crun launcher; other commands and the setpriv guard are prefixed', () => {
  const guard = '/n/kiln-run-guard';
  const launcher = '/n/kiln-crun-launch';
  const pid = String(process.pid);
  assert.deepEqual(guardedCommand([launcher, '/cg', '/usr/bin/crun', '--cgroup-manager=disabled'], guard, launcher), [
    guard, pid, '--crun-launch', '/cg', '/usr/bin/crun', '--cgroup-manager=disabled',
  ]);
  assert.deepEqual(guardedCommand(['/usr/sbin/runc'], guard, launcher), [guard, pid, '/usr/sbin/runc']);
  // Without the native guard the launcher runs below setpriv/unshare as before (when those exist).
  const fallback = guardPrefix(null);
  assert.deepEqual(guardedCommand([launcher, '/cg', '/usr/bin/crun'], null, launcher), fallback === undefined ? [launcher, '/cg', '/usr/bin/crun'] : [...fallback, launcher, '/cg', '/usr/bin/crun']);
});

// The devices cgroup kiln's steps join (made by the runtime probe on a hybrid-cgroup host), if this host has one.
const devicesCgroup = (() => {
  const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').map((l) => l.split(':')).find((f) => f[1]?.split(',').includes('devices'))?.[2];
  const dir = own === undefined ? undefined : path.join('/sys/fs/cgroup/devices', own, 'kiln');
  return dir !== undefined && existsSync(dir) ? dir : undefined;
})();

test('kiln-run-guard --crun-launch: the runtime starts in the devices cgroup, with cgroup2 covered and its own binary read-only', {
  skip: (runGuard() === undefined && 'not built') || (devicesCgroup === undefined && 'no kiln devices cgroup on this host (not a hybrid-cgroup host, or no RUN ran yet)'),
}, () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kiln-guard-launch-'));
  try {
    // A stand-in runtime: reports what it sees, and tries to write its own file (what CVE-2019-5736 needs).
    const runtime = path.join(dir, 'fake-runtime');
    writeFileSync(
      runtime,
      '#!/bin/sh\ngrep -q ":devices:.*/kiln$" /proc/self/cgroup && echo in-devices-cgroup\ngrep -q " /sys/fs/cgroup/unified .* - tmpfs kiln-no-cgroup2 " /proc/self/mountinfo && echo cgroup2-covered\n(echo x >> "$0") 2>/dev/null && echo binary-writable || echo binary-read-only\necho "args:$*"\n',
      { mode: 0o755 },
    );
    const out = execFileSync(runGuard()!, [String(process.pid), '--crun-launch', devicesCgroup!, runtime, 'run', 'x'], { encoding: 'utf8' });
    assert.deepEqual(out.trim().split('\n'), ['in-devices-cgroup', 'cgroup2-covered', 'binary-read-only', 'args:run x']);
    // Outside the guard's namespace nothing changed.
    assert.doesNotMatch(readFileSync('/proc/self/mountinfo', 'utf8'), /kiln-no-cgroup2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
