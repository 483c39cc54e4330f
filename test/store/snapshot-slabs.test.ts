import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { nativeSys } from '../../src/native/sys.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { snapshotDirectory } from '../../src/store/snapshot.js';
import { readTar } from '../../src/store/tar.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let work: string;
let store: LayerStore;
/** A tree of a few MiB: small files of many sizes (block multiples, empty) around one big file. */
let tree: string;
before(async () => {
  work = await fs.mkdtemp(path.join(tmpdir(), 'kiln-snap-slabs-'));
  store = await LayerStore.open(path.join(work, 'store'));
  tree = path.join(work, 'tree');
  for (let i = 0; i < 900; i++) {
    const dir = path.join(tree, `d${i % 7}`);
    await fs.mkdir(dir, { recursive: true });
    const size = i % 10 === 0 ? 512 * (i % 5) : (i * 131) % 7000;
    await fs.writeFile(path.join(dir, `f${i}`), Buffer.alloc(size, `${i}:`));
    if (i === 450) await fs.writeFile(path.join(dir, 'big'), Buffer.alloc(700 * 1024, 'big'));
  }
});
after(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

test('every file of a snapshot spanning many slabs is in the layer with its own content', async () => {
  const layer = await snapshotDirectory(tree, store);
  const seen = new Map<string, string>();
  for await (const e of readTar(store.openBlob(layer.digest))) {
    const parts: Buffer[] = [];
    for await (const chunk of e.body) parts.push(chunk);
    if (e.header.type === 'file') seen.set(e.header.name, sha(Buffer.concat(parts)));
  }
  assert.equal(seen.size, 901);
  for (const [name, hash] of seen) assert.equal(hash, sha(await fs.readFile(path.join(tree, name))), name);
});

test('a blob snapshot of many MiB of small files, its slabs refilled once written, holds every file and matches the hash-only diffID', async () => {
  const many = path.join(work, 'many');
  for (let i = 0; i < 2400; i++) {
    const dir = path.join(many, `d${i % 13}`);
    if (i < 13) await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, `f${i}`), Buffer.alloc(5000 + ((i * 977) % 9000), `${i}.`));
  }
  const layer = await snapshotDirectory(many, store);
  assert.ok(layer.size > 16 * 1024 * 1024, 'the tar spans many slabs and blob writes');
  let files = 0;
  for await (const e of readTar(store.openBlob(layer.digest))) {
    const parts: Buffer[] = [];
    for await (const chunk of e.body) parts.push(chunk);
    if (e.header.type !== 'file') continue;
    files++;
    assert.equal(sha(Buffer.concat(parts)), sha(await fs.readFile(path.join(many, e.header.name))), e.header.name);
  }
  assert.equal(files, 2400);
  assert.equal((await snapshotDirectory(many, store, { blob: false })).diffId, layer.diffId);
});

test('hashing only gives the digest of the blob written, snapshot after snapshot', async () => {
  const written = await snapshotDirectory(tree, store);
  assert.equal(`sha256:${sha(await fs.readFile(store.blobPath(written.digest)))}`, written.diffId);
  for (let i = 0; i < 2; i++) assert.equal((await snapshotDirectory(tree, store, { blob: false })).diffId, written.diffId);
});

test('the snapshot with the addon has the same digest as the one without it', { skip: nativeSys() === undefined }, async () => {
  const code = `import { snapshotDirectory } from ${JSON.stringify(path.join(repoRoot, 'src/store/snapshot.ts'))};
    const layer = await snapshotDirectory(${JSON.stringify(tree)}, undefined, { blob: false });
    process.stdout.write(layer.diffId);`;
  const without = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: { ...process.env, KILN_NATIVE: '0' },
  });
  assert.equal(without, (await snapshotDirectory(tree, store, { blob: false })).diffId);
});

test('a small file that grows after the tree was listed fails the snapshot', async () => {
  const dir = path.join(work, 'growing');
  await fs.mkdir(dir);
  for (let i = 0; i < 20; i++) await fs.writeFile(path.join(dir, `f${String(i).padStart(2, '0')}`), 'x'.repeat(100));
  let grown = false;
  const onProgress = (): void => {
    if (grown) return;
    grown = true;
    execFileSync('sh', ['-c', `echo more >> ${JSON.stringify(path.join(dir, 'f19'))}`]);
  };
  await assert.rejects(snapshotDirectory(dir, store, { blob: false, onProgress }), /f19 changed while it was being snapshotted/);
});

test('the addon reads a batch of files into their places and reports each failure as -errno', { skip: nativeSys() === undefined }, async () => {
  const sys = nativeSys();
  assert.ok(sys);
  const dir = path.join(work, 'batch');
  await fs.mkdir(path.join(dir, 'sub'), { recursive: true });
  const contents = { a: Buffer.from('hello'), empty: Buffer.alloc(0), 'sub/c': Buffer.alloc(600, 'c') };
  for (const [name, data] of Object.entries(contents)) await fs.writeFile(path.join(dir, name), data);
  await fs.symlink('a', path.join(dir, 'link'));
  const rels = ['a', 'empty', 'sub/c', 'link', 'missing'];
  const plan = new Uint32Array([0, 6, 10, 1, 20, 601, 700, 10, 800, 10]);
  const got = new Int32Array(rels.length);
  const buffer = Buffer.alloc(1024, 0xee);
  await new Promise<void>((resolve) => sys.readFiles(dir, rels, buffer, plan, got, resolve));
  assert.deepEqual([...got], [5, 0, 600, -constants.errno.ELOOP, -constants.errno.ENOENT]);
  assert.deepEqual(buffer.subarray(0, 5), contents.a);
  assert.deepEqual(buffer.subarray(20, 620), contents['sub/c']);
  assert.equal(buffer[5], 0xee, 'nothing is written past a file');
  assert.throws(() => sys.readFiles(dir, ['a'], buffer, new Uint32Array([1020, 6]), new Int32Array(1), () => undefined), RangeError);
});
