import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Readable } from 'node:stream';
import { nativeSys } from '../../src/native/sys.js';
import { startProcess } from '../../src/runtime/process.js';

const collect = (s: Readable): Promise<string> =>
  new Promise((resolve) => {
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => (text += c));
    s.on('close', () => resolve(text));
  });

test(`process start through ${process.env['KILN_NATIVE'] === '0' ? 'execa' : 'the native posix_spawn'}`, () => {
  // The suite runs this file with the addon (CI builds it --required) and without it.
  assert.equal(nativeSys() === undefined, process.env['KILN_NATIVE'] === '0');
});

test('output arrives per stream and the exit code is reported', async () => {
  const p = await startProcess('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3']);
  const [out, err, end] = await Promise.all([collect(p.stdout), collect(p.stderr), p.ended]);
  assert.equal(out, 'out\n');
  assert.equal(err, 'err\n');
  assert.deepEqual({ exitCode: end.exitCode, signal: end.signal, canceled: end.canceled }, { exitCode: 3, signal: undefined, canceled: false });
});

test('stdin is empty and the environment is passed on', async () => {
  process.env['KILN_PROCESS_TEST'] = 'inherited';
  try {
    const p = await startProcess('/bin/sh', ['-c', 'cat; echo "$KILN_PROCESS_TEST"']);
    const [out, end] = await Promise.all([collect(p.stdout), p.ended]);
    assert.equal(out, 'inherited\n');
    assert.equal(end.exitCode, 0);
  } finally {
    delete process.env['KILN_PROCESS_TEST'];
  }
});

test('a process killed by a signal reports the signal, and SIGPIPE is not inherited as ignored', async () => {
  const killed = await startProcess('/bin/sh', ['-c', 'kill -KILL $$']);
  assert.equal((await killed.ended).signal, 'SIGKILL');
  // Node ignores SIGPIPE; a child that inherited that makes `yes` fail loudly with EPIPE instead of dying quietly.
  const pipe = await startProcess('/bin/sh', ['-c', 'yes | head -c 1 >/dev/null']);
  const [err, end] = await Promise.all([collect(pipe.stderr), pipe.ended]);
  assert.equal(err, '');
  assert.equal(end.exitCode, 0);
});

test('an abort sends SIGTERM, then SIGKILL when the process ignores it', async () => {
  const controller = new AbortController();
  const p = await startProcess('/bin/sh', ['-c', 'trap "" TERM; echo ready; sleep 30'], { signal: controller.signal, forceKillAfterMs: 200 });
  p.stdout.once('data', () => controller.abort());
  const end = await p.ended;
  assert.equal(end.canceled, true);
  assert.equal(end.signal, 'SIGKILL');
});

test('a missing program is an error, not a hang', async () => {
  const started = startProcess('/no/such/program', []);
  // The native path throws at once; execa reports it as an ended process with an error.
  const outcome = await started.then(
    async (p) => (await p.ended).error ?? 'no error',
    (err: Error) => err.message,
  );
  assert.match(outcome, /ENOENT|no such/i);
});
