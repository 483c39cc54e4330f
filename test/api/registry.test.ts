/**
 * The registry API as a program uses it, from the package root, against a real registry (distribution 2.8 on
 * 127.0.0.1): push a built image, pull it into another store and run it there, push under another name, and log in
 * to a registry that wants credentials. Expected values come from the Dockerfile written here and from what the
 * registry itself reports (skopeo reads it).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { RegistryError, build, inspectImage, listImages, login, pull, push, run, type TransferEvent } from '../../src/index.js';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';

let work: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-api-registry-'));
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Builds `dockerfile` into the store at `root`, tagged `tag`. */
async function buildImage(root: string, tag: string, dockerfile: string): Promise<void> {
  const context = await mkdtemp(path.join(work, 'ctx-'));
  await writeFile(path.join(context, 'Dockerfile'), dockerfile);
  await build({ root, context, tags: [tag] });
}

/** The registry's own view of an image (its manifest digest and layers), through skopeo. */
async function atRegistry(ref: string): Promise<{ Digest: string; Layers: string[]; Env: string[] }> {
  return JSON.parse((await execa('skopeo', ['inspect', '--tls-verify=false', `docker://${ref}`])).stdout) as { Digest: string; Layers: string[]; Env: string[] };
}

describe('an open registry', () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startRegistry();
  });
  after(async () => {
    await registry?.stop();
  });

  test('push sends a built image, pull brings it into another store, and it runs there as built', async () => {
    const publisher = path.join(work, 'publisher');
    const ref = `${registry.host}/api/app:1`;
    await buildImage(publisher, ref, 'FROM busybox\nENV ORIGIN=publisher\nRUN echo pushed > /p\nCMD ["sh", "-c", "cat /p; echo $ORIGIN"]\n');

    const events: TransferEvent[] = [];
    const pushed = await push(ref, { root: publisher, onProgress: (e) => events.push(e) });
    const remote = await atRegistry(ref);
    assert.deepEqual(pushed, { ref, manifestDigest: remote.Digest });
    assert.ok(remote.Env.includes('ORIGIN=publisher'));
    // Every layer the registry holds was reported done.
    const done = new Set(events.filter((e) => e.type === 'blob-done').map((e) => e.digest));
    for (const layer of remote.Layers) assert.ok(done.has(layer as `sha256:${string}`), `${layer} reported`);

    const user = path.join(work, 'user');
    const pulled = await pull(ref, { root: user });
    assert.equal(pulled.manifestDigest, remote.Digest, 'the store keeps the manifest the registry has');
    assert.ok(pulled.config.config.Env?.includes('ORIGIN=publisher'));
    assert.ok((await listImages({ root: user })).some((i) => i.name === ref && i.manifestDigest === remote.Digest));
    let stdout = '';
    const ran = await run(ref, { root: user, network: 'none', onOutput: (chunk, stream) => (stream === 'stdout' ? (stdout += chunk) : undefined) });
    assert.deepEqual({ exitCode: ran.exitCode, stdout }, { exitCode: 0, stdout: 'pushed\npublisher\n' });

    // Pushed again under another name, from the store that pulled it: the same image at the registry.
    const copy = `${registry.host}/api/copy:2`;
    const again = await push(ref, { root: user, ref: copy });
    assert.equal(again.ref, copy);
    assert.equal((await atRegistry(copy)).Digest, again.manifestDigest);
    assert.equal(again.manifestDigest, remote.Digest);
  });

  test('pull of a tag the registry lacks fails with a RegistryError, and an abort stops a pull', async () => {
    const root = path.join(work, 'missing');
    await assert.rejects(pull(`${registry.host}/api/none:1`, { root }), RegistryError);
    const controller = new AbortController();
    const reason = new Error('stopped by the test');
    controller.abort(reason);
    await assert.rejects(pull(`${registry.host}/api/app:1`, { root, signal: controller.signal }), (err: unknown) => err === reason);
  });
});

describe('a registry that wants credentials', () => {
  const user = 'kiln';
  const password = 'api-s3cret';
  let registry: TestRegistry;
  before(async () => {
    registry = await startRegistry({ htpasswd: { user, password } });
  });
  after(async () => {
    await registry?.stop();
  });

  test('login refuses wrong credentials, stores accepted ones in Docker\'s config.json, and push uses them', async () => {
    const configDir = path.join(work, 'docker-config');
    await mkdir(configDir);
    const root = path.join(work, 'auth-store');
    const ref = `${registry.host}/private/app:1`;
    await buildImage(root, ref, 'FROM busybox\nRUN echo private > /secret\n');

    await assert.rejects(push(ref, { root, dockerConfigDir: configDir }), (err: unknown) => err instanceof RegistryError && err.status === 401);
    await assert.rejects(login(registry.host, { username: user, password: 'wrong' }, { configDir }), (err: unknown) => err instanceof RegistryError && err.status === 401);
    await login(registry.host, { username: user, password }, { configDir });
    // Docker's format: auths[HOST].auth is base64 of USER:PASSWORD.
    const config = JSON.parse(await readFile(path.join(configDir, 'config.json'), 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.equal(Buffer.from(config.auths[registry.host]?.auth ?? '', 'base64').toString(), `${user}:${password}`);

    const pushed = await push(ref, { root, dockerConfigDir: configDir });
    const other = path.join(work, 'auth-pull');
    const pulled = await pull(ref, { root: other, dockerConfigDir: configDir });
    assert.equal(pulled.manifestDigest, pushed.manifestDigest);
    assert.equal((await inspectImage(ref, { root: other })).configDigest, pulled.configDigest);
  });
});
