/**
 * A minimal HTTP/1.1 GET over a plain TCP socket, for blob downloads from plain-http (loopback or
 * insecure) registries, where node:http costs more CPU than the hashing and the disk writes together.
 *
 * The socket reads straight into 256 KiB segments (net's `onread`), so a read is one syscall of up to
 * 256 KiB into memory that is handed on as is: no 64 KiB buffer per read, no copy, no stream machinery.
 * A segment's body bytes leave as one chunk once the segment is full (chunked encoding's framing is
 * squeezed out in place). With a {@link BufferPool}, segments are reused once the consumer gives back
 * their chunk: fresh memory costs a page fault per 4 KiB, more than hashing it. The body is framed by Content-Length,
 * chunked transfer encoding, or the end of the connection; a body that ends early is an error, so a
 * caller can resume it with a Range request. One request per connection (`Connection: close`).
 */
import * as net from 'node:net';
import type { BufferPool } from '../buffer-pool.js';

/** A response whose body is read as it arrives. */
export interface RawResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: RawBody;
}

/** The body of a {@link RawResponse}: its chunks, each a fresh view the reader may keep. */
export interface RawBody extends AsyncIterable<Buffer> {
  /** Drops the rest of the body and closes the connection. */
  discard(): void;
}

/** Options of {@link rawGet}. */
export interface RawGetOptions {
  readonly signal?: AbortSignal | undefined;
  /** The connection is given up when silent this long, before or during the body. */
  readonly idleTimeoutMs: number;
  /** Where read segments come from; without one, each segment is fresh memory the consumer may keep. */
  readonly pool?: BufferPool | undefined;
}

/** Bytes of a socket read segment; a read gets a new segment when fewer than {@link MIN_READ} are left. */
export const SEGMENT_SIZE = 256 * 1024;

const MIN_READ = 64 * 1024;
/** The socket stops reading while this many body bytes wait for the consumer. */
const MAX_QUEUED = 2 * 1024 * 1024;
/** The status line and headers together may not be longer than this. */
const MAX_HEAD = 64 * 1024;

type Framing = { kind: 'length'; left: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };

/** Parses a response head (status line and header lines, without the blank line). */
function parseHead(text: string): { status: number; headers: Headers } {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (m?.[1] === undefined) throw new Error(`malformed HTTP status line: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed HTTP header line: ${JSON.stringify(line.slice(0, 80))}`);
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return { status: Number(m[1]), headers };
}

function framingOf(status: number, headers: Headers): Framing {
  if (status === 204 || status === 304) return { kind: 'none' };
  const te = headers.get('transfer-encoding');
  if (te !== null && /(?:^|,)\s*chunked\s*$/i.test(te)) return { kind: 'chunked' };
  const cl = headers.get('content-length');
  if (cl !== null) {
    if (!/^\d+$/.test(cl)) throw new Error(`invalid Content-Length: ${cl}`);
    return { kind: 'length', left: Number(cl) };
  }
  return { kind: 'close' };
}

/** Decodes a chunked body incrementally; `data` gets views of the input, never copies. */
class ChunkedDecoder {
  #state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  #line = '';
  #left = 0;

  get done(): boolean {
    return this.#state === 'done';
  }

  /** Feeds bytes; calls `data` for each run of body bytes in them. */
  push(buf: Buffer, data: (view: Buffer) => void): void {
    let i = 0;
    while (i < buf.length && this.#state !== 'done') {
      if (this.#state === 'data') {
        const n = Math.min(this.#left, buf.length - i);
        data(buf.subarray(i, i + n));
        i += n;
        this.#left -= n;
        if (this.#left === 0) this.#state = 'data-end';
        continue;
      }
      // Line-oriented states: the size line, the CRLF after a chunk's data, trailer lines.
      const nl = buf.indexOf(10, i);
      const end = nl < 0 ? buf.length : nl + 1;
      this.#line += buf.toString('latin1', i, end);
      i = end;
      if (this.#line.length > 4096) throw new Error('malformed chunked encoding: line too long');
      if (nl < 0) continue;
      const line = this.#line.replace(/\r?\n$/, '');
      this.#line = '';
      if (this.#state === 'data-end') {
        if (line !== '') throw new Error('malformed chunked encoding: no CRLF after chunk data');
        this.#state = 'size';
      } else if (this.#state === 'size') {
        const size = /^([0-9a-fA-F]{1,12})\s*(?:;.*)?$/.exec(line)?.[1];
        if (size === undefined) throw new Error(`malformed chunk size line: ${JSON.stringify(line.slice(0, 40))}`);
        this.#left = parseInt(size, 16);
        this.#state = this.#left === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        this.#state = 'done';
      }
    }
  }
}

/**
 * Sends `GET url` (http: only) with `headers` and resolves with the response once its head has arrived.
 * Rejects on a network error, an idle timeout, a malformed head or an abort (with `signal.reason`).
 */
export async function rawGet(url: URL, headers: Readonly<Record<string, string>>, options: RawGetOptions): Promise<RawResponse> {
  if (url.protocol !== 'http:') throw new Error(`rawGet speaks plain http only, not ${url.protocol}`);
  const { signal } = options;
  signal?.throwIfAborted();
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
  for (const [name, value] of Object.entries({ ...headers, connection: 'close' })) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new Error(`invalid HTTP header ${name}`);
    lines.push(`${name}: ${value}`);
  }
  const request = `${lines.join('\r\n')}\r\n\r\n`;

  return await new Promise<RawResponse>((resolve, reject) => {
    const { pool } = options;
    const newSegment = (): Buffer => (pool !== undefined ? pool.take() : Buffer.allocUnsafe(SEGMENT_SIZE));
    // The current segment: bytes [0, filled) were read; [bodyStart, bodyEnd) of them are body bytes.
    let segment = newSegment();
    let filled = 0;
    let bodyStart = 0;
    let bodyEnd = 0;
    let head: Buffer | undefined = Buffer.alloc(0);
    let framing: Framing = { kind: 'none' };
    let chunked: ChunkedDecoder | undefined;
    // Body chunks read but not yet taken by the consumer, and how the body ended.
    const queue: Buffer[] = [];
    let queued = 0;
    let ended = false;
    let failure: { error: unknown } | undefined;
    let wake: (() => void) | undefined;
    let responded = false;
    let received = 0;
    let paused = false;

    const notify = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const fail = (error: unknown): void => {
      if (ended || failure !== undefined) return;
      failure = { error };
      socket.destroy();
      if (!responded) reject(error);
      notify();
    };
    /** Hands the current segment's body bytes to the consumer and starts a new segment. */
    const retire = (): void => {
      if (bodyEnd > bodyStart) {
        queue.push(segment.subarray(bodyStart, bodyEnd));
        queued += bodyEnd - bodyStart;
      } else {
        pool?.give(segment);
      }
      segment = newSegment();
      filled = bodyStart = bodyEnd = 0;
    };
    const finish = (): void => {
      if (ended || failure !== undefined) return;
      retire();
      ended = true;
      socket.destroy();
      notify();
    };
    /** Appends body bytes (a view of the current segment at or after bodyEnd) to the segment's body run. */
    const append = (view: Buffer): void => {
      const at = view.byteOffset - segment.byteOffset;
      if (at !== bodyEnd) segment.copy(segment, bodyEnd, at, at + view.length);
      bodyEnd += view.length;
      received += view.length;
    };
    /** Handles body bytes of the current segment. */
    const onBody = (view: Buffer): void => {
      if (framing.kind === 'length') {
        const take = view.subarray(0, framing.left);
        framing.left -= take.length;
        append(take);
        if (framing.left === 0) finish();
      } else if (framing.kind === 'chunked') {
        chunked ??= new ChunkedDecoder();
        chunked.push(view, append);
        if (chunked.done) finish();
      } else if (framing.kind === 'close') {
        append(view);
      }
    };
    /** Handles bytes while the head is still incomplete, and the body bytes that followed it. */
    const onHead = (view: Buffer): void => {
      head = Buffer.concat([head ?? Buffer.alloc(0), view]);
      bodyStart = bodyEnd = filled;
      for (;;) {
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > MAX_HEAD) throw new Error(`HTTP response head longer than ${String(MAX_HEAD)} bytes`);
          return;
        }
        const parsed = parseHead(head.toString('latin1', 0, end));
        const rest = head.length - (end + 4);
        if (parsed.status >= 100 && parsed.status < 200) {
          // An interim answer (100 Continue …): the final one follows.
          head = head.subarray(end + 4);
          continue;
        }
        head = undefined;
        framing = framingOf(parsed.status, parsed.headers);
        responded = true;
        resolve({ status: parsed.status, headers: parsed.headers, body });
        if (framing.kind === 'none' || (framing.kind === 'length' && framing.left === 0)) {
          finish();
          return;
        }
        // The body bytes that came with the head are the tail of the current read, in `segment`.
        bodyStart = bodyEnd = filled - rest;
        if (rest > 0) onBody(segment.subarray(filled - rest, filled));
        return;
      }
    };

    const socket = net.connect({
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port !== '' ? Number(url.port) : 80,
      onread: {
        buffer: () => segment.subarray(filled),
        callback: (nread: number, buf: Uint8Array) => {
          if (ended || failure !== undefined) return false;
          const view = segment.subarray(filled, filled + nread);
          try {
            if (buf.buffer !== segment.buffer || buf.byteOffset !== view.byteOffset) throw new Error('internal error: a socket read landed outside the current segment');
            filled += nread;
            if (head !== undefined) onHead(view);
            else onBody(view);
            if (!ended && segment.length - filled < MIN_READ) retire();
          } catch (error) {
            fail(error);
            return false;
          }
          notify();
          // false stops the socket's reads until resume().
          paused = queued >= MAX_QUEUED && !ended;
          return !paused;
        },
      },
    });
    socket.setNoDelay(true);
    socket.setTimeout(options.idleTimeoutMs, () => fail(new Error(`no data for ${String(options.idleTimeoutMs / 1000)} s`)));
    socket.on('connect', () => socket.write(request));
    socket.on('error', fail);
    socket.on('end', () => {
      if (framing.kind === 'close' && head === undefined) finish();
      else fail(new Error(head !== undefined ? 'the connection closed before a response' : `the connection closed after ${String(received)} body bytes`));
    });
    socket.on('close', () => fail(new Error(`the connection closed after ${String(received)} body bytes`)));
    const onAbort = (): void => fail(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    // Reading starts at once: the 'end' event needs a flowing socket.
    socket.resume();

    async function* chunks(): AsyncGenerator<Buffer, void, undefined> {
      try {
        for (;;) {
          const next = queue.shift();
          if (next !== undefined) {
            queued -= next.length;
            if (paused && queued < MAX_QUEUED && failure === undefined) {
              paused = false;
              socket.resume();
            }
            yield next;
            continue;
          }
          if (failure !== undefined) throw failure.error;
          if (ended) return;
          await new Promise<void>((r) => {
            wake = r;
          });
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
        if (!ended) {
          failure ??= { error: new Error('body discarded') };
          socket.destroy();
        }
      }
    }
    const iterator = chunks();
    const body: RawBody = {
      [Symbol.asyncIterator]: () => iterator,
      discard: () => {
        void iterator.return(undefined);
        if (!ended) {
          failure ??= { error: new Error('body discarded') };
          socket.destroy();
          notify();
        }
        signal?.removeEventListener('abort', onAbort);
      },
    };
  });
}
