/**
 * The comparison the differential tests rest on (image-facts.ts): a layer tar read into entries
 * (hardlink groups, whiteouts, opaque directories), layers applied into a filesystem, and history
 * entries aligned so one extra entry is one difference.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tar from 'tar-stream';
import { applyLayers, diffFacts, layerEntries } from './image-facts.js';
import type { ImageFacts } from './image-facts.js';

type Member = Partial<tar.Header> & { name: string; body?: string };

async function layerTar(members: readonly Member[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const { body, ...header } of members) pack.entry({ ...header, mode: header.mode ?? 0o644, uid: header.uid ?? 0, gid: header.gid ?? 0 }, body ?? '');
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

test('a layer tar becomes entries with hardlink groups, whiteouts and opaque directories', async () => {
  const entries = await layerEntries(
    await layerTar([
      { name: './', type: 'directory', mode: 0o755 },
      { name: 'a', type: 'file', body: 'hi\n' },
      { name: 'b', type: 'link', linkname: 'a' },
      { name: 'c', type: 'link', linkname: 'b' },
      { name: 's', type: 'symlink', linkname: 'a', mode: 0o777 },
      { name: 'd/', type: 'directory', mode: 0o700, uid: 1000, gid: 1000 },
      { name: 'd/.wh..wh..opq', type: 'file' },
      { name: 'd/.wh.gone', type: 'file' },
    ]),
  );
  assert.deepEqual(Object.keys(entries), ['/a', '/b', '/c', '/d', '/d/', '/d/gone', '/s']);
  assert.deepEqual(entries['/a']?.hardlinks, ['/b', '/c']);
  assert.deepEqual(entries['/c']?.hardlinks, ['/a', '/b']);
  assert.equal(entries['/b']?.sha256, entries['/a']?.sha256);
  assert.equal(entries['/d']?.owner, '1000:1000');
  assert.equal(entries['/d/']?.type, 'opaque');
  assert.equal(entries['/d/gone']?.type, 'whiteout');
  assert.equal(entries['/s']?.link, 'a');
});

test('layers apply with whiteouts and opaque directories, and a hardlink group keeps only paths of its layer', () => {
  const f = (sha: string) => ({ type: 'file', mode: '0644', owner: '0:0', size: 1, sha256: sha });
  const dir = { type: 'dir', mode: '0755', owner: '0:0' };
  const fs = applyLayers([
    { '/d': dir, '/d/x': f('1'), '/d/y': f('2'), '/k': dir, '/k/z': f('3'), '/h1': { ...f('4'), hardlinks: ['/h2'] }, '/h2': { ...f('4'), hardlinks: ['/h1'] } },
    { '/d/': { type: 'opaque', mode: '', owner: '' }, '/d/new': f('5'), '/k/z': { type: 'whiteout', mode: '', owner: '' }, '/h2': f('6') },
  ]);
  assert.deepEqual([...fs.keys()], ['/d', '/d/new', '/h1', '/h2', '/k']);
  assert.equal(fs.get('/h1')?.hardlinks, undefined);
});

test('one history entry only one image has is one difference, not a shift of every later entry', () => {
  const base: ImageFacts = { architecture: 'amd64', os: 'linux', config: {}, diffIds: [], layers: [], history: [] };
  const h = (...xs: string[]) => xs.map((created_by) => ({ created_by, empty_layer: false }));
  const a = { ...base, history: h('FROM', 'ONBUILD x', 'RUN a', 'COPY b /b') };
  const b = { ...base, history: h('FROM', 'RUN a', 'COPY b b') };
  assert.deepEqual(diffFacts(a, b, ['kiln', 'buildkit']), ['history[1]: kiln "ONBUILD x" | buildkit null', 'history[3]: kiln "COPY b /b" | buildkit "COPY b b"']);
});
