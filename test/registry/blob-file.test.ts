/**
 * Blob downloads straight into a store temp file (reused buffers): what is stored, what is refused, and
 * that no half-written blob is ever left as good, after a mismatch, an abort, or the process being killed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Digest } from '../../src/oci/types.js';
import { MEDIA_TYPES } from '../../src/oci/types.js';
import { downloadBlobToStore } from '../../src/registry/blob-file.js';
import { pullLayer } from '../../src/registry/pull.js';
import type { LayerStoreApi } from '../../src/store/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { loopbackHttp } from '../helpers/registry.js';
import { LayerStore } from '../../src/store/layer-store.js';

const blob = randomBytes(5 * 1024 * 1024 + 123);
const digest: Digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
const dirs: string[] = [];

after(async () => {
  closeAll();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const { serve, closeAll } = loopbackHttp();

async function freshStore(): Promise<LayerStore> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-blob-file-'));
  dirs.push(dir);
  return LayerStore.open(path.join(dir, 'store'));
}

const tmpFiles = async (store: LayerStore): Promise<string[]> => (await readdir(path.join(store.root, 'tmp'))).filter((n) => n.startsWith('blob-'));

test('a downloaded blob is stored under its digest with exactly its bytes, and no temp file remains', async () => {
  const host = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': String(blob.length) });
    res.end(blob);
  });
  const store = await freshStore();
  let last = 0;
  await downloadBlobToStore(new RegistryClient(host, { credentials: null }), store, 'r', { digest, size: blob.length }, undefined, (n) => (last = n));
  assert.ok((await readFile(store.blobPath(digest))).equals(blob));
  assert.equal(last, blob.length);
  assert.deepEqual(await tmpFiles(store), []);
});

test('content that does not match the digest, or the size, is refused: nothing stored, no temp file left', async () => {
  const tampered = Buffer.from(blob);
  tampered[12345] = (tampered[12345] ?? 0) ^ 1;
  const badHost = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': String(tampered.length) });
    res.end(tampered);
  });
  const store = await freshStore();
  const client = new RegistryClient(badHost, { credentials: null });
  await assert.rejects(downloadBlobToStore(client, store, 'r', { digest, size: blob.length }, undefined, () => undefined), /refused blob .*does not match its digest/);
  await assert.rejects(downloadBlobToStore(client, store, 'r', { digest, size: blob.length - 1 }, undefined, () => undefined), /larger than its descriptor/);
  await assert.rejects(downloadBlobToStore(client, store, 'r', { digest, size: blob.length + 1 }, undefined, () => undefined), /has \d+ bytes, its descriptor says/);
  assert.equal(existsSync(store.blobPath(digest)), false);
  assert.deepEqual(await tmpFiles(store), []);
});

test('an aborted download rejects with the signal reason and leaves no temp file', async () => {
  const host = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': String(blob.length) });
    res.write(blob.subarray(0, 2 * 1024 * 1024)); // and then nothing more
  });
  const store = await freshStore();
  const controller = new AbortController();
  const reason = new Error('stop now');
  await assert.rejects(
    downloadBlobToStore(new RegistryClient(host, { credentials: null }), store, 'r', { digest, size: blob.length }, controller.signal, (n) => {
      if (n >= 1024 * 1024) controller.abort(reason);
    }),
    (err) => err === reason,
  );
  assert.equal(existsSync(store.blobPath(digest)), false);
  assert.deepEqual(await tmpFiles(store), []);
});

test('a download killed mid-body leaves no blob, only a temp file of the dead process that prune removes', async () => {
  const host = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': String(blob.length) });
    res.write(blob.subarray(0, 2 * 1024 * 1024)); // and then nothing more, until the client dies
  });
  const store = await freshStore();
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const script = [
    `import { RegistryClient } from './src/registry/client.ts';`,
    `import { downloadBlobToStore } from './src/registry/blob-file.ts';`,
    `import { LayerStore } from './src/store/layer-store.ts';`,
    `const store = await LayerStore.open(${JSON.stringify(store.root)});`,
    `await downloadBlobToStore(new RegistryClient(${JSON.stringify(host)}, { credentials: null }), store, 'r', { digest: ${JSON.stringify(digest)}, size: ${String(blob.length)} }, undefined, () => undefined);`,
  ].join('\n');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, stdio: 'ignore' });
  try {
    // Wait until the child has written part of the blob into its temp file.
    let temp: string | undefined;
    for (let i = 0; i < 400 && temp === undefined; i++) {
      await delay(25);
      for (const name of await tmpFiles(store)) {
        if (((await stat(path.join(store.root, 'tmp', name)).catch(() => undefined))?.size ?? 0) > 0) temp = name;
      }
      assert.equal(child.exitCode, null, 'the child exited before it was killed');
    }
    assert.ok(temp !== undefined, 'the child never wrote a temp file');
    assert.ok(temp.includes(`-${String(child.pid)}.`), `temp file ${temp} names its owner (pid and start time)`);
  } finally {
    child.kill('SIGKILL');
    await once(child, 'exit').catch(() => undefined);
  }
  assert.equal(existsSync(store.blobPath(digest)), false);
  await store.prune();
  assert.deepEqual(await tmpFiles(store), []);
});

test('pullLayer stores through any store\'s writeBlob (the LayerStoreApi contract alone), verified the same way', async () => {
  const tampered = Buffer.from(blob);
  tampered[7] = (tampered[7] ?? 0) ^ 1;
  let tamper = false;
  const host = await serve((_req, res) => {
    const body = tamper ? tampered : blob;
    res.writeHead(200, { 'content-length': String(body.length) });
    res.end(body);
  });
  const real = await freshStore();
  // Only the LayerStoreApi contract: nothing LayerStore has beyond it.
  const plain: LayerStoreApi = real;
  const client = new RegistryClient(host, { credentials: null });
  const diffId: Digest = `sha256:${'a'.repeat(64)}`;
  const desc = { mediaType: MEDIA_TYPES.ociLayerGzip, digest, size: blob.length };
  await pullLayer(client, plain, 'r', desc, diffId, undefined, () => undefined);
  assert.ok((await readFile(real.blobPath(digest))).equals(blob));
  assert.equal((await real.findLayerBlob(diffId, 'gzip'))?.digest, digest);
  // Content that does not match the digest is refused.
  await rm(real.blobPath(digest));
  tamper = true;
  await assert.rejects(pullLayer(client, plain, 'r', desc, diffId, undefined, () => undefined), /does not match its digest/);
  assert.equal(existsSync(real.blobPath(digest)), false);
});
