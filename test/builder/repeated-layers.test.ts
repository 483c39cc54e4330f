/**
 * Steps that produce the same layer as an earlier step, and images that list one layer twice. Both are valid
 * OCI (Docker's images often repeat the empty layer), so every later RUN, and `kiln run`, must work on them.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ensureBusyboxImage } from '../../src/image/base-image.js';
import { exportImage } from '../../src/outputs/index.js';
import type { ImageConfig, ImageIndex, ImageManifest } from '../../src/oci/types.js';
import { runImage } from '../../src/runtime/run-image.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

test('RUN steps that change nothing, one after another, all run (the issue\'s five lines)', async () => {
  const ctx = await sb.context({
    Dockerfile: 'FROM busybox\nRUN echo hello\nRUN echo world\nRUN echo again\nRUN echo fourth\nRUN echo done > /out\n',
  });
  const b = await sb.build({ context: ctx });
  assert.equal(await b.read('out'), 'done\n');
  const layers = b.image.manifest.layers.map((l) => l.digest);
  assert.ok(new Set(layers).size < layers.length, 'the no-op RUNs share one layer, listed more than once');
  // kiln run stacks the same repeated layers.
  const store = await LayerStore.open(sb.root);
  let out = '';
  const code = await runImage(b.image, store, { command: ['cat', '/out'], onOutput: (c) => (out += c) });
  assert.equal(code, 0);
  assert.equal(out, 'done\n');
});

test('the same COPY twice, then a RUN that reads what it copied', async () => {
  const ctx = await sb.context({
    Dockerfile: 'FROM busybox\nCOPY a.txt /a.txt\nRUN true\nCOPY a.txt /a.txt\nRUN cat /a.txt > /seen\n',
    'a.txt': 'copied\n',
  });
  const b = await sb.build({ context: ctx });
  assert.equal(await b.read('seen'), 'copied\n');
});

test('an imported image whose manifest lists one layer twice builds and runs', async () => {
  // Write the busybox image as an OCI layout, list its layer twice, import it as a base image.
  const src = await LayerStore.open(await sb.tempDir('src-store'));
  const layout = path.join(await sb.tempDir('layout'), 'oci');
  await exportImage(await ensureBusyboxImage(src), src, { type: 'oci', dest: layout, tags: ['twice'] });
  const blob = (d: string): string => path.join(layout, 'blobs', 'sha256', d.slice('sha256:'.length));
  const put = async (data: string): Promise<{ digest: `sha256:${string}`; size: number }> => {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}` as const;
    await writeFile(blob(digest), data);
    return { digest, size: Buffer.byteLength(data) };
  };
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as ImageIndex;
  const desc = index.manifests[0]!;
  const manifest = JSON.parse(await readFile(blob(desc.digest), 'utf8')) as ImageManifest;
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8')) as ImageConfig;
  config.rootfs.diff_ids = [...config.rootfs.diff_ids, ...config.rootfs.diff_ids];
  config.history = [...(config.history ?? []), ...(config.history ?? [])];
  const cfg = await put(JSON.stringify(config));
  manifest.config = { ...manifest.config, ...cfg };
  manifest.layers = [...manifest.layers, ...manifest.layers];
  const m = await put(JSON.stringify(manifest));
  index.manifests = [{ ...desc, ...m }];
  await writeFile(path.join(layout, 'index.json'), JSON.stringify(index));

  const ctx = await sb.context({ Dockerfile: 'FROM twice\nRUN echo ran > /ran\n' });
  const b = await sb.build({ context: ctx, buildContexts: { twice: `oci-layout://${layout}:twice` } });
  assert.equal(await b.read('ran'), 'ran\n');
  assert.equal(b.image.config.rootfs.diff_ids.length, 3);
});
