/**
 * The build cache shared through a registry, end to end: real builds (runc, the busybox base) on
 * "machines" that are separate stores, and a real docker-registry on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { build } from '../../src/builder/build.js';
import type { BuildEvent, BuildOptions, BuildResult } from '../../src/builder/options.js';
import { CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_FIELD, parseCacheConfig } from '../../src/builder/remote-cache.js';
import type { CacheConfig } from '../../src/builder/remote-cache.js';
import type { ImageManifest } from '../../src/oci/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { sha256Digest } from '../../src/oci/digest.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { startRegistry } from '../helpers/registry.js';
import type { TestRegistry } from '../helpers/registry.js';

let registry: TestRegistry;
let work: string;
let n = 0;

before(async () => {
  registry = await startRegistry();
  work = await mkdtemp(path.join(tmpdir(), 'kiln-cache-test-'));
});

after(async () => {
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

interface Built {
  readonly result: BuildResult;
  readonly warnings: readonly string[];
  read(p: string): Promise<string>;
  cached(text: string): boolean;
}

/** A fresh directory under the test's temp dir. */
async function dir(name: string): Promise<string> {
  const d = path.join(work, `${name}-${String(++n)}`);
  await mkdir(d, { recursive: true });
  return d;
}

/** Writes a build context. */
async function context(files: Record<string, string>): Promise<string> {
  const d = await dir('ctx');
  for (const [p, content] of Object.entries(files)) await writeFile(path.join(d, p), content);
  return d;
}

/** Builds with the store `root` (one "machine") and exports the image's filesystem to read it. */
async function buildOn(root: string, ctx: string, options: BuildOptions = {}): Promise<Built> {
  const out = await dir('out');
  const events: BuildEvent[] = [];
  const result = await build({ root, context: ctx, ...options, outputs: [...(options.outputs ?? []), { type: 'local', dest: out }], onEvent: (e) => events.push(e) });
  return {
    result,
    warnings: result.warnings,
    read: (p) => readFile(path.join(out, p), 'utf8'),
    cached: (text) => {
      const step = result.steps.find((s) => s.step.text === text);
      assert.ok(step, `no step ${text}`);
      return step.cached;
    },
  };
}

async function cacheConfig(ref: string): Promise<CacheConfig> {
  const client = new RegistryClient(registry.host);
  const [repo, tag] = ref.slice(registry.host.length + 1).split(':') as [string, string];
  const m = await client.getManifest(repo, tag);
  const manifest = JSON.parse(m.bytes.toString('utf8')) as ImageManifest;
  assert.equal(manifest.config.mediaType, CACHE_CONFIG_MEDIA_TYPE);
  const chunks: Uint8Array[] = [];
  for await (const c of client.getBlob(repo, manifest.config.digest)) chunks.push(c);
  const config = parseCacheConfig(JSON.parse(Buffer.concat(chunks).toString('utf8')));
  assert.ok(config);
  // Every blob a record names is one of the manifest's layers, so the registry keeps it.
  const layerDigests = new Set(manifest.layers.map((l) => l.digest));
  for (const r of config.records) if (r.layer) assert.ok(layerDigests.has(r.layer.digest), `record ${r.key} names a blob outside the manifest`);
  return config;
}

const DOCKERFILE = [
  'FROM busybox:latest',
  'COPY input.txt /input.txt',
  'RUN date +%s%N > /stamp1 && cat /input.txt > /copy',
  'RUN date +%s%N > /stamp2',
  'WORKDIR /app',
  '',
].join('\n');

let maxRef: string;
let machineA: Built;

test('a build on another machine with --cache-from uses every step of a mode=max registry cache without running it', async () => {
  maxRef = `${registry.host}/cache/app:max`;
  const ctx = await context({ Dockerfile: DOCKERFILE, 'input.txt': 'one\n' });
  machineA = await buildOn(await dir('machine-a'), ctx, { cacheTo: [{ type: 'registry', ref: maxRef, mode: 'max' }] });
  assert.equal(machineA.cached('RUN date +%s%N > /stamp2'), false);

  const b = await buildOn(await dir('machine-b'), ctx, { cacheFrom: [{ type: 'registry', ref: maxRef }] });
  for (const text of ['COPY input.txt /input.txt', 'RUN date +%s%N > /stamp1 && cat /input.txt > /copy', 'RUN date +%s%N > /stamp2', 'WORKDIR /app']) {
    assert.equal(b.cached(text), true, `${text} ran on machine B`);
  }
  // The timestamps were written on machine A: B's layers are A's.
  assert.equal(await b.read('stamp1'), await machineA.read('stamp1'));
  assert.equal(await b.read('stamp2'), await machineA.read('stamp2'));
  assert.equal(await b.read('copy'), 'one\n');
  assert.deepEqual(b.result.layers.map((l) => l.diffId), machineA.result.layers.map((l) => l.diffId));
  assert.equal(b.result.configDigest, machineA.result.configDigest);
});

test('a changed context file misses the shared cache from its step on', async () => {
  const ctx = await context({ Dockerfile: DOCKERFILE, 'input.txt': 'two\n' });
  const c = await buildOn(await dir('machine-c'), ctx, { cacheFrom: [{ type: 'registry', ref: maxRef }] });
  assert.equal(c.cached('COPY input.txt /input.txt'), false);
  assert.equal(c.cached('RUN date +%s%N > /stamp1 && cat /input.txt > /copy'), false);
  assert.equal(c.cached('RUN date +%s%N > /stamp2'), false);
  assert.equal(await c.read('copy'), 'two\n');
  assert.notEqual(await c.read('stamp2'), await machineA.read('stamp2'));
});

test('a cache ref that does not exist is a warning, and the build runs every step', async () => {
  const ctx = await context({ Dockerfile: 'FROM busybox:latest\nRUN echo hi > /hi\n' });
  const b = await buildOn(await dir('machine-missing'), ctx, { cacheFrom: [{ type: 'registry', ref: `${registry.host}/cache/none:nothing` }] });
  assert.equal(b.cached('RUN echo hi > /hi'), false);
  assert.ok(b.warnings.some((w) => w.includes('cache/none')), b.warnings.join('\n'));
});

test('a cache record pointing at a blob whose content does not match is refused and the step runs', async () => {
  const config = await cacheConfig(maxRef);
  const stamp1 = config.records.find((r) => r.layer !== null && r.layer.diffId === machineA.result.layers[2]?.diffId);
  const stamp2 = config.records.find((r) => r.layer !== null && r.layer.diffId === machineA.result.layers[3]?.diffId);
  assert.ok(stamp1?.layer && stamp2?.layer);
  // The stamp1 record now names stamp2's blob (a real blob of the repository, with its own valid digest).
  const tampered: CacheConfig = {
    ...config,
    records: config.records.map((r) => (r.key === stamp1.key ? { ...r, layer: { ...stamp2.layer!, diffId: stamp1.layer!.diffId } } : r)),
  };
  const client = new RegistryClient(registry.host);
  const bytes = Buffer.from(JSON.stringify(tampered));
  const digest = sha256Digest(bytes);
  await client.uploadBlob('cache/app', digest, { size: bytes.length, read: async (o, l) => bytes.subarray(o, o + l) });
  const m = JSON.parse((await client.getManifest('cache/app', 'max')).bytes.toString('utf8')) as ImageManifest;
  const manifest: ImageManifest = { ...m, config: { ...m.config, digest, size: bytes.length } };
  await client.putManifest('cache/app', 'tampered', Buffer.from(JSON.stringify(manifest)), m.mediaType ?? '');

  const root = await dir('machine-d');
  const ctx = await context({ Dockerfile: DOCKERFILE, 'input.txt': 'one\n' });
  const d = await buildOn(root, ctx, { cacheFrom: [{ type: 'registry', ref: `${registry.host}/cache/app:tampered` }] });
  assert.equal(d.cached('COPY input.txt /input.txt'), true);
  assert.equal(d.cached('RUN date +%s%N > /stamp1 && cat /input.txt > /copy'), false);
  assert.ok(d.warnings.some((w) => /refused/.test(w)), d.warnings.join('\n'));
  assert.notEqual(await d.read('stamp1'), await machineA.read('stamp1'));
  // Nothing that failed verification was stored under the diffID it claimed.
  const store = await LayerStore.open(root);
  assert.equal(await store.hasBlob(stamp1.layer.diffId), false);
});

test('mode=min exports only the final image\'s steps, mode=max those of every stage', async () => {
  const dockerfile = [
    'FROM busybox:latest AS builder',
    'RUN date +%s%N > /built',
    'FROM busybox:latest',
    'COPY --from=builder /built /built',
    'RUN date +%s%N > /final',
    '',
  ].join('\n');
  const ctx = await context({ Dockerfile: dockerfile });
  const minRef = `${registry.host}/cache/stages:min`;
  const maxStagesRef = `${registry.host}/cache/stages:max`;
  const a = await buildOn(await dir('machine-a2'), ctx, {
    cacheTo: [
      { type: 'registry', ref: minRef, mode: 'min' },
      { type: 'registry', ref: maxStagesRef, mode: 'max' },
    ],
  });
  assert.equal((await cacheConfig(maxStagesRef)).records.length - (await cacheConfig(minRef)).records.length, 1);

  const fromMin = await buildOn(await dir('machine-min'), ctx, { cacheFrom: [{ type: 'registry', ref: minRef }] });
  assert.equal(fromMin.cached('RUN date +%s%N > /built'), false);
  assert.equal(fromMin.cached('RUN date +%s%N > /final'), true);
  assert.equal(await fromMin.read('final'), await a.read('final'));

  const fromMax = await buildOn(await dir('machine-max'), ctx, { cacheFrom: [{ type: 'registry', ref: maxStagesRef }] });
  assert.equal(fromMax.cached('RUN date +%s%N > /built'), true);
  assert.equal(fromMax.cached('RUN date +%s%N > /final'), true);
  assert.equal(fromMax.result.configDigest, a.result.configDigest);
});

test('an inline cache pushed with the image is read back from the image by --cache-from', async () => {
  const ctx = await context({ Dockerfile: 'FROM busybox:latest\nRUN date +%s%N > /stamp\nENV X=1\n' });
  const ref = `${registry.host}/inline/app:1`;
  const rootA = await dir('machine-a3');
  const a = await buildOn(rootA, ctx, { cacheTo: [{ type: 'inline' }], outputs: [{ type: 'registry', ref }] });
  const store = await LayerStore.open(rootA);
  const config = (await store.getImage(a.result.manifestDigest)).config as unknown as Record<string, unknown>;
  assert.equal(parseCacheConfig(config[INLINE_CACHE_FIELD])?.records.length, 1);

  const b = await buildOn(await dir('machine-b3'), ctx, { cacheFrom: [{ type: 'registry', ref }], cacheTo: [{ type: 'inline' }] });
  assert.equal(b.cached('RUN date +%s%N > /stamp'), true);
  assert.equal(await b.read('stamp'), await a.read('stamp'));
  assert.equal(b.result.configDigest, a.result.configDigest);
});

test('cache mounts travel with cache-mounts=true and are restored into an empty store', async () => {
  const dockerfile = 'FROM busybox:latest\nRUN --mount=type=cache,target=/cache,id=dl date +%s%N > /cache/stamp\n';
  const ctx = await context({ Dockerfile: dockerfile });
  const ref = `${registry.host}/cache/mounts:1`;
  const rootA = await dir('machine-a4');
  await buildOn(rootA, ctx, { cacheTo: [{ type: 'registry', ref, cacheMounts: true }] });
  const rootB = await dir('machine-b4');
  await buildOn(rootB, await context({ Dockerfile: 'FROM busybox:latest\nRUN true\n' }), { cacheFrom: [{ type: 'registry', ref }] });
  const { readdir } = await import('node:fs/promises');
  const [mount] = await readdir(path.join(rootA, 'cache-mounts'));
  assert.ok(mount);
  assert.equal(await readFile(path.join(rootB, 'cache-mounts', mount, 'stamp'), 'utf8'), await readFile(path.join(rootA, 'cache-mounts', mount, 'stamp'), 'utf8'));
});
