/**
 * Registry images in builds, end to end: FROM a registry tag or digest, a docker-image:// build
 * context, pushing the result (--output type=registry / --push), and the CLI's kiln pull / kiln push.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import { build } from '../../src/builder/build.js';
import type { BuildOptions, BuildResult } from '../../src/builder/options.js';
import type { Digest } from '../../src/oci/types.js';
import { RegistryClient } from '../../src/registry/client.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { startRegistry } from '../helpers/registry.js';
import type { TestRegistry } from '../helpers/registry.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let registry: TestRegistry;
let work: string;
let n = 0;

before(async () => {
  registry = await startRegistry();
  work = await mkdtemp(path.join(tmpdir(), 'kiln-regbuild-test-'));
});

after(async () => {
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function dir(name: string): Promise<string> {
  const d = path.join(work, `${name}-${String(++n)}`);
  await mkdir(d, { recursive: true });
  return d;
}

async function buildText(root: string, dockerfile: string, options: BuildOptions = {}): Promise<{ result: BuildResult; read(p: string): Promise<string> }> {
  const ctx = await dir('ctx');
  const out = await dir('out');
  await writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  const result = await build({ root, context: ctx, ...options, outputs: [...(options.outputs ?? []), { type: 'local', dest: out }] });
  return { result, read: (p) => readFile(path.join(out, p), 'utf8') };
}

/** Builds `busybox + /v = version` on a publisher machine and pushes it to `ref`; returns the registry's manifest digest. */
async function publish(root: string, ref: string, version: string): Promise<Digest> {
  await buildText(root, `FROM busybox:latest\nRUN echo ${version} > /v\n`, { outputs: [{ type: 'registry', ref }] });
  const client = new RegistryClient(registry.host);
  const [repo, tag] = ref.slice(registry.host.length + 1).split(':') as [string, string];
  const head = await client.headManifest(repo, tag);
  assert.ok(head);
  return head.digest;
}

let publisher: string;
let v1Digest: Digest;

test('FROM a registry tag pulls it once; the tag is re-resolved only with pull', async () => {
  publisher = await dir('publisher');
  const ref = `${registry.host}/base/img:1`;
  v1Digest = await publish(publisher, ref, 'v1');
  const user = await dir('user');
  const dockerfile = `FROM ${ref}\nRUN cat /v > /seen\n`;
  assert.equal(await (await buildText(user, dockerfile)).read('seen'), 'v1\n');

  await publish(publisher, ref, 'v2');
  assert.equal(await (await buildText(user, dockerfile)).read('seen'), 'v1\n');
  assert.equal(await (await buildText(user, dockerfile, { pull: true })).read('seen'), 'v2\n');
});

test('FROM a digest-pinned reference the store holds is never re-resolved, even with pull', async () => {
  const user = await dir('user-digest');
  const dockerfile = `FROM ${registry.host}/base/img@${v1Digest}\nRUN cat /v > /seen\n`;
  assert.equal(await (await buildText(user, dockerfile)).read('seen'), 'v1\n');
  await registry.kill();
  try {
    assert.equal(await (await buildText(user, dockerfile, { pull: true })).read('seen'), 'v1\n');
  } finally {
    await registry.restart();
  }
});

test('a docker-image:// build context names a registry image as a stage base', async () => {
  const user = await dir('user-context');
  const built = await buildText(user, 'FROM base\nRUN cat /v > /seen\n', { buildContexts: { base: `docker-image://${registry.host}/base/img:1` } });
  assert.equal(await built.read('seen'), 'v2\n');
});

test('--push sends the image to the registry of its tag, and kiln pull / kiln push copy it between stores and repositories', async () => {
  const tag = `${registry.host}/pushed/app:1`;
  const { result } = await buildText(publisher, 'FROM busybox:latest\nRUN echo pushed > /p\n', { tags: [tag], outputs: [{ type: 'registry' }] });
  // The digest the build reports for the push is the registry's manifest (not the store's: the push gzips layers).
  const atRegistry = JSON.parse((await execa('skopeo', ['inspect', '--tls-verify=false', `docker://${tag}`])).stdout) as { Digest: string };
  assert.equal(result.outputs[0]?.manifestDigest, atRegistry.Digest);
  assert.equal(result.metadata['containerimage.digest'], atRegistry.Digest);
  assert.equal(result.metadata['image.name'], tag);

  const kiln = promisify(execFile);
  const other = await dir('cli-store');
  const pulled = await kiln(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'cli', 'main.ts'), 'pull', '--root', other, tag], { cwd: repoRoot });
  const pulledDigest = pulled.stdout.trim() as Digest;
  const store = await LayerStore.open(other);
  assert.equal(await store.resolveTag(tag), pulledDigest);
  const image = await store.getImage(pulledDigest);
  assert.deepEqual(image.config.rootfs.diff_ids, result.layers.map((l) => l.diffId));

  const copy = `${registry.host}/copied/app:2`;
  const pushed = await kiln(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src', 'cli', 'main.ts'), 'push', '--root', other, tag, copy], { cwd: repoRoot });
  const inspected = JSON.parse((await execa('skopeo', ['inspect', '--tls-verify=false', `docker://${copy}`])).stdout) as { Digest: string; Layers: string[] };
  assert.equal(inspected.Digest, pushed.stdout.trim());
  assert.equal(inspected.Layers.length, image.manifest.layers.length);
});
