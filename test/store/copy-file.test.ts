// copyRegularFile: exactly the listed bytes, in the kernel (copy_file_range through the addon) or in chunks, and a
// file that shrank meanwhile fails naming it, without a partial copy and without looping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { copyRegularFile } from '../../src/store/copy-file.js';

test('copyRegularFile copies exactly the listed size, keeps the mode of a new file, and fails naming a file that shrank', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-copy-file-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const src = path.join(dir, 'src.bin');
  const data = Buffer.alloc(3 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
  await writeFile(src, data);
  await copyRegularFile(src, path.join(dir, 'same.bin'), { size: data.length, mode: 0o640 });
  assert.ok((await readFile(path.join(dir, 'same.bin'))).equals(data));
  assert.equal((await stat(path.join(dir, 'same.bin'))).mode & 0o777, 0o640);
  // A file that grew since it was listed: its listed bytes.
  await copyRegularFile(src, path.join(dir, 'prefix.bin'), { size: 1 << 20 });
  assert.ok((await readFile(path.join(dir, 'prefix.bin'))).equals(data.subarray(0, 1 << 20)));
  // Over an existing file: truncated, not appended to.
  await copyRegularFile(src, path.join(dir, 'prefix.bin'), { size: 4096 });
  assert.equal((await stat(path.join(dir, 'prefix.bin'))).size, 4096);
  await assert.rejects(copyRegularFile(src, path.join(dir, 'short.bin'), { size: data.length + 1, name: 'ctx/src.bin' }), /ctx\/src\.bin changed while it was being copied/);
  await assert.rejects(stat(path.join(dir, 'short.bin')), /ENOENT/);
});
