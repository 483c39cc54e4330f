import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { RegistryError } from '../../src/errors.js';
import { MEDIA_TYPES } from '../../src/oci/types.js';
import type { Digest, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { pullImage } from '../../src/registry/pull.js';
import type { TransferEvent } from '../../src/registry/pull.js';
import { pushImage } from '../../src/registry/push.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { freePort, makeStoreImage, makeTar, startRegistry } from '../helpers/registry.js';
import type { TestRegistry } from '../helpers/registry.js';

const sha = (b: Uint8Array | string): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function tempStore(dirs: string[]): Promise<LayerStore> {
  const dir = await mkdtemp(join(tmpdir(), 'kiln-regstore-'));
  dirs.push(dir);
  return LayerStore.open(dir);
}

/** Writes an OCI layout holding an index with a linux/amd64 and a linux/arm64 image (one gzip layer each). */
async function writeOciLayout(dir: string): Promise<{ amd64: { manifest: Digest; layer: Digest; diffId: Digest; config: Digest }; index: Digest }> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (data: Buffer): Promise<{ digest: Digest; size: number }> => {
    const digest = sha(data);
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), data);
    return { digest, size: data.length };
  };
  const platforms = [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', variant: 'v8' },
  ];
  const entries = [];
  let amd64: { manifest: Digest; layer: Digest; diffId: Digest; config: Digest } | undefined;
  for (const platform of platforms) {
    const tar = await makeTar({ 'etc/arch': `${platform.architecture}\n`, 'hello.txt': 'hello from skopeo\n' });
    const layer = await put(gzipSync(tar));
    const config = await put(
      Buffer.from(JSON.stringify({ ...platform, config: { Cmd: ['/hello'] }, rootfs: { type: 'layers', diff_ids: [sha(tar)] } })),
    );
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: MEDIA_TYPES.ociConfig, ...config },
      layers: [{ mediaType: MEDIA_TYPES.ociLayerGzip, ...layer }],
    };
    const m = await put(Buffer.from(JSON.stringify(manifest)));
    entries.push({ mediaType: MEDIA_TYPES.ociManifest, ...m, platform });
    if (platform.architecture === 'amd64') amd64 = { manifest: m.digest, layer: layer.digest, diffId: sha(tar), config: config.digest };
  }
  const index: ImageIndex = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: entries };
  const idx = await put(Buffer.from(JSON.stringify(index)));
  const top: ImageIndex = {
    schemaVersion: 2,
    manifests: [{ mediaType: MEDIA_TYPES.ociIndex, ...idx, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
  };
  await writeFile(join(dir, 'index.json'), JSON.stringify(top));
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  assert.ok(amd64);
  return { amd64, index: idx.digest };
}

/** An HTTP proxy to the registry that flips one byte of every blob body it forwards. */
async function corruptingProxy(target: string): Promise<{ host: string; server: Server }> {
  const server = createServer((req, res) => {
    const up = request({ host: '127.0.0.1', port: Number(target.split(':')[1]), path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      let first = req.method === 'GET' && (req.url ?? '').includes('/blobs/sha256:');
      upRes.on('data', (chunk: Buffer) => {
        if (first && chunk.length > 0) {
          first = false;
          chunk.writeUInt8((chunk.readUInt8(chunk.length - 1) ^ 0xff) & 0xff, chunk.length - 1);
        }
        res.write(chunk);
      });
      upRes.on('end', () => res.end());
    });
    req.pipe(up);
  });
  server.listen(await freePort(), '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return { host: `127.0.0.1:${String(addr.port)}`, server };
}

async function tmpEntries(store: LayerStore): Promise<string[]> {
  return readdir(join(store.root, 'tmp'));
}

describe('registry push and pull against docker-registry', () => {
  let registry: TestRegistry;
  const dirs: string[] = [];
  before(async () => {
    registry = await startRegistry();
  });
  after(async () => {
    await registry.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('a pushed kiln image can be inspected and copied by skopeo', async () => {
    const store = await tempStore(dirs);
    const image = await makeStoreImage(store, [{ 'a.txt': 'first layer\n' }, { 'dir/b.txt': 'second layer\n' }]);
    const events: TransferEvent[] = [];
    const digest = await pushImage(image, `${registry.host}/kiln/app:v1`, store, { onProgress: (e) => events.push(e) });
    const { stdout } = await execa('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/kiln/app:v1`]);
    const info = JSON.parse(stdout) as { Digest: string; Layers: string[] };
    assert.equal(info.Digest, digest);
    assert.equal(info.Layers.length, 2);
    const raw = await execa('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/kiln/app:v1`]);
    const manifest = JSON.parse(raw.stdout) as ImageManifest;
    assert.equal(manifest.mediaType, MEDIA_TYPES.ociManifest);
    assert.ok(manifest.layers.every((l) => l.mediaType === MEDIA_TYPES.ociLayerGzip));
    // The pushed layers are the gzip of the local uncompressed ones.
    for (const [i, layerDigest] of info.Layers.entries()) {
      const blob = await readFile(store.blobPath(layerDigest as Digest));
      assert.equal(sha(gunzipSync(blob)), image.config.rootfs.diff_ids[i]);
    }
    const out = await mkdtemp(join(tmpdir(), 'kiln-skopeo-out-'));
    dirs.push(out);
    await execa('skopeo', ['copy', '--src-tls-verify=false', `docker://${registry.host}/kiln/app:v1`, `oci:${out}:v1`]);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as ImageIndex;
    assert.equal(index.manifests[0]?.digest, digest);
    assert.ok(events.some((e) => e.type === 'manifest' && e.digest === digest));
  });

  test('pushing again uploads nothing, and pushing to another repository mounts the blobs', async () => {
    const store = await tempStore(dirs);
    const image = await makeStoreImage(store, [{ 'c.txt': 'mount me\n' }]);
    await pushImage(image, `${registry.host}/kiln/one:v1`, store);
    const again: TransferEvent[] = [];
    await pushImage(image, `${registry.host}/kiln/one:v2`, store, { onProgress: (e) => again.push(e) });
    const doneAgain = again.filter((e) => e.type === 'blob-done');
    assert.equal(doneAgain.length, 2);
    assert.ok(doneAgain.every((e) => e.type === 'blob-done' && e.how === 'present'));
    const other: TransferEvent[] = [];
    const digest = await pushImage(image, `${registry.host}/kiln/two:v1`, store, { onProgress: (e) => other.push(e) });
    const doneOther = other.filter((e) => e.type === 'blob-done');
    assert.ok(doneOther.length === 2 && doneOther.every((e) => e.type === 'blob-done' && e.how === 'mounted'));
    const { stdout } = await execa('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/kiln/two:v1`]);
    assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, digest);
  });

  test('an index pushed by skopeo is pulled for linux/amd64, its layer blob stored as sent and its diffID verified on use', async () => {
    const layout = await mkdtemp(join(tmpdir(), 'kiln-layout-'));
    dirs.push(layout);
    const made = await writeOciLayout(layout);
    await execa('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${registry.host}/from/skopeo:v1`]);
    const store = await tempStore(dirs);
    const image = await pullImage(`${registry.host}/from/skopeo:v1`, store, { platform: 'linux/amd64' });
    assert.equal(image.manifestDigest, made.amd64.manifest);
    assert.equal(image.configDigest, made.amd64.config);
    assert.equal(await store.resolveTag(`${registry.host}/from/skopeo:v1`), made.amd64.manifest);
    assert.equal(await store.hasBlob(made.amd64.layer), true);
    assert.equal(await store.hasBlob(made.amd64.diffId), false);
    assert.equal((await store.findLayerBlob(made.amd64.diffId, 'none'))?.digest, made.amd64.diffId);
    assert.equal((await store.findLayerBlob(made.amd64.diffId, 'gzip'))?.digest, made.amd64.layer);
    const rootfs = await store.unpackedLayer(made.amd64.diffId);
    assert.equal(await readFile(join(rootfs, 'etc/arch'), 'utf8'), 'amd64\n');

    // Pinned by digest and already stored: no network at all (this port has no listener).
    const nowhere = `127.0.0.1:${String(await freePort())}`;
    const pinned = await pullImage(`${nowhere}/from/skopeo@${made.index}`, store, { platform: 'linux/amd64' });
    assert.equal(pinned.manifestDigest, made.amd64.manifest);

    // The arm64 entry of the same index is a different image.
    const arm = await pullImage(`${registry.host}/from/skopeo:v1`, store, { platform: 'linux/arm64' });
    assert.notEqual(arm.manifestDigest, made.amd64.manifest);
    assert.equal(arm.config.architecture, 'arm64');
  });

  test('a kiln push pulled back into a fresh store gives the same config and diffIDs', async () => {
    const src = await tempStore(dirs);
    const image = await makeStoreImage(src, [{ 'x.bin': randomBytes(4096) }, { 'y.txt': 'y\n' }]);
    const digest = await pushImage(image, `${registry.host}/kiln/round:trip`, src);
    const dst = await tempStore(dirs);
    const pulled = await pullImage(`${registry.host}/kiln/round:trip`, dst);
    assert.equal(pulled.manifestDigest, digest);
    assert.equal(pulled.configDigest, image.configDigest);
    for (const diffId of image.config.rootfs.diff_ids) assert.ok(await dst.findLayerBlob(diffId, 'none'));
    // Re-pushing the pulled image needs no recompression: the stored gzip blobs are reused as they are.
    const again = await pushImage(pulled, `${registry.host}/kiln/round:again`, dst);
    assert.equal(again, digest);
  });

  test('a blob whose content does not match its digest is refused and nothing is stored', async () => {
    const src = await tempStore(dirs);
    const image = await makeStoreImage(src, [{ 'z.txt': 'corrupt me\n'.repeat(100) }]);
    await pushImage(image, `${registry.host}/kiln/corrupt:v1`, src);
    const proxy = await corruptingProxy(registry.host);
    try {
      const dst = await tempStore(dirs);
      await assert.rejects(pullImage(`${proxy.host}/kiln/corrupt:v1`, dst), (err: unknown) => {
        assert.ok(err instanceof RegistryError);
        assert.match(err.message, /does not match its digest/);
        return true;
      });
      assert.equal(await dst.hasBlob(image.configDigest), false);
      assert.equal(await dst.resolveTag(`${proxy.host}/kiln/corrupt:v1`), undefined);
      assert.deepEqual(await tmpEntries(dst), []);
    } finally {
      proxy.server.close();
    }
  });

  test('pulling a tag the registry does not have names the registry error code', async () => {
    const store = await tempStore(dirs);
    await assert.rejects(pullImage(`${registry.host}/kiln/app:nope`, store), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.status, 404);
      assert.match(err.message, /MANIFEST_UNKNOWN/);
      return true;
    });
  });
});

describe('registry failures mid-transfer', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('a registry killed mid-pull gives a clear error, leaves no partial blob, and a retry after restart succeeds', async () => {
    const registry = await startRegistry();
    try {
      const src = await tempStore(dirs);
      const big = randomBytes(16 * 1024 * 1024);
      const image = await makeStoreImage(src, [{ 'big.bin': big }]);
      await pushImage(image, `${registry.host}/kiln/big:v1`, src);
      const diffId = image.config.rootfs.diff_ids[0] as Digest;
      const gz = await src.findLayerBlob(diffId, 'gzip');
      assert.ok(gz);
      const dst = await tempStore(dirs);
      let killed: Promise<void> | undefined;
      const options = {
        retries: 1,
        retryDelayMs: 20,
        onProgress: (e: TransferEvent) => {
          if (e.type === 'blob-progress' && killed === undefined) killed = registry.kill();
        },
      };
      await assert.rejects(pullImage(`${registry.host}/kiln/big:v1`, dst, options), (err: unknown) => {
        assert.ok(err instanceof RegistryError);
        assert.match(err.message, /cannot reach registry|connection broke/);
        return true;
      });
      await killed;
      assert.equal(await dst.hasBlob(gz.digest), false);
      assert.equal(await dst.hasBlob(diffId), false);
      assert.deepEqual(await tmpEntries(dst), []);
      await registry.restart();
      const pulled = await pullImage(`${registry.host}/kiln/big:v1`, dst);
      assert.equal(pulled.configDigest, image.configDigest);
      // Only the compressed blob is written, as sent; its diffID is verified when the layer is first used.
      assert.equal(await dst.hasBlob(gz.digest), true);
      assert.equal(await dst.hasBlob(diffId), false);
      assert.equal(sha(await readFile(join(await dst.unpackedLayer(diffId), 'big.bin'))), sha(big));
    } finally {
      await registry.stop();
    }
  });

  test('a registry killed mid-push gives a clear error', async () => {
    const registry = await startRegistry();
    try {
      const src = await tempStore(dirs);
      const image = await makeStoreImage(src, [{ 'big.bin': randomBytes(6 * 1024 * 1024) }]);
      let killed: Promise<void> | undefined;
      await assert.rejects(
        pushImage(image, `${registry.host}/kiln/half:v1`, src, {
          compression: 'none',
          chunkedThreshold: 1024 * 1024,
          chunkSize: 1024 * 1024,
          retries: 1,
          retryDelayMs: 20,
          onProgress: (e) => {
            if (e.type === 'blob-progress' && killed === undefined) killed = registry.kill();
          },
        }),
        (err: unknown) => {
          assert.ok(err instanceof RegistryError);
          assert.match(err.message, /upload blob .* cannot reach registry/);
          return true;
        },
      );
      await killed;
    } finally {
      await registry.stop();
    }
  });
});
