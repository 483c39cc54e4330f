import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, link, lstat, mkdir, readFile, utimes, writeFile, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { extract } from 'tar-stream';
import { Readable } from 'node:stream';
import { layerTarStream } from '../../src/store/snapshot.js';
import { LayerStore } from '../../src/store/layer-store.js';
import type { Digest } from '../../src/oci/types.js';
import { copyIntoRootfs } from '../../src/runtime/handlers/copy.js';
import { sandbox, type Built, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

async function tarOf(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of layerTarStream(dir)) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function tarEntries(tar: Buffer): Promise<Array<{ name: string; type: string }>> {
  const out: Array<{ name: string; type: string }> = [];
  const ex = extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      out.push({ name: h.name, type: h.type ?? '' });
      stream.resume();
      stream.on('end', next);
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  Readable.from([tar]).pipe(ex);
  await done;
  return out;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The diffID of the layer the image's COPY step made (the last layer) and its unpacked directory. */
async function copyLayer(b: Built): Promise<{ diffId: Digest; rootfs: string }> {
  const diffId = b.image.config.rootfs.diff_ids.at(-1) as Digest;
  const store = await LayerStore.open(sb.root);
  return { diffId, rootfs: await store.unpackedLayer(diffId) };
}

test('a file whose inode is shared with another directory is written as a regular file, as a copy would be', async () => {
  const other = await sb.tempDir('other');
  const linked = await sb.tempDir('linked');
  const copied = await sb.tempDir('copied');
  await writeFile(path.join(other, 'f'), 'shared content\n');
  await chmod(path.join(other, 'f'), 0o640);
  await utimes(path.join(other, 'f'), 1_700_000_000, 1_700_000_000);
  await writeFile(path.join(other, 'g'), 'second\n');
  await link(path.join(other, 'f'), path.join(linked, 'f'));
  await link(path.join(other, 'g'), path.join(linked, 'g'));
  for (const name of ['f', 'g']) {
    const st = await lstat(path.join(other, name));
    await copyFile(path.join(other, name), path.join(copied, name));
    await chmod(path.join(copied, name), st.mode & 0o7777);
    await utimes(path.join(copied, name), st.atime, st.mtime);
  }
  assert.equal((await lstat(path.join(linked, 'f'))).nlink, 2);
  const a = await tarOf(linked);
  assert.deepEqual(await tarEntries(a), [
    { name: 'f', type: 'file' },
    { name: 'g', type: 'file' },
  ]);
  assert.equal(sha(a), sha(await tarOf(copied)));
});

test('two paths of one layer sharing an inode still become a hardlink entry', async () => {
  const dir = await sb.tempDir('inner');
  await writeFile(path.join(dir, 'a'), 'x');
  await link(path.join(dir, 'a'), path.join(dir, 'b'));
  assert.deepEqual(await tarEntries(await tarOf(dir)), [
    { name: 'a', type: 'file' },
    { name: 'b', type: 'link' },
  ]);
});

/** A context of `n` small files in two directories. */
async function manyFiles(n: number): Promise<string> {
  const files: Record<string, string> = {};
  for (let i = 0; i < n; i++) files[`files/d${i % 2}/f${i}`] = `file ${i}\n`;
  return sb.context(files);
}

// 20 files are copied one by one; 48 go through the addon's batched copy (and the batched check of their sources
// that lets the next build reuse them), when it is built.
for (const n of [20, 48]) test(`a rebuilt COPY of ${n} files links unchanged files from the earlier layer and copies the changed one, with the same diffID as a fresh build`, async () => {
  const ctx = await manyFiles(n);
  const dockerfileText = 'FROM scratch\nCOPY files/ /data/\n';
  const first = await sb.build({ context: ctx, dockerfileText });
  const old = await copyLayer(first);
  await writeFile(path.join(ctx, 'files/d1/f3'), 'changed\n');
  // Directories get the time of the build as mtime; clamping to now (later than every file's mtime) makes the
  // two builds' layers comparable without hiding the files' own mtimes.
  const sourceDateEpoch = Math.floor(Date.now() / 1000);
  const second = await sb.build({ context: ctx, dockerfileText, sourceDateEpoch });
  assert.ok(second.ran('COPY files/ /data/'));
  const now = await copyLayer(second);
  assert.notEqual(now.diffId, old.diffId);
  const ino = async (root: string, p: string): Promise<number> => (await lstat(path.join(root, p))).ino;
  assert.equal(await ino(now.rootfs, 'data/d0/f0'), await ino(old.rootfs, 'data/d0/f0'));
  assert.equal(await ino(now.rootfs, 'data/d1/f19'), await ino(old.rootfs, 'data/d1/f19'));
  assert.equal(await ino(now.rootfs, `data/d1/f${n - 1}`), await ino(old.rootfs, `data/d1/f${n - 1}`));
  assert.notEqual(await ino(now.rootfs, 'data/d1/f3'), await ino(old.rootfs, 'data/d1/f3'));
  assert.equal(await readFile(path.join(old.rootfs, 'data/d1/f3'), 'utf8'), 'file 3\n');
  assert.equal(await second.read('data/d1/f3'), 'changed\n');
  assert.equal(await second.read('data/d0/f0'), 'file 0\n');

  // The same context built into an empty store (every file copied) gives the same layer.
  const fresh = await sandbox();
  try {
    const b = await fresh.build({ context: ctx, dockerfileText, sourceDateEpoch });
    assert.equal(b.image.config.rootfs.diff_ids.at(-1), now.diffId);
  } finally {
    await fresh.cleanup();
  }
});

test('a file with the same content but other metadata is copied, not linked', async () => {
  const ctx = await manyFiles(6);
  const dockerfileText = 'FROM scratch\nCOPY files/ /meta/\n';
  const old = await copyLayer(await sb.build({ context: ctx, dockerfileText }));
  await chmod(path.join(ctx, 'files/d0/f2'), 0o600); // a mode change alone changes the cache key
  await utimes(path.join(ctx, 'files/d1/f1'), 1_600_000_000, 1_600_000_000); // a touch alone does not
  const second = await sb.build({ context: ctx, dockerfileText });
  assert.ok(second.ran('COPY files/ /meta/'));
  const now = await copyLayer(second);
  for (const p of ['d0/f2', 'd1/f1']) {
    const [a, b] = [await lstat(path.join(old.rootfs, 'meta', p)), await lstat(path.join(now.rootfs, 'meta', p))];
    assert.notEqual(a.ino, b.ino, p);
  }
  assert.equal((await lstat(path.join(now.rootfs, 'meta/d0/f2'))).mode & 0o7777, 0o600);
  assert.equal((await lstat(path.join(old.rootfs, 'meta/d0/f2'))).mode & 0o7777, 0o644);
  assert.equal(Math.round((await lstat(path.join(now.rootfs, 'meta/d1/f1'))).mtimeMs / 1000), 1_600_000_000);
  assert.equal((await lstat(path.join(now.rootfs, 'meta/d0/f0'))).ino, (await lstat(path.join(old.rootfs, 'meta/d0/f0'))).ino);
});

test('sources sharing a target are copied in order on a rebuild (the last wins) and the earlier layer stays intact', async () => {
  const ctx = await sb.context({ 'a/x': 'from a\n', 'a/y': 'y\n', 'b/x': 'from b\n', 'b/z': 'z1\n' });
  const dockerfileText = 'FROM scratch\nCOPY a/ b/ /both/\n';
  const old = await copyLayer(await sb.build({ context: ctx, dockerfileText }));
  await writeFile(path.join(ctx, 'b/z'), 'z2\n');
  const second = await sb.build({ context: ctx, dockerfileText });
  assert.ok(second.ran('COPY a/ b/ /both/'));
  assert.equal(await second.read('both/x'), 'from b\n');
  assert.equal(await second.read('both/z'), 'z2\n');
  const now = await copyLayer(second);
  assert.equal((await lstat(path.join(now.rootfs, 'both/y'))).ino, (await lstat(path.join(old.rootfs, 'both/y'))).ino);
  assert.equal(await readFile(path.join(old.rootfs, 'both/z'), 'utf8'), 'z1\n');
  // The earlier layer still regenerates to its own diffID (the store verifies it while streaming).
  const store = await LayerStore.open(sb.root);
  const chunks: Buffer[] = [];
  for await (const c of await store.openLayerTar(old.diffId)) chunks.push(Buffer.from(c));
  assert.equal(`sha256:${sha(Buffer.concat(chunks))}`, old.diffId);
});

test('copying onto an existing file that has other links replaces it instead of writing through it', async () => {
  const outside = await sb.tempDir('outside');
  const rootfs = await sb.tempDir('rootfs');
  const srcDir = await sb.tempDir('src');
  await writeFile(path.join(outside, 'f'), 'stored layer content\n');
  await mkdir(path.join(rootfs, 'dst'));
  await link(path.join(outside, 'f'), path.join(rootfs, 'dst', 'f'));
  await writeFile(path.join(srcDir, 'f'), 'new\n');
  const stats = await lstat(path.join(srcDir, 'f'));
  await copyIntoRootfs(rootfs, {
    sources: [{ abs: path.join(srcDir, 'f'), rel: 'f', stats, type: 'file' }],
    list: async () => [],
    dest: '/dst/',
    keepOwner: false,
  });
  assert.equal(await readFile(path.join(rootfs, 'dst', 'f'), 'utf8'), 'new\n');
  assert.equal(await readFile(path.join(outside, 'f'), 'utf8'), 'stored layer content\n');
  assert.equal((await lstat(path.join(outside, 'f'))).nlink, 1);
});

test('a COPY into an existing directory (through the overlay) still works with an earlier layer recorded', async () => {
  const ctx = await manyFiles(4);
  const dockerfileText = 'FROM scratch\nCOPY files/d0/ /app/\nCOPY files/d1/ /app/\n';
  await sb.build({ context: ctx, dockerfileText });
  await writeFile(path.join(ctx, 'files/d1/f1'), 'changed\n');
  const b = await sb.build({ context: ctx, dockerfileText });
  assert.equal(await b.read('app/f1'), 'changed\n');
  assert.equal(await b.read('app/f0'), 'file 0\n');
});

test('one inode of the earlier layer is linked into a new layer at most once, so no hardlink entry appears', async () => {
  const root = await sb.tempDir('reuse-store');
  const store = await LayerStore.open(root);
  const hex = 'ab'.repeat(32);
  const rootfs = path.join(root, 'layers', hex, 'rootfs');
  await mkdir(rootfs, { recursive: true });
  await writeFile(path.join(rootfs, 'a'), 'same\n');
  await link(path.join(rootfs, 'a'), path.join(rootfs, 'b')); // e.g. a pulled layer with an inner hardlink
  const st = await lstat(path.join(rootfs, 'a'));
  const digest = sha(Buffer.from('same\n'));
  const { CopyReuse } = await import('../../src/store/file-reuse.js');
  const first = await CopyReuse.open(store, 'ctx\0COPY . /');
  first.record('a', digest);
  first.record('b', digest);
  await first.commit(`sha256:${hex}`);

  const again = await CopyReuse.open(store, 'ctx\0COPY . /');
  const upper = await sb.tempDir('reuse-upper');
  const want = { size: st.size, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtimeMs };
  assert.equal(again.linkSync('x', path.join(upper, 'x'), digest, want), 'linked');
  assert.notEqual(again.linkSync('y', path.join(upper, 'y'), digest, want), 'linked');
  assert.notEqual(again.linkSync('a', path.join(upper, 'a2'), sha(Buffer.from('other\n')), want), 'linked');
  assert.equal(again.linkSync('../../a', path.join(upper, 'z'), digest, { ...want, mode: 0o600 }), 'metadata-differs');
  assert.deepEqual(await tarEntries(await tarOf(upper)), [{ name: 'x', type: 'file' }]);
});
