// gzip of layers: the libdeflate addon (src/native/deflate.ts) and the compressor's use of it or of node:zlib.
// deflate-without-native.test.ts runs this file again with KILN_NATIVE=0 (node:zlib only).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { nativeDeflate } from '../../src/native/deflate.js';
import { GZIP_CHUNK_SIZE, createCompressor } from '../../src/store/compression.js';

/** One compressor for the file, as a process shares one between its stores. */
const parallelGzip = createCompressor().gzip;

const withoutNative = process.env['KILN_NATIVE'] === '0';
const headerInstalled = existsSync('/usr/include/libdeflate.h');
const deflate = nativeDeflate();
const needsAddon = { skip: withoutNative ? 'KILN_NATIVE=0' : headerInstalled ? false : 'libdeflate-dev is not installed' };

/** Half hex text of random bytes (compresses ~2:1, like the bench's layers), half runs of zeros. */
function sample(size: number): Buffer {
  const text = Buffer.from(randomBytes(Math.ceil(size / 4)).toString('hex'));
  return Buffer.concat([text, Buffer.alloc(size)], size);
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const b of source) out.push(b);
  return out;
}

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

test('the libdeflate addon is loaded exactly when it can be built and KILN_NATIVE is not 0', () => {
  if (withoutNative) assert.equal(deflate, undefined);
  else if (headerInstalled) assert.notEqual(deflate, undefined, 'libdeflate.h is installed but build/native/kiln_deflate.node did not load: run scripts/build-native.mjs');
});

test('the addon gzips inputs of 0, 1, one chunk and odd sizes into one member that node:zlib gunzips back', needsAddon, async () => {
  assert.ok(deflate);
  for (const size of [0, 1, GZIP_CHUNK_SIZE, 3 * 65536 + 17]) {
    const input = sample(size);
    const out = await deflate.gzip(input, 6);
    assert.ok(gunzipSync(out).equals(input), `size ${size}`);
    // One complete member: the gzip trailer ends the buffer with the input's length (mod 2^32).
    assert.equal(out.readUInt32LE(out.length - 4), size % 2 ** 32);
  }
});

test('the addon is deterministic: same bytes twice, and a header without mtime or name', needsAddon, async () => {
  assert.ok(deflate);
  const input = sample(1_000_003);
  const [a, b] = await Promise.all([deflate.gzip(input, 6), deflate.gzip(Buffer.from(input), 6)]);
  assert.ok(a.equals(b));
  assert.deepEqual([...a.subarray(0, 4)], [0x1f, 0x8b, 8, 0]); // magic, deflate, FLG: no name, comment or extra
  assert.equal(a.readUInt32LE(4), 0); // MTIME
  // A different level is a different compression (the level is really passed down), but the same content.
  const fast = await deflate.gzip(input, 1);
  assert.ok(!fast.equals(a));
  assert.ok(gunzipSync(fast).equals(input));
});

test('the addon rejects a level outside 0-12 and a non-Buffer input', needsAddon, async () => {
  assert.ok(deflate);
  await assert.rejects(deflate.gzip(Buffer.from('x'), 13), TypeError);
  await assert.rejects(deflate.gzip('x' as unknown as Buffer, 6), TypeError);
});

test('parallelGzip of a multi-chunk input yields one member per chunk that gunzips back to the whole input', async () => {
  const input = sample(2 * GZIP_CHUNK_SIZE + 12_345);
  // Odd-sized pieces: parallelGzip re-cuts them into fixed chunks.
  const members = await collect(parallelGzip(pieces(input, 1_000_003), 6));
  assert.equal(members.length, 3);
  assert.ok(gunzipSync(Buffer.concat(members)).equals(input));
  for (let i = 0; i < members.length; i++) {
    const chunk = input.subarray(i * GZIP_CHUNK_SIZE, (i + 1) * GZIP_CHUNK_SIZE);
    // The compressor is the addon when it is loaded, node:zlib otherwise.
    const expected = deflate ? await deflate.gzip(chunk, 6) : gzipSync(chunk, { level: 6 });
    assert.ok((members[i] as Buffer).equals(expected), `member ${i}`);
  }
  // Deterministic for a given compressor, whatever the input's piece sizes.
  assert.ok(Buffer.concat(await collect(parallelGzip(pieces(input, 65_536), 6))).equals(Buffer.concat(members)));
});

test('parallelGzip copies a source that reuses one buffer for every piece, and its pooled buffers give the same bytes call after call', async () => {
  const input = sample(3 * GZIP_CHUNK_SIZE + 777);
  // A source like the layer tar with reuse: every piece is written into the same buffer, overwritten as soon
  // as the next piece is asked for.
  async function* reusing(size: number): AsyncGenerator<Buffer> {
    const buf = Buffer.alloc(size);
    for (let i = 0; i < input.length; i += size) {
      const n = input.copy(buf, 0, i, i + size);
      yield buf.subarray(0, n);
    }
  }
  const first = Buffer.concat(await collect(parallelGzip(reusing(1_048_573), 1)));
  assert.ok(gunzipSync(first).equals(input));
  // The second and third calls run on buffers the first gave back to the pool.
  for (let i = 0; i < 2; i++) assert.ok(Buffer.concat(await collect(parallelGzip(pieces(input, 3_000_001), 1))).equals(first), `call ${i + 2}`);
});

test('parallelGzip of an empty input is one valid empty member', async () => {
  const members = await collect(parallelGzip(pieces(Buffer.alloc(0), 1), 6));
  assert.equal(members.length, 1);
  assert.equal(gunzipSync(members[0] as Buffer).length, 0);
});
