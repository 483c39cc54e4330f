import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { detectRuntime } from '../../src/runtime/oci-runtime.js';

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

test('asking for crun on a hybrid-cgroup host falls back to runc with a warning', async () => {
  const r = await detectRuntime('crun');
  if (await crunRefusedHere()) {
    assert.equal(r.name, 'runc');
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0] ?? '', /crun cannot be used .*hybrid.*using runc instead/);
  } else {
    assert.equal(r.name, 'crun');
    assert.deepEqual(r.warnings, []);
  }
  // auto prefers crun but never warns: nothing was asked for explicitly.
  assert.deepEqual((await detectRuntime('auto')).warnings, []);
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
