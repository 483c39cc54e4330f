// The store's records (records.ts) and locks (locks.ts) as parts of their own, on a bare store directory.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { RuntimeError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/types.js';
import { Locks } from '../../src/store/locks.js';
import { Records } from '../../src/store/records.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

/** A store root with the directories the records and locks use, and the two parts on it. */
async function parts(): Promise<{ root: string; locks: Locks; records: Records }> {
  const root = await mkdtemp(path.join(tmpdir(), 'kiln-records-'));
  temps.push(root);
  for (const sub of ['cache', 'tmp', 'locks']) mkdirSync(path.join(root, sub));
  const locks = new Locks(root);
  return { root, locks, records: new Records(root, locks) };
}

const digest = (s: string): Digest => `sha256:${createHash('sha256').update(s).digest('hex')}`;

test('tags round-trip through images.json (sorted by name), untag removes one and reports whether it was there', async () => {
  const { root, records } = await parts();
  const a = digest('a');
  const b = digest('b');
  await records.tag('zeta:1', a);
  await records.tag('alpha:latest', b);
  await records.tag('zeta:1', b); // re-pointed
  assert.equal(await records.resolveTag('zeta:1'), b);
  assert.equal(await records.resolveTag('missing:1'), undefined);
  assert.equal(await records.resolveTag('constructor'), undefined, 'an inherited property name is not a tag');
  assert.deepEqual(await records.listTags(), [
    { name: 'alpha:latest', digest: b },
    { name: 'zeta:1', digest: b },
  ]);
  assert.equal(readFileSync(path.join(root, 'images.json'), 'utf8'), `${JSON.stringify({ 'alpha:latest': b, 'zeta:1': b }, null, 2)}\n`);
  assert.equal(await records.untag('alpha:latest'), true);
  assert.equal(await records.untag('alpha:latest'), false);
  assert.deepEqual(await records.listTags(), [{ name: 'zeta:1', digest: b }]);
  await assert.rejects(records.tag('bad:1', 'sha256:../../etc' as Digest), RuntimeError);
  assert.deepEqual(readdirSync(path.join(root, 'tmp')), [], 'no temp file is left behind');
  assert.deepEqual(readdirSync(path.join(root, 'locks')), [], 'no lock is left behind');
});

test('cache records round-trip; a key that is not a safe file name is stored under its sha256', async () => {
  const { root, records } = await parts();
  await records.putCache('step-1', { layer: digest('l'), n: 1 });
  assert.deepEqual(await records.getCache('step-1'), { layer: digest('l'), n: 1 });
  assert.ok(existsSync(path.join(root, 'cache', 'step-1.json')));
  const unsafe = '../escape key';
  await records.putCache(unsafe, [1, 2]);
  assert.deepEqual(await records.getCache(unsafe), [1, 2]);
  const hex = createHash('sha256').update(unsafe).digest('hex');
  assert.ok(existsSync(path.join(root, 'cache', `${hex}.json`)));
  assert.equal(await records.getCache('never-written'), undefined);
  const seen: unknown[] = [];
  for await (const r of records.cacheRecords()) seen.push(r);
  assert.deepEqual(
    seen.map((r) => JSON.stringify(r)).sort(),
    [JSON.stringify([1, 2]), JSON.stringify({ layer: digest('l'), n: 1 })].sort(),
  );
});

test('concurrent holders of one lock run one after the other; other names do not wait; a dead owner’s lock is broken', async () => {
  const { root, locks } = await parts();
  const events: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const first = locks.withLock('x', async () => {
    events.push('first in');
    await gate;
    events.push('first out');
    return 1;
  });
  const second = locks.withLock('x', async () => {
    events.push('second in');
    return 2;
  });
  // Another name is free while `x` is held.
  assert.equal(await locks.withLock('y', async () => 'y'), 'y');
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.deepEqual(events, ['first in'], 'the second holder waits');
  release();
  assert.deepEqual(await Promise.all([first, second]), [1, 2]);
  assert.deepEqual(events, ['first in', 'first out', 'second in']);
  assert.deepEqual(readdirSync(path.join(root, 'locks')), []);

  // A lock left by a process that cannot run: Linux pids stop at 2^22 (pid_max's largest value).
  const deadPid = 4194305;
  await writeFile(path.join(root, 'locks', 'z.lock'), `${deadPid} ${(await import('node:os')).hostname()} 0011223344556677\n`);
  assert.equal(await locks.withLock('z', async () => 'taken'), 'taken');
  await assert.rejects(locks.withLock('../up', async () => 0), RuntimeError);
});
