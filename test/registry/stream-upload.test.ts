import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MEDIA_TYPES } from '../../src/oci/types.js';
import type { Digest } from '../../src/oci/types.js';
import { pullImage } from '../../src/registry/pull.js';
import { pushImage } from '../../src/registry/push.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { freePort, makeStoreImage, startRegistry } from '../helpers/registry.js';
import type { TestRegistry } from '../helpers/registry.js';

const sha = (b: Uint8Array | string): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A body sent without a length: the streamed upload of a layer being compressed. */
const streamed = (req: IncomingMessage): boolean => req.method === 'PATCH' && req.headers['content-length'] === undefined;

/** An HTTP proxy to the registry that records each request and answers 500 to those `refuse` picks. */
async function proxy(target: string, refuse: (req: IncomingMessage) => boolean): Promise<{ host: string; server: Server; seen: IncomingMessage[] }> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    if (refuse(req)) {
      req.resume();
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"UNKNOWN","message":"refused by the test proxy"}]}');
      return;
    }
    const up = request({ host: '127.0.0.1', port: Number(target.split(':')[1]), path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    req.pipe(up);
  });
  server.listen(await freePort(), '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return { host: `127.0.0.1:${String(addr.port)}`, server, seen };
}

describe('streamed layer uploads', () => {
  let registry: TestRegistry;
  const dirs: string[] = [];
  const servers: Server[] = [];
  before(async () => {
    registry = await startRegistry();
  });
  after(async () => {
    for (const s of servers) s.close();
    await registry.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function tempStore(): Promise<LayerStore> {
    const dir = await mkdtemp(join(tmpdir(), 'kiln-stream-'));
    dirs.push(dir);
    return LayerStore.open(dir);
  }

  /** Pulls `ref` into a fresh store and returns the sha256 of each layer's unpacked `f.bin`. */
  async function pulledFiles(ref: string): Promise<Digest[]> {
    const store = await tempStore();
    const image = await pullImage(ref, store);
    const out: Digest[] = [];
    for (const diffId of image.config.rootfs.diff_ids) out.push(sha(await readFile(join(await store.unpackedLayer(diffId), 'f.bin'))));
    return out;
  }

  test('a layer compressed during the push is streamed while it is compressed and arrives intact', async () => {
    const p = await proxy(registry.host, () => false);
    servers.push(p.server);
    const files = [randomBytes(5 * 1024 * 1024), randomBytes(1024)];
    const store = await tempStore();
    const image = await makeStoreImage(store, files.map((f) => ({ 'f.bin': f })));
    await pushImage(image, `${p.host}/stream/ok:v1`, store);
    assert.equal(p.seen.filter(streamed).length, 2);
    // The pushed blobs are the ones the store cached, byte for byte.
    for (const diffId of image.config.rootfs.diff_ids) {
      const gz = await store.findLayerBlob(diffId, 'gzip');
      assert.ok(gz !== undefined && gz.mediaType === MEDIA_TYPES.ociLayerGzip);
      const r = await fetch(`http://${registry.host}/v2/stream/ok/blobs/${gz.digest}`);
      assert.equal(sha(Buffer.from(await r.arrayBuffer())), gz.digest);
    }
    assert.deepEqual(await pulledFiles(`${registry.host}/stream/ok:v1`), files.map((f) => sha(f)));
  });

  test('when the registry refuses the streamed upload, the push uploads the stored blob instead', async () => {
    const p = await proxy(registry.host, streamed);
    servers.push(p.server);
    const files = [randomBytes(5 * 1024 * 1024)];
    const store = await tempStore();
    const image = await makeStoreImage(store, files.map((f) => ({ 'f.bin': f })));
    await pushImage(image, `${p.host}/stream/fallback:v1`, store);
    assert.equal(p.seen.filter(streamed).length, 1);
    assert.deepEqual(await pulledFiles(`${registry.host}/stream/fallback:v1`), files.map((f) => sha(f)));
  });

  test('with streamUploads off, a layer is compressed first and then uploaded with its length known', async () => {
    const p = await proxy(registry.host, () => false);
    servers.push(p.server);
    const files = [randomBytes(64 * 1024)];
    const store = await tempStore();
    const image = await makeStoreImage(store, files.map((f) => ({ 'f.bin': f })));
    await pushImage(image, `${p.host}/stream/off:v1`, store, { streamUploads: false });
    assert.equal(p.seen.filter(streamed).length, 0);
    assert.deepEqual(await pulledFiles(`${registry.host}/stream/off:v1`), files.map((f) => sha(f)));
  });
});
