import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { RuntimeError } from '../../src/errors.js';
import { MEDIA_TYPES } from '../../src/oci/types.js';
import type { Digest } from '../../src/oci/types.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { makeTar } from '../helpers/registry.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

async function tempStore(): Promise<LayerStore> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-store-gz-'));
  temps.push(dir);
  return LayerStore.open(dir);
}

const sha = (data: Uint8Array | string): Digest => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Stores `tar` only as a gzip blob registered under `diffId` (as a pull does), returning the blob's digest. */
async function storeGzipOnly(store: LayerStore, tar: Buffer, diffId: Digest): Promise<Digest> {
  const gz = gzipSync(tar);
  const { digest, size } = await store.writeBlobBytes(gz);
  await store.registerLayer({ diffId, digest, size, mediaType: MEDIA_TYPES.ociLayerGzip });
  return digest;
}

test('a layer stored only as a gzip blob unpacks and decompresses to its uncompressed blob, verified', async () => {
  const store = await tempStore();
  // Bytes after the end-of-archive blocks belong to the diffID too; extraction stops before them.
  const tar = Buffer.concat([await makeTar({ 'etc/hello': 'hi\n' }), Buffer.alloc(64 * 1024)]);
  const diffId = sha(tar);
  await storeGzipOnly(store, tar, diffId);
  assert.equal(await store.hasBlob(diffId), false);
  assert.equal(await store.hasLayer(diffId), true);
  const rootfs = await store.unpackedLayer(diffId);
  assert.equal(await readFile(path.join(rootfs, 'etc/hello'), 'utf8'), 'hi\n');
  const plain = await store.findLayerBlob(diffId, 'none');
  assert.equal(plain?.digest, diffId);
  assert.deepEqual(await store.readBlob(diffId), tar);
});

test('a gzip layer whose content does not match its diffID is refused on unpack and leaves no directory behind', async () => {
  const store = await tempStore();
  const tar = await makeTar({ 'etc/evil': 'not what the config says\n' });
  const claimed = sha(await makeTar({ 'etc/good': 'expected\n' }));
  await storeGzipOnly(store, tar, claimed);
  await assert.rejects(store.unpackedLayer(claimed), (err: unknown) => {
    assert.ok(err instanceof RuntimeError);
    assert.match(err.message, new RegExp(`layer ${claimed}: its stored content has diffID ${sha(tar)}, not the one the image names`));
    return true;
  });
  assert.deepEqual(await readdir(path.join(store.root, 'layers')), []);
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
});

test('a gzip layer whose content does not match its diffID is refused when its uncompressed blob is asked for', async () => {
  const store = await tempStore();
  const tar = await makeTar({ 'a.txt': 'a\n' });
  const claimed = sha('something else');
  const gz = await storeGzipOnly(store, tar, claimed);
  await assert.rejects(store.findLayerBlob(claimed, 'none'), (err: unknown) => {
    assert.ok(err instanceof RuntimeError);
    assert.match(err.message, new RegExp(`its gzip blob ${gz} does not decompress to that diffID`));
    return true;
  });
  assert.equal(await store.hasBlob(claimed), false);
  assert.equal(await store.hasBlob(sha(tar)), false);
  assert.deepEqual(await readdir(path.join(store.root, 'tmp')), []);
});
