import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FILE_CHUNK, fileChunks } from '../../src/store/file-chunks.js';

async function hashWith(file: string, size: number, reuse = true): Promise<{ hex: string; chunks: number }> {
  const h = createHash('sha256');
  let chunks = 0;
  for await (const c of fileChunks(file, size, () => new Error('short'), { reuse })) {
    h.update(c);
    chunks++;
  }
  return { hex: h.digest('hex'), chunks };
}

test('reused chunks hash to the same digest as the whole file, at and around chunk boundaries', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-chunks-'));
  try {
    for (const size of [1, FILE_CHUNK - 1, FILE_CHUNK, FILE_CHUNK + 1, 3 * FILE_CHUNK + 12345]) {
      const data = randomBytes(size);
      const file = path.join(dir, `f${size}`);
      await writeFile(file, data);
      const got = await hashWith(file, size);
      assert.equal(got.hex, createHash('sha256').update(data).digest('hex'), `size ${size}`);
      assert.equal(got.chunks, Math.ceil(size / FILE_CHUNK), `size ${size}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a file shorter than the size it was listed with ends in the caller’s error', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-chunks-'));
  try {
    const file = path.join(dir, 'f');
    await writeFile(file, randomBytes(FILE_CHUNK + 10));
    await truncate(file, FILE_CHUNK + 5);
    await assert.rejects(hashWith(file, FILE_CHUNK + 10), /short/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('without reuse every chunk is a buffer of its own that stays valid after the next one is read', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-chunks-'));
  try {
    const size = 2 * FILE_CHUNK + 99;
    const data = randomBytes(size);
    const file = path.join(dir, 'f');
    await writeFile(file, data);
    const kept: Buffer[] = [];
    for await (const c of fileChunks(file, size, () => new Error('short'), { reuse: false })) kept.push(c);
    assert.equal(kept.length, 3);
    assert.ok(Buffer.concat(kept).equals(data));
    assert.equal(new Set(kept.map((c) => c.buffer)).size, 3);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
