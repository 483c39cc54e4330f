import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { RuntimeError } from '../../src/errors.js';
import type { Digest, ImageConfig } from '../../src/oci/types.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { GZIP_CHUNK_SIZE } from '../../src/store/compression.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const storeModule = path.join(repoRoot, 'src', 'store', 'layer-store.ts');
const temps: string[] = [];
after(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

async function tempStore(): Promise<LayerStore> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-store-'));
  temps.push(dir);
  return LayerStore.open(dir);
}

const sha = (data: Uint8Array | string): Digest => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Runs a module snippet in a child node process with `LayerStore` imported. */
function child(code: string, root: string): ReturnType<typeof spawn> {
  const script = `import { LayerStore } from ${JSON.stringify(storeModule)};\nconst store = await LayerStore.open(${JSON.stringify(root)});\n${code}`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
}

function exitOf(proc: ReturnType<typeof spawn>): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal, stderr })));
}

test('a written blob is stored under its sha256 and reads back identically', async () => {
  const store = await tempStore();
  const data = Buffer.from('hello layer store\n');
  const { digest, size } = await store.writeBlob((async function* () {
    yield data.subarray(0, 5);
    yield data.subarray(5);
  })());
  assert.equal(digest, sha(data));
  assert.equal(size, data.length);
  assert.ok(await store.hasBlob(digest));
  assert.deepEqual(await store.readBlob(digest), data);
  assert.equal(store.blobPath(digest), path.join(store.root, 'blobs', 'sha256', digest.slice(7)));
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
});

test('a blob whose content does not match expectedDigest is rejected and leaves no file behind', async () => {
  const store = await tempStore();
  const wrong = sha('something else');
  await assert.rejects(store.writeBlob((async function* () {
    yield Buffer.from('actual content');
  })(), { expectedDigest: wrong }), RuntimeError);
  assert.equal(await store.hasBlob(wrong), false);
  assert.equal(await store.hasBlob(sha('actual content')), false);
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
  assert.deepEqual(await readdir(path.join(store.root, 'blobs', 'sha256')), []);
});

test('a writer killed with SIGKILL mid-blob leaves only a temp file, which prune removes', async () => {
  const store = await tempStore();
  const proc = child(
    `const chunk = Buffer.alloc(1 << 20, 7);
     await store.writeBlob((async function* () { for (;;) { yield chunk; await new Promise((r) => setTimeout(r, 5)); } })());`,
    store.root,
  );
  const exited = exitOf(proc);
  // Wait until the child has written some of the blob.
  for (let i = 0; ; i++) {
    const files = await readdir(path.join(store.root, 'tmp'));
    const sizes = await Promise.all(files.map((f) => stat(path.join(store.root, 'tmp', f)).then((s) => s.size, () => 0)));
    if (sizes.some((s) => s > 4 << 20)) break;
    assert.ok(i < 600, 'the child never started writing');
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  assert.equal((await exited).signal, 'SIGKILL');
  assert.deepEqual(await readdir(path.join(store.root, 'blobs', 'sha256')), []);
  assert.equal((await readdir(path.join(store.root, 'tmp'))).length, 1);
  await store.prune();
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
});

test('two processes writing the same blob and tagging concurrently lose nothing', async () => {
  const store = await tempStore();
  const code = (who: string): string => `
    const data = Buffer.alloc(8 << 20, 42);
    for (let i = 0; i < 20; i++) {
      const { digest } = await store.writeBlob((async function* () { yield data.subarray(0, 1 << 20); yield data.subarray(1 << 20); })());
      await store.tag('${who}-' + i, digest);
    }`;
  const results = await Promise.all([exitOf(child(code('a'), store.root)), exitOf(child(code('b'), store.root))]);
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const digest = sha(Buffer.alloc(8 << 20, 42));
  assert.equal(sha(await store.readBlob(digest)), digest);
  const tags = await store.listTags();
  assert.equal(tags.length, 40);
  assert.ok(tags.every((t) => t.digest === digest));
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
  assert.deepEqual(await readdir(path.join(store.root, 'locks')), []);
});

test('a lock whose owner process died is broken, and withLock excludes concurrent holders', async () => {
  const store = await tempStore();
  // A dead pid's lock file, as a crashed process would leave it.
  const dead = spawn(process.execPath, ['-e', '0']);
  const deadPid = await new Promise<number>((resolve) => dead.on('exit', () => resolve(dead.pid ?? 0)));
  await writeFile(path.join(store.root, 'locks', 'x.lock'), `${deadPid} ${(await import('node:os')).hostname()} 00\n`);
  let inside = 0;
  let maxInside = 0;
  await Promise.all(
    Array.from({ length: 5 }, () =>
      store.withLock('x', async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        await new Promise((r) => setTimeout(r, 5));
        inside--;
      }),
    ),
  );
  assert.equal(maxInside, 1);
  assert.deepEqual(await readdir(path.join(store.root, 'locks')), []);
});

test('tags, images and cache records round-trip, and prune keeps exactly what they reach', async () => {
  const store = await tempStore();
  const layerBytes = Buffer.alloc(3 * 1024, 1);
  const layerBlob = await store.writeBlobBytes(layerBytes);
  const layer = { diffId: layerBlob.digest, digest: layerBlob.digest, size: layerBlob.size, mediaType: 'application/vnd.oci.image.layer.v1.tar' };
  const config: ImageConfig = { architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [layer.diffId] } };
  const image = await store.putImage(config, [layer]);
  assert.deepEqual((await store.getImage(image.manifestDigest)).config, config);
  assert.equal(image.manifest.layers[0]?.digest, layer.digest);
  await store.tag('app:latest', image.manifestDigest);
  assert.equal(await store.resolveTag('app:latest'), image.manifestDigest);
  assert.equal(await store.resolveTag('constructor'), undefined);

  const cached = await store.writeBlobBytes('cached layer');
  await store.putCache('step/key with spaces', { layer: { diffId: cached.digest } });
  assert.deepEqual(await store.getCache('step/key with spaces'), { layer: { diffId: cached.digest } });
  assert.equal(await store.getCache('missing'), undefined);

  const garbage = await store.writeBlobBytes('garbage');
  const r = await store.prune();
  assert.deepEqual(r, { removedBlobs: 1, freedBytes: 'garbage'.length });
  for (const d of [layer.digest, image.configDigest, image.manifestDigest, cached.digest]) assert.ok(await store.hasBlob(d));
  assert.equal(await store.hasBlob(garbage.digest), false);

  assert.equal(await store.untag('app:latest'), true);
  assert.equal(await store.untag('app:latest'), false);
  await store.prune();
  assert.equal(await store.hasBlob(image.manifestDigest), false);
  assert.equal(await store.hasBlob(layer.digest), false);
  assert.ok(await store.hasBlob(cached.digest));
});

test('gzip compression is parallel multi-member, deterministic, decompresses to the layer and is cached', async () => {
  const store = await tempStore();
  // A bit over two chunks of mixed content, so there are three members.
  const data = Buffer.concat([Buffer.alloc(GZIP_CHUNK_SIZE, 'a'), createHash('sha512').update('x').digest(), Buffer.alloc(GZIP_CHUNK_SIZE + 1000, 'b')]);
  const { digest } = await store.writeBlobBytes(data);
  await store.registerLayer({ diffId: digest, digest, size: data.length, mediaType: 'application/vnd.oci.image.layer.v1.tar' });
  const gz = await store.compressLayer(digest, 'gzip');
  assert.equal(gz.diffId, digest);
  assert.equal(gz.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  const blob = await store.readBlob(gz.digest);
  assert.equal(sha(blob), gz.digest);
  assert.ok(gunzipSync(blob).equals(data));
  // The system gzip agrees (it reads concatenated members).
  assert.equal(sha(execFileSync('gzip', ['-dc'], { input: blob, maxBuffer: 64 << 20 })), digest);
  assert.deepEqual(await store.compressLayer(digest, 'gzip'), gz);
  assert.deepEqual(await store.findLayerBlob(digest, 'gzip'), gz);

  const other = await tempStore();
  await other.writeBlobBytes(data);
  assert.equal((await other.compressLayer(digest, 'gzip')).digest, gz.digest);

  const zst = await store.compressLayer(digest, 'zstd');
  assert.equal(sha(execFileSync('zstd', ['-dc'], { input: await store.readBlob(zst.digest), maxBuffer: 64 << 20 })), digest);
  assert.equal(zst.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
});

test('an adopted directory becomes the unpacked layer, and a second adoption of the same layer is dropped', async () => {
  const store = await tempStore();
  const diffId = sha('layer');
  const dir1 = path.join(store.root, 'tmp', 'adopt-1');
  await mkdir(dir1);
  await writeFile(path.join(dir1, 'f'), 'one');
  const rootfs = await store.adoptUnpackedLayer(diffId, dir1);
  assert.equal(rootfs, path.join(store.root, 'layers', diffId.slice(7), 'rootfs'));
  assert.equal(await readFile(path.join(rootfs, 'f'), 'utf8'), 'one');
  const dir2 = path.join(store.root, 'tmp', 'adopt-2');
  await mkdir(dir2);
  assert.equal(await store.adoptUnpackedLayer(diffId, dir2), rootfs);
  await assert.rejects(stat(dir2));
  assert.equal(await store.unpackedLayer(diffId), rootfs);
});

test('prune keeps unreferenced blobs newer than another live process lease, and removes them once it exits', async () => {
  const store = await tempStore();
  // The child writes a blob (taking its lease), says so, then waits until killed.
  const proc = child(
    `await store.writeBlobBytes('child blob');
     process.stdout.write('ready\\n');
     await new Promise(() => setInterval(() => {}, 1000));`,
    store.root,
  );
  const exited = exitOf(proc);
  await new Promise<void>((resolve, reject) => {
    proc.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    proc.on('exit', () => reject(new Error('the child exited early')));
  });
  const garbage = await store.writeBlobBytes('written during the child build');
  await store.prune();
  assert.ok(await store.hasBlob(garbage.digest), 'a blob newer than a live lease is kept');
  assert.ok(await store.hasBlob(sha('child blob')));
  proc.kill('SIGKILL');
  await exited;
  await store.prune();
  assert.equal(await store.hasBlob(garbage.digest), false);
  assert.equal(await store.hasBlob(sha('child blob')), false);
  // The dead child's lease is gone; this process's own (it wrote blobs too) stays.
  assert.deepEqual(await readdir(path.join(store.root, 'leases')), [String(process.pid)]);
});
