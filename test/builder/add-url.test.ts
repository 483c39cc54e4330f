/**
 * ADD of http(s) URLs against a server on 127.0.0.1 that counts what it is asked: names, modes and mtimes as
 * docker gives them, the cache keyed by content, and rebuilds that revalidate instead of downloading again.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { DockerfileError, StepFailedError } from '../../src/errors.js';
import { fetchUrlSource, urlFileName } from '../../src/net/http-source.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { sandbox, type Sandbox } from './helpers.js';

interface Served {
  body: string;
  etag?: string;
  lastModified?: string;
}

/** A file server over `files` (path → what it serves), answering conditional requests as HTTP says. */
function fileServer(files: Map<string, Served | { redirect: string } | { stall: true }>): { server: Server; log: Array<{ path: string; status: number; headers: IncomingMessage['headers'] }> } {
  const log: Array<{ path: string; status: number; headers: IncomingMessage['headers'] }> = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    const f = files.get(url.split('?')[0]!);
    const reply = (status: number, headers: Record<string, string>, body?: string): void => {
      log.push({ path: url, status, headers: req.headers });
      res.writeHead(status, headers);
      res.end(body);
    };
    if (f === undefined) return reply(404, {}, 'no such file');
    if (url.startsWith('/auth/') && req.headers.authorization !== `Basic ${Buffer.from('u:p w').toString('base64')}`) return reply(401, {}, 'who?');
    if ('redirect' in f) return reply(302, { location: f.redirect });
    if ('stall' in f) {
      log.push({ path: url, status: 200, headers: req.headers });
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part');
      return; // never ends: the client's idle timeout must fire
    }
    const headers: Record<string, string> = {};
    if (f.etag) headers.etag = f.etag;
    if (f.lastModified) headers['last-modified'] = f.lastModified;
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    if (f.etag && inm !== undefined) {
      if (inm.split(',').map((t) => t.trim()).includes(f.etag)) return reply(304, headers);
    } else if (f.lastModified && ims !== undefined && Date.parse(ims) >= Date.parse(f.lastModified)) {
      return reply(304, headers);
    }
    reply(200, headers, f.body);
  });
  return { server, log };
}

let sb: Sandbox;
let files: Map<string, Served | { redirect: string } | { stall: true }>;
let log: ReturnType<typeof fileServer>['log'];
let server: Server;
let base: string;
before(async () => {
  sb = await sandbox();
  files = new Map();
  ({ server, log } = fileServer(files));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await sb.cleanup();
});

const requestsFor = (p: string): typeof log => log.filter((l) => l.path === p);

test('ADD of a URL without --checksum downloads it as a 0600 file with the Last-Modified mtime; a rebuild revalidates with the ETag and reuses it', async () => {
  const lastModified = 'Wed, 21 Oct 2015 07:28:00 GMT';
  files.set('/etag/tool.sh', { body: 'v1\n', etag: '"v1"', lastModified });
  const ctx = await sb.context({});
  const text = `FROM busybox:latest\nADD ${base}/etag/tool.sh /opt/\nRUN stat -c '%a %u:%g %Y' /opt/tool.sh > /meta\n`;
  const first = await sb.build({ context: ctx, dockerfileText: text });
  assert.equal(await first.read('opt/tool.sh'), 'v1\n');
  assert.equal((await first.read('meta')).trim(), `600 0:0 ${Date.parse(lastModified) / 1000}`);
  assert.deepEqual(requestsFor('/etag/tool.sh').map((l) => l.status), [200]);

  // Unchanged on the server: one conditional request, a 304, and the step comes from the cache.
  const second = await sb.build({ context: ctx, dockerfileText: text });
  const reqs = requestsFor('/etag/tool.sh');
  assert.deepEqual(reqs.map((l) => l.status), [200, 304]);
  assert.equal(reqs[1]!.headers['if-none-match'], '"v1"');
  assert.ok(!second.ran(`ADD ${base}/etag/tool.sh /opt/`));
  assert.equal(second.result.manifestDigest, first.result.manifestDigest);
  assert.ok(second.events.some((e) => e.type === 'progress' && e.message === `${base}/etag/tool.sh: not modified, using the stored download`));

  // Changed on the server: downloaded again, a new layer with the new content.
  files.set('/etag/tool.sh', { body: 'v2\n', etag: '"v2"', lastModified });
  const third = await sb.build({ context: ctx, dockerfileText: text });
  assert.deepEqual(requestsFor('/etag/tool.sh').map((l) => l.status), [200, 304, 200]);
  assert.ok(third.ran(`ADD ${base}/etag/tool.sh /opt/`));
  assert.equal(await third.read('opt/tool.sh'), 'v2\n');
  assert.notEqual(third.result.layers.at(-2)!.diffId, first.result.layers.at(-2)!.diffId);
});

test('without an ETag a rebuild revalidates with If-Modified-Since; without either it downloads again but keys on the content', async () => {
  const lastModified = 'Thu, 01 Jan 2020 00:00:00 GMT';
  files.set('/lm/data.txt', { body: 'dated\n', lastModified });
  files.set('/plain/data.txt', { body: 'plain\n' });
  const ctx = await sb.context({});
  const text = `FROM busybox:latest\nADD ${base}/lm/data.txt /lm\nADD ${base}/plain/data.txt /plain\nRUN stat -c %Y /plain > /plain-mtime\n`;
  const first = await sb.build({ context: ctx, dockerfileText: text });
  assert.equal(await first.read('lm'), 'dated\n');
  // No Last-Modified: the epoch, as BuildKit sets it.
  assert.equal((await first.read('plain-mtime')).trim(), '0');
  const second = await sb.build({ context: ctx, dockerfileText: text });
  assert.deepEqual(requestsFor('/lm/data.txt').map((l) => l.status), [200, 304]);
  assert.equal(requestsFor('/lm/data.txt')[1]!.headers['if-modified-since'], lastModified);
  assert.deepEqual(requestsFor('/plain/data.txt').map((l) => l.status), [200, 200]);
  assert.equal(second.result.steps.filter((s) => !s.cached).length, 0);
});

test('the file is named from the URL path (decoded; __unnamed__ without one), and a destination without a slash is the file', async () => {
  assert.equal(urlFileName('http://h/a/b%20c.tgz?x=1'), 'b c.tgz');
  assert.equal(urlFileName('http://h/'), '__unnamed__');
  assert.equal(urlFileName('http://h/dir/'), 'dir');
  files.set('/', { body: 'root\n' });
  files.set('/names/old', { redirect: '/names/new.txt' });
  files.set('/names/new.txt', { body: 'moved\n' });
  const ctx = await sb.context({});
  const b = await sb.build({
    context: ctx,
    dockerfileText: `FROM busybox:latest\nADD ${base}/ /u/\nADD ${base}/names/old /r/\nADD --chmod=755 ${base}/names/new.txt /exact/name\nRUN stat -c %a /exact/name > /mode\n`,
  });
  assert.equal(await b.read('u/__unnamed__'), 'root\n');
  // A redirect is followed; the name still comes from the URL the Dockerfile wrote.
  assert.equal(await b.read('r/old'), 'moved\n');
  assert.equal(await b.read('exact/name'), 'moved\n');
  assert.equal((await b.read('mode')).trim(), '755');
});

test('a URL the server does not have fails the step at its line, naming the URL', async () => {
  const ctx = await sb.context({});
  await assert.rejects(
    sb.build({ context: ctx, dockerfileText: `FROM busybox:latest\nRUN true\nADD ${base}/missing.txt /m\n` }),
    (err: unknown) => err instanceof StepFailedError && err.range.start.line === 3 && err.message.includes(`${base}/missing.txt`) && /404/.test(err.message),
  );
});

test('with --checksum a rebuild asks the server nothing', async () => {
  files.set('/sum/pinned.bin', { body: 'pinned\n', etag: '"p"' });
  const sum = `sha256:${createHash('sha256').update('pinned\n').digest('hex')}`;
  const ctx = await sb.context({});
  const text = `FROM busybox:latest\nADD --checksum=${sum} ${base}/sum/pinned.bin /p/\n`;
  const first = await sb.build({ context: ctx, dockerfileText: text });
  assert.equal(await first.read('p/pinned.bin'), 'pinned\n');
  await sb.build({ context: ctx, dockerfileText: text, noCache: true });
  assert.equal(requestsFor('/sum/pinned.bin').length, 1);
});

test('a server that goes silent mid-body fails after the idle timeout, naming the URL', async () => {
  files.set('/stall', { stall: true });
  const store = await LayerStore.open(await sb.tempDir('store'));
  const started = Date.now();
  await assert.rejects(fetchUrlSource(store, `${base}/stall`, { idleTimeoutMs: 300 }), (err: unknown) => {
    assert.match((err as Error).message, new RegExp(`failed to fetch ${base}/stall: .*idle timeout`));
    return true;
  });
  assert.ok(Date.now() - started < 5000);
});

test('credentials in the URL are sent as Basic auth and never shown in errors', async () => {
  files.set('/auth/secret.txt', { body: 'classified\n' });
  const ctx = await sb.context({});
  const host = base.replace('http://', '');
  const b = await sb.build({ context: ctx, dockerfileText: `FROM busybox:latest\nADD http://u:p%20w@${host}/auth/secret.txt /s\n` });
  assert.equal(await b.read('s'), 'classified\n');
  await assert.rejects(
    sb.build({ context: ctx, dockerfileText: `FROM busybox:latest\nADD http://u:wrong@${host}/auth/secret.txt /s\n` }),
    (err: unknown) => err instanceof StepFailedError && /401/.test(err.message) && !err.message.includes('wrong') && err.message.includes('xxxxx'),
  );
});

test('--checksum takes exactly one http(s) source, as in BuildKit', async () => {
  const ctx = await sb.context({ 'local.txt': 'l' });
  const sum = `sha256:${'a'.repeat(64)}`;
  await assert.rejects(
    sb.build({ context: ctx, dockerfileText: `FROM busybox:latest\nADD --checksum=${sum} local.txt /l\n` }),
    (err: unknown) => err instanceof DockerfileError && /non-HTTP\(S\) sources/.test(err.message) && err.range.start.line === 2,
  );
  await assert.rejects(
    sb.build({ context: ctx, dockerfileText: `FROM busybox:latest\nADD --checksum=${sum} ${base}/a ${base}/b /d/\n` }),
    (err: unknown) => err instanceof DockerfileError && /multiple sources/.test(err.message),
  );
});
