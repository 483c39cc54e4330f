import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RuntimeError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/types.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { snapshotDirectory, snapshotIntoLayer } from '../../src/store/snapshot.js';
import { readTar } from '../../src/store/tar.js';

let work: string;
before(async () => {
  work = await fs.mkdtemp(path.join(tmpdir(), 'kiln-lazy-'));
});
after(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

const sha = (data: Uint8Array): Digest => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of source) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

/** A small tree with a subdirectory, a symlink, a hardlink and files of a few sizes. */
async function makeTree(dir: string): Promise<void> {
  await fs.mkdir(path.join(dir, 'etc', 'app'), { recursive: true });
  await fs.writeFile(path.join(dir, 'etc', 'app', 'conf'), 'key=value\n');
  await fs.writeFile(path.join(dir, 'etc', 'empty'), '');
  await fs.writeFile(path.join(dir, 'big.bin'), Buffer.alloc(700 * 1024, 'z'));
  await fs.symlink('app/conf', path.join(dir, 'etc', 'conf-link'));
  await fs.link(path.join(dir, 'etc', 'app', 'conf'), path.join(dir, 'etc', 'conf-hard'));
}

/** A copy of `dir` inside the store's tmp/ (adoption needs the store's filesystem). */
async function copyIntoStore(store: LayerStore, dir: string, name: string): Promise<string> {
  const target = path.join(store.root, 'tmp', name);
  execFileSync('cp', ['-a', dir, target]);
  return target;
}

test('a lazily adopted layer has no blob, yet its tar, gzip and blob all come back with its diffID', async () => {
  const store = await LayerStore.open(path.join(work, 'store-lazy'));
  const src = path.join(work, 'tree-lazy');
  await makeTree(src);
  // mtimes after the epoch, so the regeneration must reuse the recorded sourceDateEpoch to match.
  const epoch = 1_000_000;
  const eager = await snapshotDirectory(src, await LayerStore.open(path.join(work, 'store-eager')), { sourceDateEpoch: epoch });
  const { layer, rootfs } = await snapshotIntoLayer(await copyIntoStore(store, src, 'upper'), store, { sourceDateEpoch: epoch });
  assert.equal(layer.diffId, eager.diffId);
  assert.equal(layer.size, eager.size);
  assert.equal(rootfs, path.join(store.root, 'layers', layer.diffId.slice(7), 'rootfs'));
  assert.equal(await store.hasBlob(layer.digest), false);
  assert.equal(await store.hasLayer(layer.diffId), true);

  const tar = await collect(await store.openLayerTar(layer.diffId));
  assert.equal(sha(tar), layer.diffId);
  assert.equal(tar.length, layer.size);

  const gz = await store.compressLayer(layer.diffId, 'gzip');
  assert.equal(sha(gunzipSync(await store.readBlob(gz.digest))), layer.diffId);
  assert.equal(await store.hasBlob(layer.diffId), false, 'gzip from the directory writes no uncompressed blob');

  const plain = await store.findLayerBlob(layer.diffId, 'none');
  assert.equal(plain?.digest, layer.diffId);
  assert.equal(sha(await store.readBlob(layer.diffId)), layer.diffId);
});

test('a tampered unpacked layer is detected when its tar is regenerated, and no blob is stored', async () => {
  const store = await LayerStore.open(path.join(work, 'store-tamper'));
  const src = path.join(work, 'tree-tamper');
  await makeTree(src);
  const { layer, rootfs } = await snapshotIntoLayer(await copyIntoStore(store, src, 'upper'), store);
  // Same size, different content: only the hash can tell.
  await fs.writeFile(path.join(rootfs, 'etc', 'app', 'conf'), 'key=VALUE\n');
  const blobsBefore = await fs.readdir(path.join(store.root, 'blobs', 'sha256'));

  await assert.rejects(async () => collect(await store.openLayerTar(layer.diffId)), (err: unknown) => err instanceof RuntimeError && /no longer matches/.test(err.message));
  await assert.rejects(store.findLayerBlob(layer.diffId, 'none'), RuntimeError);
  await assert.rejects(store.compressLayer(layer.diffId, 'gzip'), RuntimeError);
  assert.deepEqual(await fs.readdir(path.join(store.root, 'blobs', 'sha256')), blobsBefore);
  assert.deepEqual((await fs.readdir(path.join(store.root, 'tmp'))).filter((n) => n.startsWith('blob-')), []);

  // A file that grows is caught too.
  await fs.appendFile(path.join(rootfs, 'etc', 'empty'), 'x'.repeat(4096));
  await assert.rejects(async () => collect(await store.openLayerTar(layer.diffId)), RuntimeError);
});

test('adoption strips overlay private xattrs but keeps the opaque marker and other xattrs', async () => {
  const store = await LayerStore.open(path.join(work, 'store-xattr'));
  const dir = path.join(store.root, 'tmp', 'upper-x');
  await fs.mkdir(path.join(dir, 'opaque-dir'), { recursive: true });
  await fs.mkdir(path.join(dir, 'copied-up'));
  await fs.writeFile(path.join(dir, 'copied-up', 'f'), 'f');
  const set = (name: string, value: string, file: string): void => {
    execFileSync('setfattr', ['-n', name, '-v', value, path.join(dir, file)]);
  };
  set('trusted.overlay.opaque', 'y', 'opaque-dir');
  set('trusted.overlay.impure', 'y', 'copied-up');
  set('trusted.overlay.origin', '0x00fb', 'copied-up/f');
  set('user.keep', 'kept', 'copied-up/f');
  const eager = await snapshotDirectory(dir, store, { blob: false });
  const { layer, rootfs } = await snapshotIntoLayer(dir, store);
  assert.equal(layer.diffId, eager.diffId);
  const dump = execFileSync('getfattr', ['-R', '-d', '-m', '-', '--absolute-names', rootfs]).toString();
  assert.match(dump, /trusted\.overlay\.opaque="y"/);
  assert.match(dump, /user\.keep="kept"/);
  assert.doesNotMatch(dump, /trusted\.overlay\.(impure|origin)/);
  // The tar still has the opaque whiteout, and regenerating it after the strip gives the same diffID.
  const names: string[] = [];
  for await (const e of readTar(await store.openLayerTar(layer.diffId))) names.push(e.header.name);
  assert.ok(names.includes('opaque-dir/.wh..wh..opq'));
});

test('prune keeps an unpacked-only layer that a cache record reaches and removes one that nothing reaches', async () => {
  const store = await LayerStore.open(path.join(work, 'store-prune'));
  const kept = path.join(work, 'tree-kept');
  await fs.mkdir(kept);
  await fs.writeFile(path.join(kept, 'a'), 'kept');
  const dropped = path.join(work, 'tree-dropped');
  await fs.mkdir(dropped);
  await fs.writeFile(path.join(dropped, 'a'), 'dropped');
  const k = await snapshotIntoLayer(await copyIntoStore(store, kept, 'k'), store);
  const d = await snapshotIntoLayer(await copyIntoStore(store, dropped, 'd'), store);
  await store.putCache('step-key', { layer: k.layer, created: '1970-01-01T00:00:00Z' });
  await store.prune();
  assert.equal(await store.hasLayer(k.layer.diffId), true);
  assert.equal(sha(await collect(await store.openLayerTar(k.layer.diffId))), k.layer.diffId);
  assert.equal(await store.hasLayer(d.layer.diffId), false);
  await assert.rejects(fs.stat(d.rootfs));
});

test('a tree larger than one output slab, with big and small files, round-trips exactly through the tar', async () => {
  const dir = path.join(work, 'tree-slabs');
  await fs.mkdir(dir);
  const want = new Map<string, string>();
  const put = async (name: string, data: Buffer): Promise<void> => {
    await fs.writeFile(path.join(dir, name), data);
    want.set(name, sha(data));
  };
  // 400 files of 1-7 KiB (about 1.6 MiB of headers + content) around files bigger than the small-file limit.
  for (let i = 0; i < 400; i++) await put(`f${String(i).padStart(3, '0')}`, Buffer.alloc(1024 + ((i * 523) % 6000), i % 251));
  await put('m-big', Buffer.alloc(3 * 1024 * 1024 + 17, 'b'));
  await put('m-mid', Buffer.alloc(600 * 1024 + 1, 'm'));
  const store = await LayerStore.open(path.join(work, 'store-slabs'));
  const layer = await snapshotDirectory(dir, store);
  const lazy = await snapshotDirectory(dir, store, { blob: false, xattrs: 'none' });
  assert.equal(lazy.diffId, layer.diffId);
  const got = new Map<string, string>();
  for await (const e of readTar(store.openBlob(layer.digest))) {
    const hash = createHash('sha256');
    for await (const piece of e.body) hash.update(piece);
    if (e.header.type === 'file') got.set(e.header.name, `sha256:${hash.digest('hex')}`);
  }
  assert.deepEqual(got, want);
  // GNU tar reads it the same way.
  const listing = execFileSync('tar', ['-tf', store.blobPath(layer.digest)], { maxBuffer: 1 << 24 }).toString().trim().split('\n');
  assert.deepEqual(listing, [...want.keys()].sort());
});
