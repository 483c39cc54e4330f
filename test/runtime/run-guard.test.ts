// The guard that makes a runtime and its containers die with kiln (src/runtime/run-guard.ts), native and
// setpriv/unshare variants: a SIGKILL of the process that started it kills everything below it, and the pid
// a runtime writes from inside the guard's namespace maps back to ours.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { guardPrefix, outerPid } from '../../src/runtime/run-guard.js';
import { runGuard } from '../../src/native/sys.js';

const variants: Array<[string, readonly string[] | undefined]> = [
  ['native', runGuard() === undefined ? undefined : guardPrefix()],
  ['setpriv + unshare', guardPrefix(undefined)],
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
