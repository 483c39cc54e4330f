/**
 * Blob downloads (node:http transport) against small local HTTP servers that misbehave on purpose:
 * a redirect to another origin, a connection broken mid-body, a download aborted mid-body.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import type { Digest } from '../../src/oci/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { loopbackHttp } from '../helpers/registry.js';

const blob = randomBytes(3 * 1024 * 1024 + 17);
const digest: Digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;

const { serve, closeAll } = loopbackHttp();

after(() => closeAll());

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

test('a blob redirected to another origin is fetched there without the registry credentials, and a broken body resumes with Range', async () => {
  const cdnRequests: Array<{ authorization: string | undefined; range: string | undefined }> = [];
  const cdn = await serve((req, res) => {
    cdnRequests.push({ authorization: req.headers.authorization, range: req.headers.range });
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range?.[1] !== undefined) {
      const start = Number(range[1]);
      res.writeHead(206, { 'content-length': String(blob.length - start), 'content-range': `bytes ${String(start)}-${String(blob.length - 1)}/${String(blob.length)}` });
      res.end(blob.subarray(start));
      return;
    }
    // The first answer promises the whole blob and breaks the connection after a third of it.
    res.writeHead(200, { 'content-length': String(blob.length) });
    res.write(blob.subarray(0, Math.floor(blob.length / 3)), () => res.socket?.destroy());
  });
  const registryAuth: string[] = [];
  const registry = await serve((req, res) => {
    if (req.headers.authorization === undefined) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
      return;
    }
    registryAuth.push(req.headers.authorization);
    res.writeHead(307, { location: `http://${cdn}/blob?sig=1` }).end();
  });
  const client = new RegistryClient(registry, { credentials: { username: 'u', password: 'p' }, retryDelayMs: 1 });
  const got = await collect(client.getBlob('r', digest));
  assert.ok(got.equals(blob));
  assert.ok(registryAuth.length >= 1 && registryAuth.every((h) => h.startsWith('Basic ')));
  assert.equal(cdnRequests.length, 2);
  assert.ok(cdnRequests.every((r) => r.authorization === undefined));
  assert.equal(cdnRequests[0]?.range, undefined);
  assert.match(cdnRequests[1]?.range ?? '', /^bytes=\d+-$/);
});

test('aborting a blob download mid-body rejects with the signal reason', async () => {
  const host = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': String(blob.length) });
    res.write(blob.subarray(0, 1024 * 1024)); // and then nothing more
  });
  const client = new RegistryClient(host, { credentials: null, retryDelayMs: 1 });
  const controller = new AbortController();
  const reason = new Error('stop now');
  let received = 0;
  await assert.rejects(
    (async () => {
      for await (const c of client.getBlob('r', digest, controller.signal)) {
        received += c.length;
        if (received >= 512 * 1024) controller.abort(reason);
      }
    })(),
    (err) => err === reason,
  );
});

test('a blob the registry does not have fails with its status and error code', async () => {
  const host = await serve((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry' }] }));
  });
  const client = new RegistryClient(host, { credentials: null, retryDelayMs: 1 });
  await assert.rejects(collect(client.getBlob('r', digest)), (err: Error) => /HTTP 404 BLOB_UNKNOWN/.test(err.message));
});
