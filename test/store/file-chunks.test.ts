import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { HASH_CHUNK, reusedChunks } from '../../src/store/file-chunks.js';

async function hashWith(file: string, size: number): Promise<{ hex: string; chunks: number }> {
  const h = createHash('sha256');
  let chunks = 0;
  for await (const c of reusedChunks(file, size, () => new Error('short'))) {
    h.update(c);
    chunks++;
  }
  return { hex: h.digest('hex'), chunks };
}

test('reused chunks hash to the same digest as the whole file, at and around chunk boundaries', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-chunks-'));
  try {
    for (const size of [1, HASH_CHUNK - 1, HASH_CHUNK, HASH_CHUNK + 1, 3 * HASH_CHUNK + 12345]) {
      const data = randomBytes(size);
      const file = path.join(dir, `f${size}`);
      await writeFile(file, data);
      const got = await hashWith(file, size);
      assert.equal(got.hex, createHash('sha256').update(data).digest('hex'), `size ${size}`);
      assert.equal(got.chunks, Math.ceil(size / HASH_CHUNK), `size ${size}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a file shorter than the size it was listed with ends in the caller’s error', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-chunks-'));
  try {
    const file = path.join(dir, 'f');
    await writeFile(file, randomBytes(HASH_CHUNK + 10));
    await truncate(file, HASH_CHUNK + 5);
    await assert.rejects(hashWith(file, HASH_CHUNK + 10), /short/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
