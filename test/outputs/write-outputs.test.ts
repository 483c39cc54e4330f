// The build's output list (src/outputs/index.ts): each output goes to the exporter of its type, in order, with one
// report each; the store itself (`image`) is not an exporter's; a push without a name fails before any registry.
import assert from 'node:assert/strict';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { BuildError } from '../../src/errors.js';
import { ensureBusyboxImage } from '../../src/image/base-image.js';
import { writeOutputs, type OutputContext } from '../../src/outputs/index.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { readTar } from '../../src/store/tar.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

async function temp(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
}

function context(store: LayerStore, tags: readonly string[], progress: string[]): OutputContext {
  return { store, tags, insecureRegistries: [], progress: (id, message) => progress.push(`${id}|${message}`) };
}

test('tar and local outputs are written in list order, one report each; image is left to the store', async () => {
  const store = await LayerStore.open(await temp('kiln-outputs-store-'));
  const image = await ensureBusyboxImage(store);
  const out = await temp('kiln-outputs-');
  const tarFile = path.join(out, 'fs.tar');
  const dir = path.join(out, 'rootfs');
  const progress: string[] = [];
  const reports = await writeOutputs(image, [{ type: 'image' }, { type: 'tar', dest: tarFile }, { type: 'local', dest: dir }], context(store, ['app:1'], progress));
  // A filesystem output names no image and holds no manifest.
  assert.deepEqual(reports, [
    { type: 'tar', dest: tarFile, names: [] },
    { type: 'local', dest: dir, names: [] },
  ]);
  assert.deepEqual(progress, [`export tar|exporting to tar ${tarFile}`, `export local|exporting to local ${dir}`]);
  const names: string[] = [];
  for await (const { header } of readTar(createReadStream(tarFile))) names.push(header.name);
  assert.ok(names.includes('bin/busybox'), names.join(' '));
  assert.ok(existsSync(path.join(dir, 'bin', 'busybox')));
});

test('a registry output without a reference, in a build without tags, is a usage error before any push', async () => {
  const store = await LayerStore.open(await temp('kiln-outputs-store-'));
  const image = await ensureBusyboxImage(store);
  const progress: string[] = [];
  await assert.rejects(
    writeOutputs(image, [{ type: 'registry' }], context(store, [], progress)),
    (err: unknown) => err instanceof BuildError && err.code === 'USAGE' && /pushing needs a name/.test(err.message),
  );
  assert.deepEqual(progress, []);
  assert.deepEqual(await writeOutputs(image, [{ type: 'image', names: ['x:1'] }], context(store, [], progress)), []);
});
