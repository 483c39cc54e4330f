import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { RegistryError } from '../../src/errors.js';
import { MEDIA_TYPES } from '../../src/oci/types.js';
import type { Digest } from '../../src/oci/types.js';
import { findCredentials, parseWwwAuthenticate } from '../../src/registry/auth.js';
import { login } from '../../src/registry/login.js';
import { pullImage } from '../../src/registry/pull.js';
import { pushImage } from '../../src/registry/push.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { makeStoreImage, makeTar, startRegistry } from '../helpers/registry.js';
import type { TestRegistry } from '../helpers/registry.js';

const sha = (b: Uint8Array | string): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test('WWW-Authenticate challenges are parsed with quoted, escaped and several parameters', () => {
  const [bearer, basic] = parseWwwAuthenticate(
    'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push", Basic realm="x \\"y\\""',
  );
  assert.deepEqual(bearer, {
    scheme: 'bearer',
    params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' },
  });
  assert.deepEqual(basic, { scheme: 'basic', params: { realm: 'x "y"' } });
});

describe('credentials from Docker config', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('auths entries are decoded, Docker Hub is found under its v1 URL, and a missing host has none', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kiln-dockercfg-'));
    dirs.push(dir);
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    await writeFile(
      join(dir, 'config.json'),
      JSON.stringify({ auths: { 'https://index.docker.io/v1/': { auth: b64('hub:pw:with:colons') }, 'http://reg.example:5000': { auth: b64('me:secret') } } }),
    );
    assert.deepEqual(await findCredentials('docker.io', { configDir: dir }), { username: 'hub', password: 'pw:with:colons' });
    assert.deepEqual(await findCredentials('reg.example:5000', { configDir: dir }), { username: 'me', password: 'secret' });
    assert.equal(await findCredentials('other.example', { configDir: dir }), undefined);
  });

  test('a credHelpers entry runs docker-credential-<name> get with the host on stdin', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kiln-dockercfg-'));
    dirs.push(dir);
    const helper = join(dir, 'docker-credential-kilntest');
    await writeFile(helper, '#!/bin/sh\nread host\nprintf \'{"ServerURL":"%s","Username":"helper-user","Secret":"for-%s"}\' "$host" "$host"\n');
    await chmod(helper, 0o755);
    await writeFile(join(dir, 'config.json'), JSON.stringify({ credHelpers: { 'reg.example': 'kilntest' }, auths: { 'reg.example': { auth: 'bm86bm8=' } } }));
    const oldPath = process.env['PATH'];
    process.env['PATH'] = `${dir}:${oldPath ?? ''}`;
    try {
      assert.deepEqual(await findCredentials('reg.example', { configDir: dir }), { username: 'helper-user', password: 'for-reg.example' });
    } finally {
      process.env['PATH'] = oldPath;
    }
  });
});

describe('basic auth against docker-registry with htpasswd', () => {
  let registry: TestRegistry;
  const dirs: string[] = [];
  before(async () => {
    registry = await startRegistry({ htpasswd: { user: 'kiln', password: 's3cret' } });
  });
  after(async () => {
    await registry.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('a push without credentials fails with a clear 401, and after login it succeeds', async () => {
    const root = await mkdtemp(join(tmpdir(), 'kiln-authstore-'));
    const cfg = await mkdtemp(join(tmpdir(), 'kiln-dockercfg-'));
    dirs.push(root, cfg);
    const store = await LayerStore.open(root);
    const image = await makeStoreImage(store, [{ 'secret.txt': 'behind auth\n' }]);
    const ref = `${registry.host}/private/app:v1`;
    await assert.rejects(pushImage(image, ref, store, { dockerConfigDir: cfg }), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.status, 401);
      assert.match(err.message, /HTTP 401.*authentication required; run kiln login/);
      return true;
    });
    await assert.rejects(login(registry.host, 'kiln', 'wrong', { configDir: cfg }), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.status, 401);
      assert.match(err.message, /credentials were refused/);
      return true;
    });
    await login(registry.host, 'kiln', 's3cret', { configDir: cfg });
    const written = JSON.parse(await readFile(join(cfg, 'config.json'), 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.equal(Buffer.from(written.auths[registry.host]?.auth ?? '', 'base64').toString(), 'kiln:s3cret');
    const digest = await pushImage(image, ref, store, { dockerConfigDir: cfg });
    const fresh = await LayerStore.open(join(root, 'second'));
    const pulled = await pullImage(ref, fresh, { dockerConfigDir: cfg });
    assert.equal(pulled.manifestDigest, digest);
  });
});

describe('bearer token flow', () => {
  let servers: Server[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const s of servers) s.close();
    servers = [];
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** A read-only fake registry whose token server (same port, /token) wants user "tok" with password "pw". */
  async function fakeTokenRegistry(): Promise<{ host: string; tokenRequests: URL[]; ref: string; diffId: Digest }> {
    const tar = await makeTar({ 'hello.txt': 'token flow\n' });
    const layer = gzipSync(tar);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha(tar)] } }));
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.dockerManifest,
        config: { mediaType: MEDIA_TYPES.dockerConfig, digest: sha(config), size: config.length },
        layers: [{ mediaType: MEDIA_TYPES.dockerLayerGzip, digest: sha(layer), size: layer.length }],
      }),
    );
    const blobs = new Map<string, Buffer>([
      [sha(config), config],
      [sha(layer), layer],
    ]);
    const tokenRequests: URL[] = [];
    let host = '';
    const issued = 'tkn-' + Math.random().toString(36).slice(2);
    const server = createServer((req: IncomingMessage, res) => {
      const url = new URL(req.url ?? '/', `http://${host}`);
      if (url.pathname === '/token') {
        tokenRequests.push(url);
        const want = `Basic ${Buffer.from('tok:pw').toString('base64')}`;
        if (req.headers.authorization !== want) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: issued, expires_in: 300 }));
        return;
      }
      if (req.headers.authorization !== `Bearer ${issued}`) {
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="http://${host}/token",service="fake-registry",scope="repository:team/app:pull"`,
          'content-type': 'application/json',
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
      const m = /^\/v2\/team\/app\/(manifests|blobs)\/(.+)$/.exec(url.pathname);
      const body = m?.[1] === 'manifests' ? manifest : m?.[2] !== undefined ? blobs.get(m[2]) : undefined;
      if (body === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'nope' }] }));
        return;
      }
      res.writeHead(200, { 'content-type': m?.[1] === 'manifests' ? MEDIA_TYPES.dockerManifest : 'application/octet-stream', 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    assert.ok(addr !== null && typeof addr === 'object');
    host = `127.0.0.1:${String(addr.port)}`;
    return { host, tokenRequests, ref: `${host}/team/app:latest`, diffId: sha(tar) };
  }

  test('a pull fetches a token for the repository scope with the stored credentials, once', async () => {
    const fake = await fakeTokenRegistry();
    const cfg = await mkdtemp(join(tmpdir(), 'kiln-dockercfg-'));
    const root = await mkdtemp(join(tmpdir(), 'kiln-tokstore-'));
    dirs.push(cfg, root);
    await writeFile(join(cfg, 'config.json'), JSON.stringify({ auths: { [fake.host]: { auth: Buffer.from('tok:pw').toString('base64') } } }));
    const store = await LayerStore.open(root);
    const image = await pullImage(fake.ref, store, { dockerConfigDir: cfg });
    assert.equal(image.config.rootfs.diff_ids[0], fake.diffId);
    assert.ok(await store.findLayerBlob(fake.diffId, 'none'));
    assert.equal(fake.tokenRequests.length, 1);
    assert.equal(fake.tokenRequests[0]?.searchParams.get('service'), 'fake-registry');
    assert.deepEqual(fake.tokenRequests[0]?.searchParams.getAll('scope'), ['repository:team/app:pull']);
  });

  test('a pull without credentials names the token server refusal', async () => {
    const fake = await fakeTokenRegistry();
    const root = await mkdtemp(join(tmpdir(), 'kiln-tokstore-'));
    dirs.push(root);
    const store = await LayerStore.open(root);
    await assert.rejects(pullImage(fake.ref, store, { credentials: null }), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.status, 401);
      assert.match(err.message, /token server .* refused anonymously/);
      return true;
    });
  });
});
