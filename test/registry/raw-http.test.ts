/**
 * The raw HTTP/1.1 GET of plain-http blob downloads, against small servers that write exact bytes:
 * body framings (Content-Length, chunked, end of connection), interim answers, bodies cut short,
 * malformed answers, and reading through a segment pool with a slow consumer.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { after, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { BufferPool } from '../../src/buffer-pool.js';
import { SEGMENT_SIZE, rawGet } from '../../src/registry/raw-http.js';
import type { RawBody } from '../../src/registry/raw-http.js';

const servers: Array<Server | ReturnType<typeof createHttpServer>> = [];

after(() => {
  for (const s of servers) s.close();
});

/** A TCP server that answers each connection (once its request head arrived) with `answer`. */
async function rawServer(answer: (socket: Socket, request: string) => void): Promise<URL> {
  const server = createServer((socket) => {
    let request = '';
    socket.on('data', (d: Buffer) => {
      request += d.toString('latin1');
      if (request.includes('\r\n\r\n')) answer(socket, request);
    });
    socket.on('error', () => undefined);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return new URL(`http://127.0.0.1:${String(addr.port)}/v2/r/blobs/x?a=1`);
}

/** Writes pieces one event-loop turn apart, so they tend to arrive in separate reads. */
async function writePieces(socket: Socket, pieces: readonly (string | Buffer)[], end = true): Promise<void> {
  for (const p of pieces) {
    socket.write(p);
    await tick();
  }
  if (end) socket.end();
}

async function collect(body: RawBody): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

const opts = { idleTimeoutMs: 10_000 };

test('a Content-Length body is read whole, and the request carries the path, query, Host and headers', async () => {
  const data = randomBytes(700 * 1024 + 3);
  let seen = '';
  const url = await rawServer((socket, request) => {
    seen = request;
    void writePieces(socket, [`HTTP/1.1 200 OK\r\nContent-Length: ${String(data.length)}\r\nX-A: b\r\n\r\n`, data.subarray(0, 5), data.subarray(5)], false);
  });
  const r = await rawGet(url, { authorization: 'Bearer t', range: 'bytes=0-' }, opts);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-a'), 'b');
  assert.ok((await collect(r.body)).equals(data));
  assert.match(seen, /^GET \/v2\/r\/blobs\/x\?a=1 HTTP\/1\.1\r\n/);
  assert.match(seen, new RegExp(`\r\nHost: ${url.host}\r\n`));
  assert.match(seen, /\r\nauthorization: Bearer t\r\n/);
  assert.match(seen, /\r\nrange: bytes=0-\r\n/);
});

test('a chunked body is decoded across reads, with chunk extensions and trailers, after an interim 100 answer', async () => {
  const a = randomBytes(300 * 1024);
  const b = Buffer.from('tail bytes');
  const url = await rawServer((socket) => {
    const head = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
    const wire = Buffer.concat([Buffer.from(`${head}${a.length.toString(16)};ext=1\r\n`), a, Buffer.from(`\r\n${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n0\r\nX-Trailer: t\r\n\r\n')]);
    // Cut at awkward places: inside the head, the size line, the data and the final CRLFs.
    const cuts = [10, head.length + 3, head.length + 200, 150_000, wire.length - 4, wire.length];
    const pieces = cuts.map((end, i) => wire.subarray(i === 0 ? 0 : (cuts[i - 1] ?? 0), end));
    void writePieces(socket, pieces, false);
  });
  const r = await rawGet(url, {}, opts);
  assert.equal(r.status, 200);
  assert.ok((await collect(r.body)).equals(Buffer.concat([a, b])));
});

test('a body without length or chunking ends when the connection ends', async () => {
  const data = randomBytes(100_000);
  const url = await rawServer((socket) => {
    void writePieces(socket, ['HTTP/1.0 200 OK\r\n\r\n', data]);
  });
  const r = await rawGet(url, {}, opts);
  assert.ok((await collect(r.body)).equals(data));
});

test('a body cut short of its Content-Length is an error, not a short blob', async () => {
  const url = await rawServer((socket) => {
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
    socket.end(Buffer.alloc(400));
  });
  const r = await rawGet(url, {}, opts);
  await assert.rejects(collect(r.body), /closed after 400 body bytes/);
});

test('a malformed status line and a connection that closes before answering are rejected', async () => {
  const bad = await rawServer((socket) => socket.end('SPDY/3 200 OK\r\n\r\n'));
  await assert.rejects(rawGet(bad, {}, opts), /malformed HTTP status line/);
  const silent = await rawServer((socket) => socket.end());
  await assert.rejects(rawGet(silent, {}, opts), /closed before a response/);
});

test('header values with line breaks are refused before anything is sent', async () => {
  const url = await rawServer((socket) => socket.end('HTTP/1.1 204 No Content\r\n\r\n'));
  let connected = false;
  const server = (servers[servers.length - 1] as Server);
  server.once('connection', () => (connected = true));
  await assert.rejects(rawGet(url, { authorization: 'x\r\nevil: 1' }, opts), /invalid HTTP header/);
  assert.equal(connected, false);
});

test('through a pool, a slow consumer gets the body intact, in chunks of reused segments', async () => {
  const data = randomBytes(6 * 1024 * 1024 + 11);
  const server = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(data.length) });
    res.end(data);
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const pool = new BufferPool(SEGMENT_SIZE);
  const r = await rawGet(new URL(`http://127.0.0.1:${String(addr.port)}/b`), {}, { ...opts, pool });
  const hash = createHash('sha256');
  const segments = new Set<ArrayBufferLike>();
  let chunks = 0;
  for await (const c of r.body) {
    assert.ok(c.length <= SEGMENT_SIZE);
    hash.update(c);
    segments.add(c.buffer);
    chunks++;
    await tick(); // a slow consumer: the reader must wait for it rather than overwrite segments
    pool.give(c);
  }
  assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
  assert.ok(segments.size < chunks, `${String(chunks)} chunks in ${String(segments.size)} segments`);
});
