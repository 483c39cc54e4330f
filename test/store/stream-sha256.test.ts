// Layer hashing (src/native/sha256.ts): the libcrypto addon on the threadpool, or node:crypto without it, gives
// FIPS 180's SHA-256 for any way the tar is cut into chunks. stream-sha256-without-native.test.ts runs this file
// again with KILN_NATIVE=0. Inputs under 1 MiB are held and hashed by node:crypto at the end (chunks of 1 byte below),
// bigger ones switch to the addon with what was held.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { nativeSha256Available, streamSha256 } from '../../src/native/sha256.js';

const withoutNative = process.env['KILN_NATIVE'] === '0';

async function digestOf(chunks: readonly Uint8Array[]): Promise<string> {
  const h = streamSha256();
  for (const c of chunks) await h.update(c);
  return h.digest();
}

test('the addon is used exactly when it is built and allowed', { skip: withoutNative ? false : existsSync('/usr/include/openssl/evp.h') ? false : 'libssl-dev is not installed' }, () => {
  assert.equal(nativeSha256Available(), !withoutNative);
});

test('known answers (FIPS 180-2) and the empty input', async () => {
  assert.equal(await digestOf([]), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(await digestOf([Buffer.from('abc')]), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  const million = Buffer.alloc(1_000_000, 'a');
  assert.equal(await digestOf([million]), 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
});

test('any cut of the data into chunks, small (this thread) and large (the threadpool), gives the one-shot digest', async () => {
  const data = randomBytes(3 * 1024 * 1024 + 777);
  const expected = createHash('sha256').update(data).digest('hex');
  // Chunk sizes on both sides of the threadpool threshold (64 KiB), and sub-arrays that do not start at offset 0.
  for (const size of [1, 63, 4096, 65535, 65536, 65537, 1 << 20, 2 << 20, data.length]) {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += size) chunks.push(data.subarray(i, Math.min(i + size, data.length)));
    if (size === 1) chunks.splice(5000); // a million 1-byte awaits would only slow the test down
    const want = size === 1 ? createHash('sha256').update(data.subarray(0, 5000)).digest('hex') : expected;
    assert.equal(await digestOf(chunks), want, `chunks of ${size}`);
  }
});

test('misuse fails loudly instead of hashing wrong bytes', { skip: withoutNative ? 'KILN_NATIVE=0: node:crypto has no threadpool to misuse' : false }, async () => {
  const h = streamSha256();
  const big = randomBytes(1 << 20);
  const pending = h.update(big);
  assert.throws(() => h.update(big), /while another runs/);
  await pending;
  h.digest();
  assert.throws(() => h.update(Buffer.from('x')), /after digest/);
  assert.throws(() => h.digest(), /digest twice/);
});
