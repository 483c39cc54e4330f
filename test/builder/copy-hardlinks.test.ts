/**
 * Hard links through COPY and ADD. The expected groups are what dockerd 20.10's BuildKit built for the same
 * Dockerfiles and contexts (measured with the docker peer; fsutil's copy links the names of one inode within one
 * copy call): one source directory keeps its links, with or without --chown/--chmod, from the context, from a
 * stage or through ADD; two sources or two wildcard matches are copied as separate files; a name left out by
 * .dockerignore just leaves the group.
 */
import assert from 'node:assert/strict';
import { link, lstat, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { layerEntries } from '../differential/image-facts.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { sandbox, type Built, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

/** A context of `files`, then each `[name, existing]` of `links` made a hard link to `existing`. */
async function contextWithLinks(files: Record<string, string>, links: ReadonlyArray<[string, string]>): Promise<string> {
  const ctx = await sb.context(files);
  for (const [name, existing] of links) await link(path.join(ctx, existing), path.join(ctx, name));
  return ctx;
}

/** The hard-link groups of one layer (the last by default) as its tar shows them: path → the other paths of its group. */
async function lastLayer(b: Built, at = -1): Promise<{ groups: Record<string, readonly string[]>; owners: Record<string, string>; unpacked: string }> {
  const store = await LayerStore.open(sb.root);
  const diffId = b.image.config.rootfs.diff_ids.at(at)!;
  const chunks: Buffer[] = [];
  for await (const c of await store.openLayerTar(diffId)) chunks.push(Buffer.from(c));
  const entries = await layerEntries(Buffer.concat(chunks));
  const groups: Record<string, readonly string[]> = {};
  const owners: Record<string, string> = {};
  for (const [p, e] of Object.entries(entries)) {
    if (e.type !== 'file') continue;
    if (e.hardlinks?.length) groups[p] = e.hardlinks;
    owners[p] = `${e.owner} ${e.mode}`;
  }
  return { groups, owners, unpacked: await store.unpackedLayer(diffId) };
}

const sameInode = async (root: string, a: string, b: string): Promise<boolean> => {
  const [x, y] = await Promise.all([lstat(path.join(root, a)), lstat(path.join(root, b))]);
  return x.ino === y.ino && x.dev === y.dev;
};

test('COPY --chown of a directory keeps its hard links as one group, in the layer tar and the unpacked layer', async () => {
  const ctx = await contextWithLinks({ 'src/main.ts': 'main\n' }, [['hard-a', 'src/main.ts']]);
  const b = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nCOPY --chown=2:3 . /etc/\n' });
  const layer = await lastLayer(b);
  assert.deepEqual(layer.groups, { '/etc/hard-a': ['/etc/src/main.ts'], '/etc/src/main.ts': ['/etc/hard-a'] });
  assert.equal(layer.owners['/etc/hard-a'], '2:3 0644');
  assert.ok(await sameInode(layer.unpacked, 'etc/hard-a', 'etc/src/main.ts'));
  // The same contents without the link make another layer: the step is not taken from the cache.
  await rm(path.join(ctx, 'hard-a'));
  await writeFile(path.join(ctx, 'hard-a'), 'main\n');
  const unlinked = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nCOPY --chown=2:3 . /etc/\n' });
  assert.ok(unlinked.ran('COPY --chown=2:3 . /etc/'));
  assert.deepEqual((await lastLayer(unlinked)).groups, {});
});

test('COPY --chmod and ADD of a directory keep hard links; the names .dockerignore leaves stay linked', async () => {
  const ctx = await contextWithLinks({ 'src/main.ts': 'main\n', '.dockerignore': 'src/main.ts\n' }, [['hard-a', 'src/main.ts'], ['src/c', 'src/main.ts']]);
  const chmod = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nCOPY --chmod=600 . /e/\n' });
  const layer = await lastLayer(chmod);
  assert.deepEqual(layer.groups, { '/e/hard-a': ['/e/src/c'], '/e/src/c': ['/e/hard-a'] });
  assert.equal(layer.owners['/e/src/c'], '0:0 0600');
  const add = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nADD . /x/\n' });
  assert.deepEqual((await lastLayer(add)).groups, { '/x/hard-a': ['/x/src/c'], '/x/src/c': ['/x/hard-a'] });
});

test('hard links are not kept across two COPY sources or two wildcard matches, nor to a name outside the source', async () => {
  const ctx = await contextWithLinks({ 'src/main.ts': 'main\n', 'a.txt': 'a\n' }, [['hard-a', 'src/main.ts'], ['b.txt', 'a.txt']]);
  const b = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nCOPY src/main.ts hard-a /d/\nCOPY *.txt /w/\nCOPY src/ /s/\n' });
  for (const at of [-3, -2, -1]) assert.deepEqual((await lastLayer(b, at)).groups, {});
  assert.ok(!(await sameInode(b.fs, 'd/main.ts', 'd/hard-a')));
});

test('COPY --from a stage keeps the hard links its RUN made, from one source directory only', async () => {
  const b = await sb.build({
    context: await sb.context({}),
    dockerfileText:
      'FROM busybox:latest AS s0\nRUN mkdir /w && echo x > /w/a && ln /w/a /w/b && ln /w/a /c\nFROM busybox:latest\nCOPY --from=s0 /w/a /w/b /t3/\nCOPY --from=s0 --chown=1:1 /w /t2/\n',
  });
  const layer = await lastLayer(b);
  assert.deepEqual(layer.groups, { '/t2/a': ['/t2/b'], '/t2/b': ['/t2/a'] });
  assert.equal(layer.owners['/t2/b'], '1:1 0644');
  assert.deepEqual((await lastLayer(b, -2)).groups, {});
});

test('a later source that writes a linked name again takes that name out of its group', async () => {
  const ctx = await contextWithLinks({ 'a.txt': 'a\n' }, [['hard-a', 'a.txt'], ['hard-b', 'a.txt']]);
  const b = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nCOPY *.txt . /m/\nCOPY . hard-a /n/\n' });
  assert.deepEqual((await lastLayer(b, -2)).groups, {
    '/m/a.txt': ['/m/hard-a', '/m/hard-b'],
    '/m/hard-a': ['/m/a.txt', '/m/hard-b'],
    '/m/hard-b': ['/m/a.txt', '/m/hard-a'],
  });
  assert.deepEqual((await lastLayer(b)).groups, { '/n/a.txt': ['/n/hard-b'], '/n/hard-b': ['/n/a.txt'] });
});

test('a COPY rebuilt with files reused from its earlier layer keeps the same hard-link groups', async () => {
  const ctx = await contextWithLinks({ 'src/main.ts': 'main\n', 'other.txt': 'one\n' }, [['hard-a', 'src/main.ts']]);
  const text = 'FROM busybox:latest\nCOPY . /r/\n';
  const first = await sb.build({ context: ctx, dockerfileText: text });
  await writeFile(path.join(ctx, 'other.txt'), 'two\n');
  const again = await sb.build({ context: ctx, dockerfileText: text });
  assert.ok(again.ran('COPY . /r/'));
  const groups = { '/r/hard-a': ['/r/src/main.ts'], '/r/src/main.ts': ['/r/hard-a'] };
  assert.deepEqual((await lastLayer(first)).groups, groups);
  const layer = await lastLayer(again);
  assert.deepEqual(layer.groups, groups);
  assert.ok(await sameInode(layer.unpacked, 'r/hard-a', 'r/src/main.ts'));
});
