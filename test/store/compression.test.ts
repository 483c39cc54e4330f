// The compressor (compression.ts): gzip slots shared by the stores given one compressor, and nothing shared
// between compressors (no process-wide state).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { GZIP_CHUNK_SIZE, createCompressor, type GzipMemberCompressor } from '../../src/store/compression.js';
import { LayerStore } from '../../src/store/layer-store.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

async function tempRoot(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-compression-'));
  temps.push(dir);
  return dir;
}

/**
 * A member compressor (node:zlib's gzip) that counts the members in progress. Each member waits until `target`
 * are in progress at once (or 300 ms pass), so a limit that allows `target` reaches it whatever the timing.
 */
function counting(target: number): { member: GzipMemberCompressor; max: () => number } {
  let running = 0;
  let max = 0;
  const waiters: Array<() => void> = [];
  const member: GzipMemberCompressor = async (chunk, level) => {
    running++;
    max = Math.max(max, running);
    if (running >= target) waiters.splice(0).forEach((w) => w());
    else await new Promise<void>((resolve) => {
      waiters.push(resolve);
      setTimeout(resolve, 300);
    });
    try {
      return gzipSync(chunk, { level });
    } finally {
      running--;
    }
  };
  return { member, max: () => max };
}

/** A stored uncompressed layer of three gzip chunks (so three members) in a store opened with `compressor`. */
async function storeWithLayer(compressor: ReturnType<typeof createCompressor>, fill: string): Promise<{ store: LayerStore; data: Buffer; diffId: `sha256:${string}` }> {
  const store = await LayerStore.open(await tempRoot(), { compressor });
  const data = Buffer.alloc(2 * GZIP_CHUNK_SIZE + 4096, fill);
  const { digest } = await store.writeBlobBytes(data);
  await store.registerLayer({ diffId: digest, digest, size: data.length, mediaType: 'application/vnd.oci.image.layer.v1.tar' });
  return { store, data, diffId: digest };
}

test('two stores sharing one compressor of 2 slots never compress more than 2 members at once', async () => {
  const count = counting(3); // asks for 3 at once: the shared limit must hold it to 2
  const compressor = createCompressor({ slots: 2, member: count.member });
  assert.equal(compressor.slots, 2);
  const a = await storeWithLayer(compressor, 'a');
  const b = await storeWithLayer(compressor, 'b');
  const [ga, gb] = await Promise.all([a.store.compressLayer(a.diffId, 'gzip'), b.store.compressLayer(b.diffId, 'gzip')]);
  assert.equal(count.max(), 2);
  // What was compressed is each store's own layer, intact (RFC 1952: concatenated members are one stream).
  assert.ok(gunzipSync(await a.store.readBlob(ga.digest)).equals(a.data));
  assert.ok(gunzipSync(await b.store.readBlob(gb.digest)).equals(b.data));
  assert.equal(ga.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  assert.equal(ga.digest, `sha256:${createHash('sha256').update(await a.store.readBlob(ga.digest)).digest('hex')}`);
});

test('stores with compressors of their own do not share slots: 1 slot each still lets 2 members run at once', async () => {
  const count = counting(2);
  const a = await storeWithLayer(createCompressor({ slots: 1, member: count.member }), 'c');
  const b = await storeWithLayer(createCompressor({ slots: 1, member: count.member }), 'd');
  await Promise.all([a.store.compressLayer(a.diffId, 'gzip'), b.store.compressLayer(b.diffId, 'gzip')]);
  assert.equal(count.max(), 2);
});

test('one compressor of 1 slot compresses one member at a time, for one store as for several calls', async () => {
  const count = counting(2);
  const compressor = createCompressor({ slots: 1, member: count.member });
  const a = await storeWithLayer(compressor, 'e');
  const b = await storeWithLayer(compressor, 'f');
  await Promise.all([a.store.compressLayer(a.diffId, 'gzip'), b.store.compressLayer(b.diffId, 'gzip')]);
  assert.equal(count.max(), 1);
});
