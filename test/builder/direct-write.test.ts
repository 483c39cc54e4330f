import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { prepareDirectWrite, type StepDirs } from '../../src/runtime/step-layer.js';

let dir: string;
let n = 0;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kiln-direct-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** Two lower layers (top-most first) and an empty upperdir. */
async function layers(): Promise<StepDirs & { top: string; bottom: string }> {
  const base = path.join(dir, String(++n));
  const top = path.join(base, 'top');
  const bottom = path.join(base, 'bottom');
  const upperDir = path.join(base, 'upper');
  for (const d of [top, bottom, upperDir]) await mkdir(d, { recursive: true });
  return { lowerDirs: [top, bottom], upperDir, workDir: path.join(base, 'work'), scratch: base, top, bottom };
}

test('a missing destination under existing directories is prepared with the lower directories copied up', async () => {
  const l = await layers();
  await mkdir(path.join(l.bottom, 'usr', 'local'), { recursive: true });
  await chmod(path.join(l.bottom, 'usr', 'local'), 0o750);
  await utimes(path.join(l.bottom, 'usr', 'local'), 1000, 1000);
  assert.equal(await prepareDirectWrite(l, '/usr/local/app', true), true);
  const st = await lstat(path.join(l.upperDir, 'usr', 'local'));
  assert.equal(st.mode & 0o7777, 0o750);
  assert.equal(Math.round(st.mtimeMs / 1000), 1000);
  assert.deepEqual(await readdir(path.join(l.upperDir, 'usr', 'local')), []);
});

test('a symlink or a file on the way to the destination needs the mounted overlay', async () => {
  const l = await layers();
  await mkdir(path.join(l.bottom, 'real'));
  await symlink('real', path.join(l.top, 'link'));
  assert.equal(await prepareDirectWrite(l, '/link/x', false), false);
  await writeFile(path.join(l.bottom, 'file'), 'x');
  assert.equal(await prepareDirectWrite(l, '/file/x', false), false);
  assert.deepEqual(await readdir(l.upperDir), []);
});

test('a destination with content in any lower layer is not written directly when it must be empty', async () => {
  const l = await layers();
  await mkdir(path.join(l.top, 'app'));
  await mkdir(path.join(l.bottom, 'app'));
  await writeFile(path.join(l.bottom, 'app', 'old'), 'x');
  assert.equal(await prepareDirectWrite(l, '/app', true), false);
  assert.equal(await prepareDirectWrite(l, '/app', false), true);
});
