import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { resolveInRoot, resolveUser } from '../../src/runtime/user.js';

let root: string;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'kiln-user-test-'));
  await mkdir(path.join(root, 'etc'));
  await writeFile(
    path.join(root, 'etc', 'passwd'),
    [
      'root:x:0:0:root:/root:/bin/sh',
      '# a comment line',
      'app:x:1000:1001:app:/home/app:/bin/sh',
      'broken line without fields',
      'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
      '',
    ].join('\n'),
  );
  await writeFile(path.join(root, 'etc', 'group'), 'root:x:0:\nwheel:x:10:root,app\napp:x:1001:\ndocker:x:999:someone, app\n');
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

test('an empty USER means root with gid 0', async () => {
  assert.deepEqual(await resolveUser(root, ''), { uid: 0, gid: 0, additionalGids: [], home: '/root' });
});

test('a user name takes uid, gid and home from passwd and supplementary groups from group membership', async () => {
  const u = await resolveUser(root, 'app');
  assert.equal(u.uid, 1000);
  assert.equal(u.gid, 1001);
  assert.equal(u.home, '/home/app');
  assert.deepEqual([...u.additionalGids].sort((a, b) => a - b), [10, 999]);
});

test('a numeric uid with a passwd entry uses that entry', async () => {
  const u = await resolveUser(root, '65534');
  assert.equal(u.uid, 65534);
  assert.equal(u.gid, 65534);
  assert.equal(u.home, '/nonexistent');
});

test('a numeric uid without a passwd entry is allowed and gets gid 0', async () => {
  assert.deepEqual(await resolveUser(root, '4242'), { uid: 4242, gid: 0, additionalGids: [], home: '/' });
});

test('an explicit group replaces the primary group and drops the supplementary groups', async () => {
  assert.deepEqual(await resolveUser(root, 'app:wheel'), { uid: 1000, gid: 10, additionalGids: [], home: '/home/app' });
  assert.deepEqual(await resolveUser(root, '1000:777'), { uid: 1000, gid: 777, additionalGids: [], home: '/home/app' });
});

test('an unknown user name fails with docker’s message', async () => {
  await assert.rejects(resolveUser(root, 'ghost'), { message: 'unable to find user ghost: no matching entries in passwd file' });
});

test('an unknown group name fails with docker’s message', async () => {
  await assert.rejects(resolveUser(root, 'app:ghosts'), { message: 'unable to find group ghosts: no matching entries in group file' });
});

test('a rootfs without /etc/passwd still accepts numeric ids but not names', async () => {
  const bare = await mkdtemp(path.join(os.tmpdir(), 'kiln-user-bare-'));
  try {
    assert.deepEqual(await resolveUser(bare, '12:34'), { uid: 12, gid: 34, additionalGids: [], home: '/' });
    await assert.rejects(resolveUser(bare, 'app'), /unable to find user app/);
  } finally {
    await rm(bare, { recursive: true, force: true });
  }
});

test('paths resolve inside the rootfs even through absolute symlinks and ..', async () => {
  const r = await mkdtemp(path.join(os.tmpdir(), 'kiln-user-links-'));
  try {
    await mkdir(path.join(r, 'real', 'etc'), { recursive: true });
    await symlink('/real/etc', path.join(r, 'etc'));
    await symlink('../../../../..', path.join(r, 'real', 'up'));
    assert.equal(await resolveInRoot(r, '/etc/passwd'), path.join(r, 'real', 'etc', 'passwd'));
    assert.equal(await resolveInRoot(r, '/real/up/etc'), path.join(r, 'real', 'etc'));
    assert.equal(await resolveInRoot(r, '/../../missing/../x'), path.join(r, 'x'));
  } finally {
    await rm(r, { recursive: true, force: true });
  }
});

test('a passwd symlink pointing at a host path is read from the rootfs, not the host', async () => {
  const r = await mkdtemp(path.join(os.tmpdir(), 'kiln-user-escape-'));
  const host = await mkdtemp(path.join(os.tmpdir(), 'kiln-user-host-'));
  try {
    await writeFile(path.join(host, 'passwd'), 'hostonly:x:7:7::/:/bin/sh\n');
    await mkdir(path.join(r, 'etc'));
    await symlink(path.join(host, 'passwd'), path.join(r, 'etc', 'passwd'));
    await assert.rejects(resolveUser(r, 'hostonly'), /unable to find user hostonly/);
    // The same link target, present inside the rootfs, is what counts.
    await mkdir(path.join(r, host), { recursive: true });
    await writeFile(path.join(r, host, 'passwd'), 'hostonly:x:8:9::/:/bin/sh\n');
    assert.equal((await resolveUser(r, 'hostonly')).uid, 8);
  } finally {
    await rm(r, { recursive: true, force: true });
    await rm(host, { recursive: true, force: true });
  }
});
