import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { detectRuntime, runtimeVersion } from '../../src/runtime/oci-runtime.js';

/** crun refuses hosts whose cgroup2 mount at /sys/fs/cgroup/unified holds controllers (hybrid mode). */
async function crunRefusedHere(): Promise<boolean> {
  const controllers = await readFile('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').catch(() => '');
  return controllers.trim() !== '';
}

test('runc is found with its path and version when asked for', async () => {
  const r = await detectRuntime('runc');
  assert.equal(r.name, 'runc');
  assert.match(r.path, /\/runc$/);
  assert.match(r.version, /^\d+\.\d+/);
  assert.deepEqual(r.warnings, []);
});

test('crun is used on a hybrid-cgroup host too: without cgroups, in kiln’s devices cgroup', async () => {
  const r = await detectRuntime('crun');
  assert.equal(r.name, 'crun');
  assert.deepEqual(r.warnings, []);
  if (await crunRefusedHere()) {
    // Started through kiln's launcher (or, without the native build, unshare + a script), which joins the
    // devices cgroup and hides the cgroup2 mount.
    assert.equal(r.cgroups, false);
    assert.match(r.command[0] ?? '', process.env['KILN_NATIVE'] === '0' ? /\/unshare$/ : /\/kiln-crun-launch$/);
    assert.ok(r.command.includes(r.path) && r.command.at(-1) === '--cgroup-manager=disabled');
    const devices = r.command[r.command.indexOf(r.path) - 1] ?? '';
    const rules = (await readFile(path.join(devices, 'devices.list'), 'utf8')).trim().split('\n');
    assert.ok(rules.includes('c 1:3 rwm') && rules.includes('b *:* m') && !rules.includes('a *:* rwm'), rules.join('; '));
  } else {
    assert.deepEqual(r.command, [r.path]);
    assert.equal(r.cgroups, true);
  }
  // auto prefers crun but never warns: nothing was asked for explicitly.
  assert.deepEqual((await detectRuntime('auto')).warnings, []);
});

test('KILN_RUNTIME chooses what auto means', async () => {
  const saved = process.env['KILN_RUNTIME'];
  process.env['KILN_RUNTIME'] = 'runc';
  try {
    const r = await detectRuntime('auto');
    assert.equal(r.name, 'runc');
    assert.deepEqual(r.command, [r.path]);
  } finally {
    if (saved === undefined) delete process.env['KILN_RUNTIME'];
    else process.env['KILN_RUNTIME'] = saved;
  }
});

test('with no runtime installed the error says how to install one', async () => {
  const empty = await mkdtemp(path.join(os.tmpdir(), 'kiln-no-runtime-'));
  const savedPath = process.env['PATH'];
  process.env['PATH'] = empty;
  try {
    await assert.rejects(detectRuntime('auto', { extraPath: [] }), (err: Error) => {
      assert.equal(err.name, 'RuntimeError');
      assert.match(err.message, /apt-get install runc/);
      assert.match(err.message, /npm run bootstrap/);
      assert.match(err.message, /crun: not installed; runc: not installed/);
      return true;
    });
  } finally {
    process.env['PATH'] = savedPath;
    await rm(empty, { recursive: true, force: true });
  }
});

test('a runtime’s version is asked once and remembered until the binary changes', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-fake-runtime-'));
  try {
    const bin = path.join(dir, 'fakerun');
    const count = path.join(dir, 'count');
    const script = (v: string) => `#!/bin/sh\necho x >> ${count}\necho "fakerun version ${v}"\n`;
    await writeFile(bin, script('1.2.3'), { mode: 0o755 });
    assert.deepEqual(await runtimeVersion(bin, dir), { version: '1.2.3' });
    assert.deepEqual(await runtimeVersion(bin, dir), { version: '1.2.3' });
    assert.equal((await readFile(count, 'utf8')).split('\n').filter(Boolean).length, 1, 'asked once');
    await writeFile(bin, script('1.2.40'), { mode: 0o755 }); // a new binary: another size
    assert.deepEqual(await runtimeVersion(bin, dir), { version: '1.2.40' });
    assert.equal((await readFile(count, 'utf8')).split('\n').filter(Boolean).length, 2);
    // Without a cache dir the binary is asked every time.
    await runtimeVersion(bin);
    assert.equal((await readFile(count, 'utf8')).split('\n').filter(Boolean).length, 3);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
