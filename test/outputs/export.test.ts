import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { execa } from 'execa';
import { ensureBusyboxImage } from '../../src/image/base-image.js';
import { exportImage } from '../../src/outputs/index.js';
import { importImage } from '../../src/image/import.js';
import { MEDIA_TYPES } from '../../src/oci/types.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { END_OF_ARCHIVE, encodeHeader, padding, readTar } from '../../src/store/tar.js';
import type { TarHeader } from '../../src/store/tar.js';
import type { LayerInfo, StoredImage } from '../../src/store/types.js';

type T = { after: (fn: () => Promise<void>) => void };

async function tempDir(t: T, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function busybox(t: T): Promise<{ store: LayerStore; image: StoredImage; out: string }> {
  const store = await LayerStore.open(await tempDir(t, 'kiln-export-store-'));
  return { store, image: await ensureBusyboxImage(store), out: await tempDir(t, 'kiln-export-out-') };
}

test('an OCI layout export is read by skopeo and unpacked by umoci into a bundle runc runs', async (t) => {
  const { store, image, out } = await busybox(t);
  const layout = join(out, 'layout');
  const res = await exportImage(image, store, { type: 'oci', dest: layout, tags: ['kiln-test/busybox:v1'] });
  const inspect = JSON.parse((await execa('skopeo', ['inspect', `oci:${layout}:v1`])).stdout) as { Digest: string; Layers: string[] };
  assert.equal(inspect.Digest, res.manifestDigest);
  assert.equal(inspect.Layers.length, 1);
  const manifest = JSON.parse(await readFile(join(layout, 'blobs', 'sha256', res.manifestDigest.slice(7)), 'utf8')) as { layers: Array<{ mediaType: string }> };
  assert.equal(manifest.layers[0]?.mediaType, MEDIA_TYPES.ociLayerGzip);
  assert.equal(res.configDigest, image.configDigest);

  const bundle = join(out, 'bundle');
  await execa('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
  assert.ok((await lstat(join(bundle, 'rootfs', 'bin', 'busybox'))).isFile());
  assert.equal(await readlink(join(bundle, 'rootfs', 'bin', 'sh')), 'busybox');

  const configPath = join(bundle, 'config.json');
  const spec = JSON.parse(await readFile(configPath, 'utf8')) as { process: { terminal: boolean; args: string[] } };
  spec.process.terminal = false;
  spec.process.args = ['/bin/sh', '-c', 'echo hello from $(cat /etc/hostname 2>/dev/null || echo kiln) ok'];
  await writeFile(configPath, JSON.stringify(spec));
  const id = `kiln-export-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const run = await execa('runc', ['run', '--bundle', bundle, id], { stdin: 'ignore' });
    assert.match(run.stdout, /^hello from .* ok$/m);
  } finally {
    await execa('runc', ['delete', '--force', id], { reject: false });
  }
});

test('an OCI layout tar with zstd layers is read by skopeo as an oci-archive', async (t) => {
  const { store, image, out } = await busybox(t);
  const file = join(out, 'image.tar');
  const res = await exportImage(image, store, { type: 'oci', dest: file, tags: ['z:latest'], compression: 'zstd' });
  const inspect = JSON.parse((await execa('skopeo', ['inspect', `oci-archive:${file}:latest`])).stdout) as { Digest: string };
  assert.equal(inspect.Digest, res.manifestDigest);
  const raw = JSON.parse((await execa('skopeo', ['inspect', '--raw', `oci-archive:${file}:latest`])).stdout) as { layers: Array<{ mediaType: string }> };
  assert.equal(raw.layers[0]?.mediaType, MEDIA_TYPES.ociLayerZstd);
});

test('exporting the same image twice writes byte-identical files in every format', async (t) => {
  const { store, image, out } = await busybox(t);
  for (const [type, name] of [['oci', 'a.tar'], ['docker', 'b.tar'], ['tar', 'c.tar']] as const) {
    const first = join(out, `1-${name}`);
    const second = join(out, `2-${name}`);
    await exportImage(image, store, { type, dest: first, tags: ['same:v1'] });
    await exportImage(image, store, { type, dest: second, tags: ['same:v1'] });
    assert.ok((await readFile(first)).equals(await readFile(second)), `${type} output differs`);
  }
});

test('a docker archive is read by skopeo and re-imports to the same config digest', async (t) => {
  const { store, image, out } = await busybox(t);
  const file = join(out, 'docker.tar');
  await exportImage(image, store, { type: 'docker', dest: file, tags: ['kiln-rt:v2'] });
  const inspect = JSON.parse((await execa('skopeo', ['inspect', `docker-archive:${file}`])).stdout) as { Layers: string[] };
  assert.deepEqual(inspect.Layers, image.config.rootfs.diff_ids);
  const names = [];
  for await (const { header } of readTar((await import('node:fs')).createReadStream(file))) names.push(header.name);
  assert.ok(names.includes('manifest.json') && names.includes('repositories'));

  const other = await LayerStore.open(await tempDir(t, 'kiln-export-store2-'));
  const back = await importImage({ type: 'docker-archive', path: file }, other);
  assert.equal(back.configDigest, image.configDigest);
  assert.equal(await other.resolveTag('kiln-rt:v2'), back.manifestDigest);
});

test('an OCI layout written by skopeo from kiln\'s docker archive imports to the same config', async (t) => {
  const { store, image, out } = await busybox(t);
  const file = join(out, 'docker.tar');
  await exportImage(image, store, { type: 'docker', dest: file, tags: ['kiln-sk:v3'] });
  const layout = join(out, 'skopeo-layout');
  await execa('skopeo', ['copy', `docker-archive:${file}`, `oci:${layout}:v3`]);
  const other = await LayerStore.open(await tempDir(t, 'kiln-export-store3-'));
  const back = await importImage({ type: 'oci-layout', path: layout, ref: 'v3' }, other, { tag: 'imported:v3' });
  assert.equal(back.configDigest, image.configDigest);
  assert.deepEqual(back.config.rootfs.diff_ids, image.config.rootfs.diff_ids);
  assert.equal(await other.resolveTag('imported:v3'), back.manifestDigest);
});

const h = (name: string, type: TarHeader['type'], extra: Partial<TarHeader> = {}): TarHeader => ({
  name, type, mode: type === 'directory' ? 0o755 : 0o644, uid: 0, gid: 0, size: 0, mtime: 0, ...extra,
});

/** A layer tar from [header, content] pairs. */
function layerTar(entries: Array<[TarHeader, string?]>): Buffer {
  const parts: Buffer[] = [];
  for (const [header, text] of entries) {
    const data = Buffer.from(text ?? '');
    parts.push(encodeHeader({ ...header, size: header.type === 'file' ? data.length : 0 }));
    if (header.type === 'file') parts.push(data, padding(data.length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

async function twoLayerImage(store: LayerStore): Promise<StoredImage> {
  const lower = layerTar([
    [h('a', 'directory')], [h('a/keep', 'file'), 'keep'], [h('a/gone', 'file'), 'gone'],
    [h('b', 'directory')], [h('b/inner', 'file'), 'inner'],
    [h('c', 'directory')], [h('c/old', 'file'), 'old'],
    [h('f', 'file'), 'v1'],
  ]);
  const upper = layerTar([
    [h('a/.wh.gone', 'file')], [h('.wh.b', 'file')],
    [h('c', 'directory')], [h('c/.wh..wh..opq', 'file')], [h('c/new', 'file'), 'new'],
    [h('f', 'file'), 'v2'], [h('l', 'symlink', { linkname: 'f', mode: 0o777 })],
  ]);
  const layers: LayerInfo[] = [];
  for (const data of [lower, upper]) {
    const { digest, size } = await store.writeBlobBytes(data);
    layers.push({ diffId: digest, digest, size, mediaType: MEDIA_TYPES.ociLayer });
  }
  return store.putImage({
    architecture: 'amd64', os: 'linux', config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  }, layers);
}

test('the tar and local outputs hold the final filesystem with whiteouts applied', async (t) => {
  const store = await LayerStore.open(await tempDir(t, 'kiln-export-store4-'));
  const out = await tempDir(t, 'kiln-export-out-');
  const image = await twoLayerImage(store);

  const file = join(out, 'fs.tar');
  await exportImage(image, store, { type: 'tar', dest: file });
  const contents = new Map<string, string>();
  for await (const { header, body } of readTar((await import('node:fs')).createReadStream(file))) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c);
    contents.set(header.name, header.type === 'file' ? Buffer.concat(parts).toString() : header.type);
  }
  assert.deepEqual([...contents.keys()].sort(), ['a', 'a/keep', 'c', 'c/new', 'f', 'l']);
  assert.equal(contents.get('f'), 'v2');
  assert.equal(contents.get('a/keep'), 'keep');

  const dir = join(out, 'rootfs');
  await exportImage(image, store, { type: 'local', dest: dir });
  assert.deepEqual((await readdir(dir)).sort(), ['a', 'c', 'f', 'l']);
  assert.deepEqual(await readdir(join(dir, 'a')), ['keep']);
  assert.deepEqual(await readdir(join(dir, 'c')), ['new']);
  assert.equal(await readFile(join(dir, 'f'), 'utf8'), 'v2');
  assert.equal(await readlink(join(dir, 'l')), 'f');
});
