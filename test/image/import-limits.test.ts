import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { createGzip } from 'node:zlib';
import { RuntimeError } from '../../src/errors.js';
import { importImage, type ImportSource } from '../../src/image/import.js';
import { IMAGE_JSON_LIMITS } from '../../src/image/limits.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../../src/store/tar.js';
import { LayerStore } from '../../src/store/layer-store.js';

type T = { after: (fn: () => Promise<void>) => void };
async function tempDir(t: T): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kiln-import-limits-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A one-layer OCI layout; `config` and `manifest` may be replaced to make them hostile. */
async function layout(dir: string, opts: { config?: Buffer; padManifest?: number } = {}): Promise<string> {
  const root = join(dir, 'layout');
  await mkdir(join(root, 'blobs', 'sha256'), { recursive: true });
  const put = async (b: Buffer): Promise<string> => {
    const d = sha(b);
    await writeFile(join(root, 'blobs', 'sha256', d.slice(7)), b);
    return d;
  };
  const data = Buffer.from('hi\n');
  const layer = Buffer.concat([encodeHeader({ name: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 0 }), data, padding(data.length), END_OF_ARCHIVE]);
  const config = opts.config ?? Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
  const manifestDoc = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await put(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: await put(layer), size: layer.length }],
  };
  // JSON allows any amount of whitespace: a manifest can be made as large as one likes.
  const manifest = Buffer.from(JSON.stringify(manifestDoc) + ' '.repeat(opts.padManifest ?? 0));
  const index = { schemaVersion: 2, manifests: [{ mediaType: manifestDoc.mediaType, digest: await put(manifest), size: manifest.length }] };
  await writeFile(join(root, 'index.json'), JSON.stringify(index));
  await writeFile(join(root, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  return root;
}

async function expectRefused(t: T, source: ImportSource, pattern: RegExp): Promise<void> {
  const store = await LayerStore.open(join(await tempDir(t), 'store'));
  const started = Date.now();
  await assert.rejects(importImage(source, store, { tag: 'x:1' }), (err: unknown) => {
    assert.ok(err instanceof RuntimeError, String(err));
    assert.match(err.message, pattern);
    return true;
  });
  assert.ok(Date.now() - started < 5000, 'refused within seconds');
  assert.deepEqual(await store.listTags(), []);
}

test('a manifest over the 4 MiB limit is refused before it is parsed, naming the file', async (t) => {
  const dir = await tempDir(t);
  const ok = await layout(dir);
  const store = await LayerStore.open(join(dir, 'store'));
  await importImage({ type: 'oci-layout', path: ok }, store);
  await rm(ok, { recursive: true });
  const big = await layout(dir, { padManifest: IMAGE_JSON_LIMITS.manifest });
  await expectRefused(t, { type: 'oci-layout', path: big }, /manifest .*blobs\/sha256\/[0-9a-f]{64} is \d+ bytes, over kiln's limit of 4 MiB/);
});

test('an image config over the 8 MiB limit is refused (a 64 MB field costs nothing)', async (t) => {
  const dir = await tempDir(t);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Env: ['X=' + 'x'.repeat(64 << 20)] }, rootfs: { type: 'layers', diff_ids: [] } }));
  const before = process.memoryUsage().rss;
  await expectRefused(t, { type: 'oci-layout', path: await layout(dir, { config }) }, /image config .* is \d+ bytes, over kiln's limit of 8 MiB/);
  // The old code read and parsed it: about ten times its size.
  assert.ok(process.memoryUsage().rss - before < 256 << 20, 'memory stays bounded');
});

test('a gzipped layer tar with a huge PAX header fails at once without reading it into memory', async (t) => {
  const dir = await tempDir(t);
  // 512 MiB of PAX record compresses to ~0.5 MB.
  const size = 512 << 20;
  const head = encodeHeader({ name: 'PaxHeader', type: 'file', mode: 0o644, uid: 0, gid: 0, size, mtime: 0 });
  head[156] = 'x'.charCodeAt(0);
  head.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of head) sum += b;
  head.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'ascii');
  const file = join(dir, 'rootfs.tar.gz');
  async function* body(): AsyncGenerator<Buffer> {
    yield head;
    yield Buffer.from(`${size} path=`);
    const chunk = Buffer.alloc(1 << 20, 0x61);
    for (let i = 0; i < 511; i++) yield chunk;
  }
  await pipeline(body(), createGzip({ level: 1 }), createWriteStream(file));
  const before = process.memoryUsage().rss;
  await expectRefused(t, { type: 'rootfs', path: file }, /rootfs\.tar\.gz is not a valid tar: tar: a PAX header record of 536870912 bytes exceeds the limit/);
  assert.ok(process.memoryUsage().rss - before < 256 << 20, 'memory stays bounded');
});

test('a docker archive whose manifest.json has the wrong shape fails with a RuntimeError', async (t) => {
  const dir = await tempDir(t);
  for (const doc of [[null], [{ Config: 'c.json', RepoTags: 'x', Layers: [] }], [{ Config: 'c.json', Layers: [7] }]]) {
    const root = join(dir, `a${Math.random()}`);
    await mkdir(root);
    await writeFile(join(root, 'manifest.json'), JSON.stringify(doc));
    await expectRefused(t, { type: 'docker-archive', path: root }, /manifest\.json has an invalid entry/);
  }
});

test('an index with entries that are not descriptors fails with a RuntimeError naming index.json', async (t) => {
  const dir = await tempDir(t);
  const root = await layout(dir);
  await writeFile(join(root, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [null] }));
  await expectRefused(t, { type: 'oci-layout', path: root }, /index\.json: manifests\[0\] is not a descriptor/);
});
