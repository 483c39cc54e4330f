import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { isMounted, mountOverlay } from '../../src/runtime/overlay.js';

let dir: string;
let savedTmp: string | undefined;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-overlay-test-'));
  // Helper dirs (kiln-ovl-*) go to os.tmpdir(); point it at a private dir so we can see them go away.
  savedTmp = process.env['TMPDIR'];
  await mkdir(path.join(dir, 'tmp'));
  process.env['TMPDIR'] = path.join(dir, 'tmp');
});

after(async () => {
  if (savedTmp === undefined) delete process.env['TMPDIR'];
  else process.env['TMPDIR'] = savedTmp;
  await rm(dir, { recursive: true, force: true });
});

async function parts(name: string): Promise<{ upperDir: string; workDir: string; target: string }> {
  const base = path.join(dir, name);
  const p = { upperDir: path.join(base, 'upper'), workDir: path.join(base, 'work'), target: path.join(base, 'merged') };
  await Promise.all(Object.values(p).map((d) => mkdir(d, { recursive: true })));
  return p;
}

test('many long lower paths beyond the one-page option limit mount, top-most first', async () => {
  const p = await parts('many');
  const lowerDirs: string[] = [];
  for (let i = 0; i < 80; i++) {
    // ~100 characters each: 80 of them are about 8 KB of lowerdir option.
    const d = path.join(dir, 'layers', `${'x'.repeat(60)}-${String(i).padStart(3, '0')}`, 'diff');
    await mkdir(d, { recursive: true });
    await writeFile(path.join(d, 'shared'), `layer ${i}`);
    await writeFile(path.join(d, `only-${i}`), '');
    lowerDirs.push(d);
  }
  assert.ok(lowerDirs.join(':').length > 4096);
  const m = await mountOverlay({ lowerDirs, ...p });
  try {
    assert.equal(await readFile(path.join(p.target, 'shared'), 'utf8'), 'layer 0');
    const names = await readdir(p.target);
    assert.ok(names.includes('only-0') && names.includes('only-79'));
    await writeFile(path.join(p.target, 'new'), 'w');
  } finally {
    await m.unmount();
  }
  assert.equal(await isMounted(p.target), false);
  assert.deepEqual(await readdir(p.upperDir), ['new']);
  assert.equal(await readFile(path.join(lowerDirs[0] as string, 'shared'), 'utf8'), 'layer 0');
  assert.deepEqual(await readdir(path.join(dir, 'tmp')), []);
});

test('paths containing a colon or a comma are mounted too', async () => {
  const p = await parts('odd:name,with comma');
  const lower = path.join(dir, 'odd:lower,dir');
  await mkdir(lower);
  await writeFile(path.join(lower, 'f'), 'odd');
  const m = await mountOverlay({ lowerDirs: [lower], ...p });
  try {
    assert.equal(await readFile(path.join(p.target, 'f'), 'utf8'), 'odd');
  } finally {
    await m.unmount();
  }
  assert.equal(await isMounted(p.target), false);
});

test('no lower dirs (FROM scratch) mounts an empty rootfs and removes its helper dir afterwards', async () => {
  const p = await parts('scratch');
  const m = await mountOverlay({ lowerDirs: [], ...p });
  try {
    assert.deepEqual(await readdir(p.target), []);
    await writeFile(path.join(p.target, 'hello'), 'hi');
    assert.ok(await isMounted(p.target));
  } finally {
    await m.unmount();
  }
  assert.equal(await isMounted(p.target), false);
  assert.equal(await readFile(path.join(p.upperDir, 'hello'), 'utf8'), 'hi');
  assert.deepEqual(await readdir(path.join(dir, 'tmp')), []);
});

test('a failing mount is reported as a RuntimeError and leaves no helper dir', async () => {
  const p = await parts('bad');
  await assert.rejects(mountOverlay({ lowerDirs: [], ...p, workDir: path.join(dir, 'does-not-exist') }), {
    name: 'RuntimeError',
  });
  assert.equal(await isMounted(p.target), false);
  assert.deepEqual(await readdir(path.join(dir, 'tmp')), []);
});

test('step overlays are mounted volatile, so unmounting one does not sync the store filesystem', async () => {
  const p = await parts('volatile');
  const lower = path.join(dir, 'volatile-lower');
  await mkdir(lower);
  const m = await mountOverlay({ lowerDirs: [lower], ...p });
  try {
    const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === p.target);
    assert.ok(line, 'the overlay is listed in mountinfo');
    // Super options follow the " - " separator; kernels since 6.x spell the option `fsync=volatile` there.
    assert.match(line.split(' - ')[1] ?? '', /[ ,](fsync=)?volatile(,|$)/);
  } finally {
    await m.unmount();
  }
});

test('a directory repeated in the stack mounts, and the top-most copy decides what is seen', async () => {
  // Two steps that made the same layer, or a manifest listing one diffID twice: the same directory twice.
  const p = await parts('repeated');
  const a = path.join(dir, 'rep-a');
  const b = path.join(dir, 'rep-b');
  await mkdir(a);
  await mkdir(b);
  await writeFile(path.join(a, 'f'), 'from a');
  await writeFile(path.join(b, 'f'), 'from b');
  await writeFile(path.join(b, 'only-b'), '');
  const m = await mountOverlay({ lowerDirs: [a, b, `${a}/`, b, a], ...p });
  try {
    assert.equal(await readFile(path.join(p.target, 'f'), 'utf8'), 'from a');
    assert.deepEqual((await readdir(p.target)).sort(), ['f', 'only-b']);
  } finally {
    await m.unmount();
  }
  assert.equal(await isMounted(p.target), false);
});
