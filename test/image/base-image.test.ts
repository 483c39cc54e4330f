import assert from 'node:assert/strict';
import { lstat, mkdtemp, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RuntimeError } from '../../src/errors.js';
import { ensureBusyboxImage } from '../../src/image/base-image.js';
import { hostPlatform } from '../../src/oci/platform.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { readTar } from '../../src/store/tar.js';
import type { TarHeader } from '../../src/store/tar.js';

async function freshStore(t: { after: (fn: () => Promise<void>) => void }): Promise<LayerStore> {
  const root = await mkdtemp(join(tmpdir(), 'kiln-base-test-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  return LayerStore.open(root);
}

test('the busybox base image built in two separate stores has identical digests', async (t) => {
  const a = await ensureBusyboxImage(await freshStore(t));
  const b = await ensureBusyboxImage(await freshStore(t));
  assert.equal(a.manifestDigest, b.manifestDigest);
  assert.equal(a.configDigest, b.configDigest);
  assert.deepEqual(a.config.rootfs.diff_ids, b.config.rootfs.diff_ids);
});

test('the busybox base image has the shell, applet links, users and fixed metadata', async (t) => {
  const store = await freshStore(t);
  const image = await ensureBusyboxImage(store);
  assert.equal(await store.resolveTag('busybox:latest'), image.manifestDigest);
  assert.equal(image.config.architecture, hostPlatform().architecture);
  assert.deepEqual(image.config.config.Cmd, ['sh']);
  assert.ok(image.config.config.Env?.some((e) => e.startsWith('PATH=') && e.includes('/bin')));
  assert.equal(image.config.history?.length, 1);

  const diffId = image.config.rootfs.diff_ids[0];
  assert.ok(diffId);
  const entries = new Map<string, TarHeader>();
  const texts = new Map<string, string>();
  for await (const { header, body } of readTar(store.openBlob(diffId))) {
    entries.set(header.name, header);
    if (header.name.startsWith('etc/')) {
      const parts: Buffer[] = [];
      for await (const c of body) parts.push(c);
      texts.set(header.name, Buffer.concat(parts).toString());
    }
  }
  assert.equal(entries.get('bin/busybox')?.type, 'file');
  assert.equal(entries.get('bin/busybox')?.mode, 0o755);
  assert.equal(entries.get('bin/sh')?.type, 'symlink');
  assert.equal(entries.get('bin/sh')?.linkname, 'busybox');
  assert.equal(entries.get('tmp')?.mode, 0o1777);
  assert.equal(entries.get('root')?.mode, 0o700);
  for (const d of ['proc', 'sys', 'dev', 'var', 'usr/bin', 'usr/sbin', 'sbin', 'etc']) assert.equal(entries.get(d)?.type, 'directory', d);
  assert.ok([...entries.values()].every((h) => h.mtime === 0 && h.uid === 0 && h.gid === 0));
  assert.match(texts.get('etc/passwd') ?? '', /^root:x:0:0:/m);
  assert.match(texts.get('etc/passwd') ?? '', /^nobody:x:65534:65534:/m);
  assert.match(texts.get('etc/group') ?? '', /^nobody:x:65534:/m);
});

test('the base image is unpacked when it is made, so no build pays for it', async (t) => {
  const store = await freshStore(t);
  const image = await ensureBusyboxImage(store);
  const hex = (image.config.rootfs.diff_ids[0] ?? '').replace('sha256:', '');
  const busybox = await lstat(join(store.root, 'layers', hex, 'rootfs', 'bin', 'busybox'));
  assert.ok(busybox.isFile() && busybox.size > 100_000);
  assert.equal(await readlink(join(store.root, 'layers', hex, 'rootfs', 'bin', 'sh')), 'busybox');
});

test('ensuring the base image twice in one store returns the same image and keeps a custom tag', async (t) => {
  const store = await freshStore(t);
  const first = await ensureBusyboxImage(store, { tag: 'base:v1' });
  const again = await ensureBusyboxImage(store, { tag: 'base:v1' });
  assert.equal(again.manifestDigest, first.manifestDigest);
  assert.equal(await store.resolveTag('base:v1'), first.manifestDigest);
  assert.equal(await store.resolveTag('busybox:latest'), undefined);
});

test('a missing busybox binary fails with a RuntimeError that says how to install it', async (t) => {
  const store = await freshStore(t);
  await assert.rejects(ensureBusyboxImage(store, { busyboxPath: '/nonexistent/busybox' }), (err: unknown) => {
    assert.ok(err instanceof RuntimeError);
    assert.match(err.message, /apt-get install busybox-static/);
    assert.match(err.message, /npm run bootstrap/);
    return true;
  });
  assert.deepEqual(await store.listTags(), []);
});
