import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import tarStream from 'tar-stream';
import { RuntimeError } from '../../src/errors.js';
import { extractLayer } from '../../src/store/extract.js';

let work: string;
before(async () => {
  work = await fs.mkdtemp(path.join(tmpdir(), 'kiln-extract-'));
});
after(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; linkname?: string; content?: string };

/** Builds a tar with tar-stream (an independent encoder), returning its bytes. */
async function craft(entries: Entry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = { name: e.name, type, mode: type === 'directory' ? 0o755 : 0o644, mtime: new Date(0), uid: 0, gid: 0, ...(e.linkname ? { linkname: e.linkname } : {}) };
    await new Promise<void>((resolve, reject) => pack.entry(header, type === 'file' ? (e.content ?? '') : '', (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A fresh sandbox: `outside/` (with a secret file) next to the extraction `target/`. */
async function sandbox(name: string): Promise<{ target: string; outside: string }> {
  const base = path.join(work, name);
  const target = path.join(base, 'target');
  const outside = path.join(base, 'outside');
  await fs.mkdir(target, { recursive: true });
  await fs.mkdir(outside, { recursive: true });
  await fs.writeFile(path.join(outside, 'secret'), 'secret');
  return { target, outside };
}

const listOutside = async (outside: string): Promise<string[]> => (await fs.readdir(outside)).sort();

test('an entry named ../x is refused and nothing is written beside the target', async () => {
  const { target, outside } = await sandbox('dotdot');
  const tar = await craft([{ name: '../outside/x', content: 'pwned' }, { name: 'a/../../../x', content: 'pwned' }]);
  await assert.rejects(extractLayer(Readable.from([tar]), target), RuntimeError);
  assert.deepEqual(await listOutside(outside), ['secret']);
  await assert.rejects(fs.access(path.join(work, 'dotdot', 'x')));
});

test('an absolute entry name lands inside the target, as in a container root', async () => {
  const { target, outside } = await sandbox('absolute');
  const tar = await craft([{ name: `${outside}/abs`, content: 'inside' }]);
  await extractLayer(Readable.from([tar]), target);
  assert.equal(await fs.readFile(path.join(target, outside, 'abs'), 'utf8'), 'inside');
  assert.deepEqual(await listOutside(outside), ['secret']);
});

test('writing through a symlink that points outside stays inside the target', async () => {
  const { target, outside } = await sandbox('symlink');
  const tar = await craft([
    { name: 'abs-link', type: 'symlink', linkname: outside },
    { name: 'abs-link/pwned', content: 'x' },
    { name: 'rel-link', type: 'symlink', linkname: '../../../../../../..' + outside },
    { name: 'rel-link/pwned2', content: 'x' },
    { name: 'file-link', type: 'symlink', linkname: path.join(outside, 'secret') },
    { name: 'file-link', content: 'replaced the link, not the secret' },
  ]);
  await extractLayer(Readable.from([tar]), target);
  assert.deepEqual(await listOutside(outside), ['secret']);
  assert.equal(await fs.readFile(path.join(outside, 'secret'), 'utf8'), 'secret');
  // Both symlinks resolve as in the container: to <target>/<outside path>.
  assert.equal(await fs.readFile(path.join(target, outside, 'pwned'), 'utf8'), 'x');
  assert.equal(await fs.readFile(path.join(target, outside, 'pwned2'), 'utf8'), 'x');
  assert.equal((await fs.lstat(path.join(target, 'file-link'))).isFile(), true);
});

test('a hardlink to a file outside the target is refused', async () => {
  for (const linkname of ['../outside/secret', '__OUTSIDE__/secret', 'via-link/secret']) {
    const { target, outside } = await sandbox(`hardlink-${linkname.length}`);
    const tar = await craft([
      { name: 'via-link', type: 'symlink', linkname: outside },
      { name: 'h', type: 'link', linkname: linkname.replace('__OUTSIDE__', outside) },
      { name: 'h', content: 'overwrite' },
    ]);
    await assert.rejects(extractLayer(Readable.from([tar]), target), RuntimeError);
    const st = await fs.stat(path.join(outside, 'secret'));
    assert.equal(st.nlink, 1, linkname);
    assert.equal(await fs.readFile(path.join(outside, 'secret'), 'utf8'), 'secret');
  }
});

test('whiteouts delete lower content and an opaque marker empties the directory, in apply mode', async () => {
  const { target } = await sandbox('whiteouts');
  await fs.mkdir(path.join(target, 'd/sub'), { recursive: true });
  await fs.writeFile(path.join(target, 'd/old'), 'old');
  await fs.writeFile(path.join(target, 'gone'), 'x');
  await fs.writeFile(path.join(target, 'kept'), 'x');
  const tar = await craft([
    { name: '.wh.gone' },
    { name: 'd', type: 'directory' },
    { name: 'd/new', content: 'new' },
    { name: 'd/.wh..wh..opq' },
  ]);
  await extractLayer(Readable.from([tar]), target, { mode: 'apply' });
  assert.deepEqual((await fs.readdir(target)).sort(), ['d', 'kept']);
  assert.deepEqual(await fs.readdir(path.join(target, 'd')), ['new']);
});

test('a whiteout entry naming .. is refused', async () => {
  const { target } = await sandbox('wh-dotdot');
  await assert.rejects(extractLayer(Readable.from([await craft([{ name: 'a/.wh...' }])]), target), RuntimeError);
});
