// Image sources (src/sources/image-source.ts): what the store holds is used as is; a name the store lacks and no
// registry can serve fails with BuildKit's "failed to resolve source metadata" message, without a pull.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { RuntimeError } from '../../src/errors.js';
import type { ImageConfig } from '../../src/oci/types.js';
import { resolveImageSource, type ImageSourceOptions } from '../../src/sources/image-source.js';
import { LayerStore } from '../../src/store/layer-store.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

async function storeWithImage(): Promise<{ store: LayerStore; manifestDigest: `sha256:${string}` }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-source-'));
  temps.push(dir);
  const store = await LayerStore.open(dir);
  const config: ImageConfig = { architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [] } };
  const image = await store.putImage(config, []);
  await store.tag('app:1', image.manifestDigest);
  return { store, manifestDigest: image.manifestDigest };
}

function options(pull: boolean): { options: ImageSourceOptions; progress: string[] } {
  const progress: string[] = [];
  return { options: { pull, insecureRegistries: [], progress: (id, message) => progress.push(`${id}: ${message}`) }, progress };
}

test('a tag the store holds resolves to its image; `app` means `app:latest`, which it does not hold', async () => {
  const { store, manifestDigest } = await storeWithImage();
  const { options: o, progress } = options(false);
  const image = await resolveImageSource({ kind: 'image', ref: 'app:1' }, store, o);
  assert.equal(image.manifestDigest, manifestDigest);
  assert.deepEqual(image.config.config.Cmd, ['sh']);
  assert.deepEqual(progress, []);
  await assert.rejects(resolveImageSource({ kind: 'image', ref: 'app' }, store, o), (err: unknown) => err instanceof RuntimeError && /^failed to resolve source metadata for app:/.test(err.message));
});

test('a digest-pinned reference the store holds resolves without its tag, even with pull', async () => {
  const { store, manifestDigest } = await storeWithImage();
  const image = await resolveImageSource({ kind: 'image', ref: `other/name@${manifestDigest}` }, store, options(true).options);
  assert.equal(image.manifestDigest, manifestDigest);
});

test('with pull, a tag without a registry is not taken from the store and fails without a pull', async () => {
  const { store } = await storeWithImage();
  const { options: o, progress } = options(true);
  await assert.rejects(resolveImageSource({ kind: 'image', ref: 'app:1' }, store, o), (err: unknown) => err instanceof RuntimeError && /^failed to resolve source metadata for app:1: /.test(err.message));
  assert.deepEqual(progress, [], 'nothing was pulled');
});
