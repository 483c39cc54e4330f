import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RuntimeError } from '../../src/errors.js';
import { ensureBusyboxImage } from '../../src/image/base-image.js';
import { exportImage } from '../../src/outputs/index.js';
import { importImage } from '../../src/image/import.js';
import type { ImportSource } from '../../src/image/import.js';
import type { Digest, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { LayerStore } from '../../src/store/layer-store.js';

type T = { after: (fn: () => Promise<void>) => void };

async function tempDir(t: T, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** An OCI layout (gzip layers) and a docker archive of the busybox image, written once per test. */
async function fixtures(t: T): Promise<{ layout: string; archive: string; out: string }> {
  const store = await LayerStore.open(await tempDir(t, 'kiln-import-src-'));
  const image = await ensureBusyboxImage(store);
  const out = await tempDir(t, 'kiln-import-out-');
  const layout = join(out, 'layout');
  const archive = join(out, 'image.tar');
  await exportImage(image, store, { type: 'oci', dest: layout, tags: ['src:v1'] });
  await exportImage(image, store, { type: 'docker', dest: archive, tags: ['src:v1'] });
  return { layout, archive, out };
}

const blob = (layout: string, digest: string): string => join(layout, 'blobs', 'sha256', digest.replace('sha256:', ''));
const sha = (data: Buffer | string): Digest => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function manifestOf(layout: string): Promise<{ index: ImageIndex; manifest: ImageManifest }> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as ImageIndex;
  const d = index.manifests[0];
  assert.ok(d);
  return { index, manifest: JSON.parse(await readFile(blob(layout, d.digest), 'utf8')) as ImageManifest };
}

/** Rewrites the layout's manifest (and the index pointing at it). */
async function rewriteManifest(layout: string, edit: (m: ImageManifest) => void): Promise<void> {
  const { index, manifest } = await manifestOf(layout);
  edit(manifest);
  const bytes = JSON.stringify(manifest);
  await writeFile(blob(layout, sha(bytes)), bytes);
  const d = index.manifests[0];
  assert.ok(d);
  d.digest = sha(bytes);
  d.size = Buffer.byteLength(bytes);
  await writeFile(join(layout, 'index.json'), JSON.stringify(index));
}

/** Imports `source` into a fresh store, expects a RuntimeError matching `pattern`, and checks the store is untouched. */
async function expectCleanFailure(t: T, source: ImportSource, pattern: RegExp): Promise<void> {
  const store = await LayerStore.open(await tempDir(t, 'kiln-import-dst-'));
  const before = (await readdir(join(store.root, 'blobs', 'sha256'))).sort();
  await assert.rejects(importImage(source, store, { tag: 'dst:v1' }), (err: unknown) => {
    assert.ok(err instanceof RuntimeError, String(err));
    assert.match(err.message, pattern);
    return true;
  });
  assert.deepEqual(await store.listTags(), []);
  assert.deepEqual((await readdir(join(store.root, 'blobs', 'sha256'))).sort(), before);
  assert.deepEqual(await readdir(join(store.root, 'tmp')), []);
}

test('an OCI layout and its tar import with verified layers stored uncompressed', async (t) => {
  const { layout, out } = await fixtures(t);
  const store = await LayerStore.open(await tempDir(t, 'kiln-import-dst-'));
  const image = await importImage({ type: 'oci-layout', path: layout }, store, { tag: 'dst:v1' });
  const diffId = image.config.rootfs.diff_ids[0];
  assert.ok(diffId);
  assert.equal(image.manifest.layers[0]?.digest, diffId);
  assert.equal(sha(await store.readBlob(diffId)), diffId);
  const { manifest } = await manifestOf(layout);
  assert.equal((await store.findLayerBlob(diffId, 'gzip'))?.digest, manifest.layers[0]?.digest);
  assert.equal(await store.resolveTag('dst:v1'), image.manifestDigest);

  const tarFile = join(out, 'layout.tar');
  await exportImage(image, store, { type: 'oci', dest: tarFile, tags: ['x:v9'] });
  const again = await importImage({ type: 'oci-layout', path: tarFile, ref: 'v9' }, store);
  assert.equal(again.configDigest, image.configDigest);
});

test('a root filesystem tar becomes a one-layer image', async (t) => {
  const { archive, out } = await fixtures(t);
  const store = await LayerStore.open(await tempDir(t, 'kiln-import-dst-'));
  const image = await importImage({ type: 'docker-archive', path: archive }, store);
  const fsTar = join(out, 'fs.tar');
  await exportImage(image, store, { type: 'tar', dest: fsTar });
  const rootfs = await importImage({ type: 'rootfs', path: fsTar }, store, { tag: 'rootfs:v1' });
  assert.equal(rootfs.config.rootfs.diff_ids.length, 1);
  assert.equal(rootfs.config.rootfs.diff_ids[0], sha(await readFile(fsTar)));
  assert.equal(await store.resolveTag('rootfs:v1'), rootfs.manifestDigest);
});

test('an empty layer (a tar of only its two end blocks, as docker writes for a step that changes nothing) imports; an empty file does not', async (t) => {
  const dir = await tempDir(t, 'kiln-import-empty-');
  const store = await LayerStore.open(await tempDir(t, 'kiln-import-dst-'));
  const emptyTar = join(dir, 'empty.tar');
  await writeFile(emptyTar, Buffer.alloc(1024));
  const image = await importImage({ type: 'rootfs', path: emptyTar }, store, { tag: 'empty:v1' });
  // The digest docker gives its empty layers.
  assert.deepEqual(image.config.rootfs.diff_ids, ['sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef']);
  const nothing = join(dir, 'nothing.tar');
  await writeFile(nothing, '');
  await expectCleanFailure(t, { type: 'rootfs', path: nothing }, /not a tar/);
});

test('a truncated docker archive fails naming the archive and stores nothing', async (t) => {
  const { archive } = await fixtures(t);
  await truncate(archive, 1_000_000);
  await expectCleanFailure(t, { type: 'docker-archive', path: archive }, /image\.tar/);
});

test('a layer blob whose content does not match its digest fails naming the blob', async (t) => {
  const { layout } = await fixtures(t);
  const { manifest } = await manifestOf(layout);
  const layer = manifest.layers[0];
  assert.ok(layer);
  const data = await readFile(blob(layout, layer.digest));
  data[data.length - 100] = (data[data.length - 100] ?? 0) ^ 0xff;
  await writeFile(blob(layout, layer.digest), data);
  await expectCleanFailure(t, { type: 'oci-layout', path: layout }, new RegExp(`${layer.digest.slice(7)}.*has digest`));
});

test('a missing layer blob fails before anything is stored', async (t) => {
  const { layout } = await fixtures(t);
  const { manifest } = await manifestOf(layout);
  const layer = manifest.layers[0];
  assert.ok(layer);
  await unlink(blob(layout, layer.digest));
  await expectCleanFailure(t, { type: 'oci-layout', path: layout }, /layer blob .* is missing/);
});

test('a layer that does not match the config diff_id fails and leaves no blob', async (t) => {
  const { layout } = await fixtures(t);
  const { manifest } = await manifestOf(layout);
  const config = JSON.parse(await readFile(blob(layout, manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] } };
  config.rootfs.diff_ids = [`sha256:${'0'.repeat(64)}`];
  const bytes = JSON.stringify(config);
  await writeFile(blob(layout, sha(bytes)), bytes);
  await rewriteManifest(layout, (m) => {
    m.config = { ...m.config, digest: sha(bytes), size: Buffer.byteLength(bytes) };
  });
  await expectCleanFailure(t, { type: 'oci-layout', path: layout }, /diff_id/);
});

test('a truncated gzip layer with a matching descriptor fails as an invalid tar', async (t) => {
  const { layout } = await fixtures(t);
  const { manifest } = await manifestOf(layout);
  const layer = manifest.layers[0];
  assert.ok(layer);
  const cut = (await readFile(blob(layout, layer.digest))).subarray(0, 300_000);
  await writeFile(blob(layout, sha(cut)), cut);
  await rewriteManifest(layout, (m) => {
    m.layers = [{ ...layer, digest: sha(cut), size: cut.length }];
  });
  await expectCleanFailure(t, { type: 'oci-layout', path: layout }, /not a valid tar/);
});

test('a layout without the requested ref lists the names it has', async (t) => {
  const { layout, out } = await fixtures(t);
  const copy = join(out, 'copy');
  await mkdir(copy);
  await cp(layout, copy, { recursive: true });
  await expectCleanFailure(t, { type: 'oci-layout', path: copy, ref: 'nope' }, /no image named "nope".*v1/);
});
