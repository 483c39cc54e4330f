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

/** A file of a tar archive, read with tar(1). */
async function fromTar(archive: string, name: string): Promise<string> {
  return (await run('tar', ['-xOf', archive, name], { maxBuffer: 64 * 1024 * 1024 })).stdout;
}

interface IndexJson { manifests: Array<{ digest: string; size: number; annotations?: Record<string, string> }> }

test('name= names the image in the archives as BuildKit writes them, and -t wins over it', async () => {
  const dir = await sb.tempDir('named');
  const oci = path.join(dir, 'named.tar');
  const docker = path.join(dir, 'docker.tar');
  const b = await sb.build({
    context: path.join(fixturesDir, 'outputs'),
    outputs: [
      { type: 'oci', dest: oci, names: ['greet/app:7'] },
      { type: 'docker', dest: docker, names: ['greet/app:7', '127.0.0.1:5000/g:1'] },
    ],
  });
  const index = JSON.parse(await fromTar(oci, 'index.json')) as IndexJson;
  assert.deepEqual(index.manifests.map((m) => m.annotations), [{ 'io.containerd.image.name': 'docker.io/greet/app:7', 'org.opencontainers.image.ref.name': '7' }]);
  // docker load reads RepoTags, in docker's short form.
  const manifest = JSON.parse(await fromTar(docker, 'manifest.json')) as Array<{ RepoTags: string[] }>;
  assert.deepEqual(manifest[0]?.RepoTags, ['greet/app:7', '127.0.0.1:5000/g:1']);
  // Other tools find the image by those names.
  const viaSkopeo = JSON.parse((await run('skopeo', ['inspect', `docker-archive:${docker}:127.0.0.1:5000/g:1`])).stdout) as { Env: string[] };
  assert.ok(viaSkopeo.Env.includes('GREETING=kiln'));
  await run('skopeo', ['inspect', `oci-archive:${oci}:7`]);
  // The metadata describes the last archive: its names in full form.
  assert.equal(b.result.metadata['image.name'], 'docker.io/greet/app:7,127.0.0.1:5000/g:1');

  // With -t, the tags are the archive's names (buildx hands -t to its exporters).
  const tagged = path.join(dir, 'tagged.tar');
  await sb.build({ context: path.join(fixturesDir, 'outputs'), tags: ['greet:9'], outputs: [{ type: 'oci', dest: tagged, names: ['ignored:1'] }] });
  const names = (JSON.parse(await fromTar(tagged, 'index.json')) as IndexJson).manifests.map((m) => m.annotations?.['io.containerd.image.name']);
  assert.deepEqual(names, ['docker.io/library/greet:9']);
});

test('every digest the build reports names a manifest the user can find: in the archive written, or in the store', async () => {
  const dir = await sb.tempDir('digests');
  const oci = path.join(dir, 'image.tar');
  const b = await sb.build({ context: path.join(fixturesDir, 'outputs'), outputs: [{ type: 'oci', dest: oci }] });
  const meta = b.result.metadata;
  const index = JSON.parse(await fromTar(oci, 'index.json')) as IndexJson;
  // The archive's manifest is what the metadata (and the CLI's stdout) names, not the store's.
  assert.equal(meta['containerimage.digest'], index.manifests[0]?.digest);
  assert.equal(b.result.outputs[0]?.manifestDigest, index.manifests[0]?.digest);
  assert.equal(meta['containerimage.descriptor']?.size, index.manifests[0]?.size);
  const inspected = JSON.parse((await run('skopeo', ['inspect', `oci-archive:${oci}`])).stdout) as { Digest: string };
  assert.equal(inspected.Digest, meta['containerimage.digest']);
  const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci-archive:${oci}`])).stdout) as { config: { digest: string } };
  assert.equal(meta['containerimage.config.digest'], raw.config.digest);
  // The store's manifest is a different one (uncompressed layers), and the store has it.
  assert.notEqual(b.result.manifestDigest, meta['containerimage.digest']);
  const store = await LayerStore.open(sb.root);
  assert.equal((await store.getImage(b.result.manifestDigest)).configDigest, raw.config.digest);

  // Why they differ: compression. An uncompressed OCI export holds the store's very manifest.
  const plain = path.join(dir, 'plain.tar');
  const p = await sb.build({ context: path.join(fixturesDir, 'outputs'), outputs: [{ type: 'oci', dest: plain, compression: 'none' }] });
  assert.equal((JSON.parse(await fromTar(plain, 'index.json')) as IndexJson).manifests[0]?.digest, p.result.manifestDigest);

  // Without an image output, the metadata names the store's manifest.
  const none = await sb.build({ context: path.join(fixturesDir, 'outputs') });
  assert.equal(none.result.metadata['containerimage.digest'], none.result.manifestDigest);
  assert.equal(none.result.metadata['containerimage.descriptor']?.size, (await store.readBlob(none.result.manifestDigest)).length);
});

test('an output may be a stream (the CLI\'s -o -)', async () => {
  const { PassThrough } = await import('node:stream');
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  await sb.build({ context: path.join(fixturesDir, 'outputs'), outputs: [{ type: 'tar', dest: sink }] });
  const { readTar } = await import('../../src/store/tar.js');
  const { Readable } = await import('node:stream');
  const names: string[] = [];
  for await (const { header } of readTar(Readable.from([Buffer.concat(chunks)]))) names.push(header.name);
  assert.ok(names.includes('usr/local/bin/greet'), names.slice(0, 5).join(' '));
});

test('type=image,name= tags the image in the store', async () => {
  const b = await sb.build({ context: path.join(fixturesDir, 'outputs'), outputs: [{ type: 'image', names: ['extra/name:5'] }] });
  const store = await LayerStore.open(sb.root);
  assert.equal(await store.resolveTag('extra/name:5'), b.result.manifestDigest);
  assert.deepEqual(b.result.tags, ['extra/name:5']);
});
