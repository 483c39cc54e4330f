import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { runImage } from '../../src/runtime/run-image.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { fixturesDir, sandbox, type Built, type Sandbox } from './helpers.js';

const run = promisify(execFile);
let sb: Sandbox;
let built: Built;
let ociDir: string;
let dockerTar: string;
before(async () => {
  sb = await sandbox();
  ociDir = path.join(await sb.tempDir('oci'), 'layout');
  dockerTar = path.join(await sb.tempDir('docker'), 'image.tar');
  built = await sb.build({
    context: path.join(fixturesDir, 'outputs'),
    tags: ['greet:1'],
    outputs: [
      { type: 'oci', dest: ociDir },
      { type: 'docker', dest: dockerTar },
    ],
  });
});
after(() => sb.cleanup());

test('the built image runs and prints what its entrypoint script says', async () => {
  const store = await LayerStore.open(sb.root);
  let out = '';
  const code = await runImage(built.image, store, { onOutput: (chunk) => (out += chunk) });
  assert.equal(code, 0);
  assert.equal(out.trim(), 'hello from kiln');
});

test('the OCI layout output is readable by skopeo and unpackable by umoci', async () => {
  const { stdout } = await run('skopeo', ['inspect', `oci:${ociDir}:1`]);
  const info = JSON.parse(stdout) as { Digest: string; Layers: string[]; Env: string[] };
  // The layout holds compressed layers, so its manifest differs from the store's; the config is the same.
  const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci:${ociDir}:1`])).stdout) as { config: { digest: string } };
  assert.equal(raw.config.digest, built.result.configDigest);
  assert.match(info.Digest, /^sha256:/);
  assert.equal(info.Layers.length, built.image.manifest.layers.length);
  assert.ok(info.Env.includes('GREETING=kiln'));
  const bundle = path.join(await sb.tempDir('bundle'), 'b');
  await run('umoci', ['unpack', '--rootless', '--image', `${ociDir}:1`, bundle]);
  const script = await readFile(path.join(bundle, 'rootfs', 'usr', 'local', 'bin', 'greet'), 'utf8');
  assert.match(script, /hello from/);
});

test('the docker archive output is readable by skopeo', async () => {
  const { stdout } = await run('skopeo', ['inspect', `docker-archive:${dockerTar}`]);
  const info = JSON.parse(stdout) as { Layers: string[]; Env: string[] };
  assert.equal(info.Layers.length, built.image.manifest.layers.length);
  assert.ok(info.Env.includes('GREETING=kiln'));
});

test('the image config has the entrypoint, a default PATH and history for every layer', () => {
  const cfg = built.image.config;
  assert.deepEqual(cfg.config.Entrypoint, ['greet']);
  assert.ok(cfg.config.Env?.some((e) => e.startsWith('PATH=')));
  assert.equal(cfg.rootfs.diff_ids.length, (cfg.history ?? []).filter((h) => !h.empty_layer).length);
});
