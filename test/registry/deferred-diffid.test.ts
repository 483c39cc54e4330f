import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { RuntimeError } from '../../src/errors.js';
import { MEDIA_TYPES } from '../../src/oci/types.js';
import type { Digest } from '../../src/oci/types.js';
import { pullImage } from '../../src/registry/pull.js';
import { pushImage } from '../../src/registry/push.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { makeTar, startRegistry } from '../helpers/registry.js';
import type { TestRegistry } from '../helpers/registry.js';

const sha = (b: Uint8Array | string): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('pulled layers are verified against their diffID on first use', () => {
  let registry: TestRegistry;
  const dirs: string[] = [];
  const tempStore = async (): Promise<LayerStore> => {
    const dir = await mkdtemp(join(tmpdir(), 'kiln-deferred-'));
    dirs.push(dir);
    return LayerStore.open(dir);
  };
  before(async () => {
    registry = await startRegistry();
  });
  after(async () => {
    await registry.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** Pushes an image with one gzip layer holding `tar`, whose config claims the diffID `diffId`. */
  async function pushGzipImage(name: string, tar: Buffer, diffId: Digest): Promise<{ layer: Digest }> {
    const src = await tempStore();
    const gz = gzipSync(tar);
    const { digest, size } = await src.writeBlobBytes(gz);
    const info = { diffId, digest, size, mediaType: MEDIA_TYPES.ociLayerGzip };
    await src.registerLayer(info);
    const image = await src.putImage({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } }, [info]);
    await pushImage(image, `${registry.host}/${name}`, src);
    return { layer: digest };
  }

  test('an image whose config diff_id does not match its layer is pulled, then refused when the layer is first unpacked', async () => {
    const tar = await makeTar({ 'etc/motd': 'not the promised content\n' });
    const claimed = sha(await makeTar({ 'etc/motd': 'the promised content\n' }));
    const { layer } = await pushGzipImage('lie/diffid:v1', tar, claimed);
    const store = await tempStore();
    const image = await pullImage(`${registry.host}/lie/diffid:v1`, store);
    assert.deepEqual(image.config.rootfs.diff_ids, [claimed]);
    assert.equal(await store.hasBlob(layer), true);
    await assert.rejects(store.unpackedLayer(claimed), (err: unknown) => {
      assert.ok(err instanceof RuntimeError);
      assert.match(err.message, new RegExp(`layer ${claimed}: its stored content has diffID ${sha(tar)}, not the one the image names`));
      return true;
    });
    assert.deepEqual(await readdir(join(store.root, 'layers')), []);
    assert.deepEqual(await readdir(join(store.root, 'tmp')), []);
    // Exporting it uncompressed is refused the same way, and writes no uncompressed blob.
    await assert.rejects(store.findLayerBlob(claimed, 'none'), /does not decompress to that diffID/);
    assert.equal(await store.hasBlob(claimed), false);
    assert.equal(await store.hasBlob(sha(tar)), false);
  });

  test('a pulled gzip layer is stored only compressed, unpacks after verification and is re-pushed as the same blob', async () => {
    const tar = await makeTar({ 'etc/motd': 'hello\n' });
    const diffId = sha(tar);
    const { layer } = await pushGzipImage('honest/img:v1', tar, diffId);
    const store = await tempStore();
    const image = await pullImage(`${registry.host}/honest/img:v1`, store);
    assert.equal(await store.hasBlob(layer), true);
    assert.equal(await store.hasBlob(diffId), false);
    assert.equal(await readFile(join(await store.unpackedLayer(diffId), 'etc/motd'), 'utf8'), 'hello\n');
    const pushed = await pushImage(image, `${registry.host}/honest/copy:v1`, store);
    assert.equal(pushed, image.manifestDigest);
    assert.equal(await store.hasBlob(diffId), false);
  });
});
