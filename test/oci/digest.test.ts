import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { sha256Hex } from '../../src/oci/digest.js';

const reference = (...parts: Array<string | Uint8Array>): string => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

test('sha256Hex gives node:crypto’s digest for inputs of any size', () => {
  for (const n of [0, 1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 65535, 65536, 65537, 100_000]) {
    const data = randomBytes(n);
    assert.equal(sha256Hex(data), reference(data), `${n} bytes`);
  }
});

test('strings are hashed as their UTF-8 bytes and parts as their concatenation', () => {
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'); // FIPS 180-2 example
  const parts = ['RUN ["sh","-c","echo é ✓ 🙂"]', '\0', randomBytes(70), 'x'.repeat(300)];
  assert.equal(sha256Hex(...parts), reference(...parts));
});
