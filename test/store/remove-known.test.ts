import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { removeKnown } from '../../src/store/remove-known.js';

test('removeKnown removes the named entries and the directory; anything unexpected is removed recursively; absent is fine', () => {
  const base = mkdtempSync(path.join(tmpdir(), 'kiln-remove-known-'));
  try {
    const a = path.join(base, 'a');
    mkdirSync(path.join(a, 'files'), { recursive: true });
    writeFileSync(path.join(a, 'config.json'), '{}');
    writeFileSync(path.join(a, 'files', 'hosts'), 'x');
    removeKnown(a, ['config.json', 'files/hosts', 'not-there'], ['files', 'rootfs']);
    assert.ok(!existsSync(a));

    const b = path.join(base, 'b');
    mkdirSync(path.join(b, 'state', 'c1'), { recursive: true });
    writeFileSync(path.join(b, 'state', 'c1', 'status'), 'x');
    writeFileSync(path.join(b, 'surprise'), 'x');
    removeKnown(b, [], ['state']);
    assert.ok(!existsSync(b), 'a non-empty directory falls back to a recursive removal');

    removeKnown(path.join(base, 'never-made'), ['x'], ['y']);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
