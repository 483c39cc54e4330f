/**
 * A client of the OCI distribution API (`/v2/`) for one registry host: manifests, blobs, uploads,
 * cross-repository mounts, with authentication, bounded retries and resumable blob downloads.
 *
 * Loopback registries (and those named in `insecureRegistries`) are spoken to over plain http,
 * every other registry over https.
 */
import { parseUntrustedJson } from '../untrusted-json.js';
import { sha256Digest } from '../oci/digest.js';
import { open } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { trustExtraCaCerts } from '../net/extra-ca.js';
import { setTimeout as delay } from 'node:timers/promises';
import { RegistryError, messageOf } from '../errors.js';
import { MEDIA_TYPES } from '../oci/types.js';
import { IMAGE_JSON_LIMITS } from '../image/limits.js';
import type { Descriptor, Digest, ImageIndex, ImageManifest, Platform } from '../oci/types.js';
import { Authenticator, findCredentials } from './auth.js';
import type { Credentials } from './auth.js';
import { rawGet } from './raw-http.js';
import type { RawBody } from './raw-http.js';
import type { BufferPool } from '../buffer-pool.js';
import { isLoopback, registryApiHost } from './reference.js';

/** Options of {@link RegistryClient}. */
export interface RegistryClientOptions {
  /** Registries (host or host:port) spoken to over plain http. Loopback hosts always are. @default [] */
  readonly insecureRegistries?: readonly string[];
  /** Credentials to use; `null` for anonymous. @default looked up in Docker's config.json */
  readonly credentials?: Credentials | null;
  /** Docker's config directory for the credential lookup. @default $DOCKER_CONFIG or ~/.docker */
  readonly dockerConfigDir?: string;
  /** Retries after a network error or a 5xx/429 answer. @default 3 */
  readonly retries?: number;
  /** First retry delay in ms; each retry doubles it. @default 250 */
  readonly retryDelayMs?: number;
  /** Blobs larger than this are uploaded in chunks (PATCH with Content-Range). @default 32 MiB */
  readonly chunkedThreshold?: number;
  /** Chunk size of chunked uploads. @default 16 MiB */
  readonly chunkSize?: number;
  /**
   * A transfer that moves no bytes for this long fails (connecting, waiting for an answer, a body that stops
   * mid-way, an upload the registry stops reading), naming the registry and what was being transferred.
   * Failed transfers are retried within `retries`. @default 30 s, or `KILN_REGISTRY_TIMEOUT` (seconds)
   */
  readonly idleTimeoutMs?: number;
}

/** The default of {@link RegistryClientOptions.idleTimeoutMs}. */
export const DEFAULT_REGISTRY_IDLE_TIMEOUT_MS = 30_000;

/** The idle timeout from the options, else `KILN_REGISTRY_TIMEOUT` (seconds), else the default. */
export function registryIdleTimeoutMs(options: RegistryClientOptions, env: NodeJS.ProcessEnv = process.env): number {
  if (options.idleTimeoutMs !== undefined) return options.idleTimeoutMs;
  const text = env['KILN_REGISTRY_TIMEOUT'];
  if (text !== undefined && text !== '') {
    const seconds = Number(text);
    if (!Number.isFinite(seconds) || seconds <= 0) throw new RegistryError(`KILN_REGISTRY_TIMEOUT must be a positive number of seconds, not "${text}"`);
    return seconds * 1000;
  }
  return DEFAULT_REGISTRY_IDLE_TIMEOUT_MS;
}

/**
 * An idle timer for one transfer: `signal` aborts (with a RegistryError saying what stalled) once `touch` has
 * not been called for `ms`, and also when `parent` aborts (with its reason). `stop` disarms it.
 */
export class IdleTimer {
  readonly #controller = new AbortController();
  readonly #ms: number;
  readonly #message: () => string;
  #timer: NodeJS.Timeout | undefined;
  readonly signal: AbortSignal;
  constructor(ms: number, message: () => string, parent?: AbortSignal) {
    this.#ms = ms;
    this.#message = message;
    this.signal = parent !== undefined ? AbortSignal.any([parent, this.#controller.signal]) : this.#controller.signal;
    this.touch();
  }
  /** Bytes moved: the silence starts again. */
  touch(): void {
    if (this.#controller.signal.aborted) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#controller.abort(new RegistryError(this.#message())), this.#ms);
    // An armed timer alone does not keep the process alive.
    this.#timer.unref();
  }
  stop(): void {
    clearTimeout(this.#timer);
  }
  /** Whether it fired (rather than the parent aborting). */
  get fired(): boolean {
    return this.#controller.signal.aborted;
  }
}

/** A request body as a stream of slices, touching `timer` as the connection takes each one. */
function timedBody(data: Buffer, timer: IdleTimer): ReadableStream<Uint8Array> {
  const SLICE = 64 * 1024;
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      timer.touch();
      if (at >= data.length) {
        controller.close();
        return;
      }
      controller.enqueue(data.subarray(at, at + SLICE));
      at += SLICE;
    },
  }, { highWaterMark: 0 });
}

/** Reads a fetch response's body whole (at most `limit` bytes), touching `timer` per chunk. */
async function readBody(response: Response, timer: IdleTimer, limit: number, what: string): Promise<Buffer> {
  if (response.body === null) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const parts: Buffer[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    timer.touch();
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new RegistryError(`${what}: the response is larger than kiln's limit of ${String(limit)} bytes`, response.status);
    }
    parts.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
  }
  return Buffer.concat(parts, size);
}

/** The Accept header for manifests: OCI and Docker v2, single-platform and lists. */
export const MANIFEST_ACCEPT = [
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.dockerManifest,
  MEDIA_TYPES.dockerManifestList,
].join(', ');

/** A manifest as fetched: its exact bytes (the digest is over these), media type and digest. */
export interface FetchedManifest {
  readonly bytes: Buffer;
  readonly mediaType: string;
  readonly digest: Digest;
}

/** Random access to a blob's bytes, for uploads that may need to resend a part. */
export interface BlobSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

/** An upload in progress whose bytes are streamed as they are produced (see {@link RegistryClient.openUploadStream}). */
export interface BlobUploadStream {
  /** Sends the next bytes; resolves when the connection can take more. */
  write(chunk: Uint8Array): Promise<void>;
  /** Ends the body and completes the upload as `digest`; fails unless exactly `size` bytes were written. */
  finish(digest: Digest, size: number): Promise<void>;
  /** Abandons the upload (the registry never makes a blob of it). Never throws. */
  abort(): Promise<void>;
}

/** A {@link BlobSource} reading a file. */
export function fileBlobSource(path: string, size: number): BlobSource {
  return {
    size,
    async read(offset, length) {
      const fh = await open(path, 'r');
      try {
        const buf = Buffer.allocUnsafe(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
          if (bytesRead === 0) throw new Error(`${path} is shorter than expected`);
          done += bytesRead;
        }
        return buf;
      } finally {
        await fh.close();
      }
    },
  };
}

/** Parses `os/arch[/variant]`. */
export function parsePlatform(text: string): Platform {
  const [os, architecture, variant] = text.split('/');
  if (os === undefined || os === '' || architecture === undefined || architecture === '') throw new Error(`invalid platform "${text}" (want os/arch[/variant])`);
  return variant !== undefined && variant !== '' ? { os, architecture, variant } : { os, architecture };
}

/** Picks the manifest for a platform from an index; arm64's default variant is v8. */
export function selectPlatform(index: ImageIndex, platform: Platform): Descriptor | undefined {
  const norm = (p: Platform): string => {
    const variant = p.variant ?? (p.architecture === 'arm64' ? 'v8' : '');
    return `${p.os}/${p.architecture}/${variant}`;
  };
  const candidates = index.manifests.filter((m) => m.platform !== undefined && m.platform.os === platform.os && m.platform.architecture === platform.architecture);
  const exact = candidates.find((m) => m.platform !== undefined && norm(m.platform) === norm(platform));
  if (exact !== undefined) return exact;
  return platform.variant === undefined ? candidates[0] : undefined;
}

/** Whether a media type (or a parsed manifest lacking one) is an index / manifest list. */
export function isIndex(mediaType: string, parsed?: unknown): boolean {
  if (mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerManifestList) return true;
  return parsed !== undefined && typeof parsed === 'object' && parsed !== null && 'manifests' in parsed && !('config' in parsed);
}

interface RequestOptions {
  readonly repo: string;
  /** Token scope actions: `pull` or `pull,push`; extra scopes (a mount's source) are appended. */
  readonly actions: string;
  readonly extraScopes?: readonly string[];
  readonly headers?: Record<string, string>;
  /** Called for each attempt, so a retried request sends its body again. */
  readonly body?: () => Buffer;
  readonly signal?: AbortSignal | undefined;
  /** Retry network errors and 5xx answers. @default true */
  readonly retry?: boolean;
  /** What the request is for, in error messages. */
  readonly what: string;
  /** The most response body bytes read (the answer is read whole, under the idle timer). @default 1 MiB */
  readonly maxBody?: number;
}

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** Redirects followed by a blob download (a registry may send blob GETs on to a CDN). */
const MAX_REDIRECTS = 10;

/**
 * An answer whose body is read as it arrives. Blob downloads use {@link rawGet} over plain http and
 * node:http over https: both cost far less CPU than fetch's web streams.
 */
interface StreamResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: RawBody;
}

/** A node:http answer as a {@link StreamResponse}. */
function fromIncoming(res: http.IncomingMessage): StreamResponse {
  return {
    status: res.statusCode ?? 0,
    headers: toHeaders(res.headers),
    body: { [Symbol.asyncIterator]: () => res[Symbol.asyncIterator]() as AsyncIterator<Buffer>, discard: () => res.resume() },
  };
}

function toHeaders(raw: http.IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  return headers;
}

/**
 * One GET; rejects on a network error, an idle timeout or an abort. Plain http goes through {@link rawGet},
 * https through node:http.
 */
async function sendGet(url: URL, headers: Record<string, string>, signal: AbortSignal | undefined, pool: BufferPool | undefined, idleMs: number): Promise<StreamResponse> {
  if (url.protocol === 'http:') return rawGet(url, headers, { signal, idleTimeoutMs: idleMs, pool });
  return fromIncoming(await sendNodeGet(url, headers, signal, idleMs));
}

/** One GET over node:http(s). */
function sendNodeGet(url: URL, headers: Record<string, string>, signal: AbortSignal | undefined, idleMs: number): Promise<http.IncomingMessage> {
  if (url.protocol === 'https:') trustExtraCaCerts(); // e.g. a loopback registry redirecting to https storage
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? https.request : http.request;
    const req = send(url, { method: 'GET', headers, ...(signal !== undefined ? { signal } : {}) }, (res) => {
      res.setTimeout(idleMs, () => res.destroy(new Error(`no data for ${String(idleMs / 1000)} s`)));
      resolve(res);
    });
    req.setTimeout(idleMs, () => req.destroy(new Error(`no answer for ${String(idleMs / 1000)} s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Reads a (failed) answer's body, for its error message; a body that breaks just ends the text. */
async function bodyText(body: RawBody): Promise<string> {
  const parts: Buffer[] = [];
  try {
    for await (const chunk of body) parts.push(chunk);
  } catch {
    // what arrived is enough for a message
  }
  return Buffer.concat(parts).toString('utf8');
}

/** A client of one registry's distribution API. */
export class RegistryClient {
  /** The registry as named in references (`docker.io`, `127.0.0.1:5000`). */
  readonly registry: string;
  /** `http://host:port` or `https://host`. */
  readonly baseUrl: string;
  readonly #options: RegistryClientOptions;
  readonly #idleMs: number;
  #auth: Authenticator | undefined;

  constructor(registry: string, options: RegistryClientOptions = {}) {
    this.registry = registry;
    this.#options = options;
    this.#idleMs = registryIdleTimeoutMs(options);
    const host = registryApiHost(registry);
    const insecure = isLoopback(host) || (options.insecureRegistries ?? []).includes(registry) || (options.insecureRegistries ?? []).includes(host);
    this.baseUrl = `${insecure ? 'http' : 'https'}://${host}`;
    // Any but a loopback registry may send kiln to https (itself, a token realm, a redirect to blob storage).
    if (!isLoopback(host)) trustExtraCaCerts();
  }

  async #authenticator(): Promise<Authenticator> {
    if (this.#auth === undefined) {
      const opt = this.#options.credentials;
      const credentials = opt === null ? undefined : (opt ?? (await findCredentials(this.registry, this.#options.dockerConfigDir !== undefined ? { configDir: this.#options.dockerConfigDir } : {})));
      this.#auth ??= new Authenticator(credentials, (url, init) => {
        if (url.startsWith('https:')) trustExtraCaCerts(); // a loopback registry's token realm may be https
        // A token answer is small: the whole exchange (answer and body) gets one idle period.
        const timeout = AbortSignal.timeout(this.#idleMs);
        return fetch(url, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout });
      });
    }
    return this.#auth;
  }

  #url(pathOrUrl: string): string {
    return new URL(pathOrUrl, this.baseUrl).toString();
  }

  /**
   * Sends a request with auth, retrying network errors and 5xx answers with backoff (bounded). The answer's
   * body is read whole (at most `maxBody` bytes) under the idle timer, so the Response returned is complete.
   */
  async #request(method: string, pathOrUrl: string, opts: RequestOptions): Promise<Response> {
    const auth = await this.#authenticator();
    const scope = [...(opts.repo !== '' ? [`repository:${opts.repo}:${opts.actions}`] : []), ...(opts.extraScopes ?? [])].join(' ');
    const retries = opts.retry === false ? 0 : (this.#options.retries ?? 3);
    const baseDelay = this.#options.retryDelayMs ?? 250;
    const url = this.#url(pathOrUrl);
    let authHeader = auth.cachedHeader(scope);
    let authTried = false;
    for (let attempt = 0; ; attempt++) {
      opts.signal?.throwIfAborted();
      const headers: Record<string, string> = { ...opts.headers };
      if (authHeader !== undefined) headers['authorization'] = authHeader;
      const body = opts.body?.();
      const timer = new IdleTimer(this.#idleMs, () => `${opts.what}: no data from registry ${this.registry} for ${String(this.#idleMs / 1000)} s`, opts.signal);
      let response: Response;
      try {
        const sent = await fetch(url, {
          method,
          headers,
          redirect: 'follow',
          ...(body !== undefined ? { body: timedBody(body, timer), duplex: 'half' } : {}),
          signal: timer.signal,
        } as RequestInit);
        timer.touch();
        const bytes = method === 'HEAD' ? Buffer.alloc(0) : await readBody(sent, timer, opts.maxBody ?? 1 << 20, opts.what);
        const nullBody = method === 'HEAD' || [101, 204, 205, 304].includes(sent.status);
        response = new Response(nullBody ? null : bytes, { status: sent.status, statusText: sent.statusText, headers: sent.headers });
      } catch (cause) {
        if (cause instanceof RegistryError && !timer.fired) throw cause; // a body over the limit
        await this.#afterNetworkError(timer.fired ? timer.signal.reason : cause, attempt, retries, baseDelay, opts);
        continue;
      } finally {
        timer.stop();
      }
      if (response.status === 401 && !authTried) {
        authTried = true;
        const header = await auth.respond(response.headers.get('www-authenticate'), scope, opts.signal);
        if (header !== undefined) {
          await response.body?.cancel().catch(() => {});
          authHeader = header;
          attempt--;
          continue;
        }
      }
      if (RETRYABLE_STATUS.has(response.status) && attempt < retries) {
        await response.body?.cancel().catch(() => {});
        await delay(baseDelay * 2 ** attempt, undefined, opts.signal !== undefined ? { signal: opts.signal } : {});
        continue;
      }
      return response;
    }
  }

  /**
   * A GET like {@link RegistryClient.#request} (auth, bounded retries of network errors and 5xx answers,
   * redirects) whose body is a node stream. The Authorization header is not sent to another origin.
   */
  /** After a network failure: waits before the next attempt, or throws when none is left (or on abort). */
  async #afterNetworkError(cause: unknown, attempt: number, retries: number, baseDelay: number, opts: { what: string; signal?: AbortSignal | undefined }): Promise<void> {
    if (opts.signal?.aborted === true) throw opts.signal.reason;
    if (attempt >= retries) {
      if (cause instanceof RegistryError) throw cause; // an idle timeout: its message says what stalled
      throw new RegistryError(`${opts.what}: cannot reach registry ${this.registry}: ${networkMessage(cause)}`, undefined, { cause });
    }
    await delay(baseDelay * 2 ** attempt, undefined, opts.signal !== undefined ? { signal: opts.signal } : {});
  }

  async #getStream(pathOrUrl: string, opts: Omit<RequestOptions, 'body'>, pool?: BufferPool): Promise<StreamResponse> {
    const auth = await this.#authenticator();
    const scope = [...(opts.repo !== '' ? [`repository:${opts.repo}:${opts.actions}`] : []), ...(opts.extraScopes ?? [])].join(' ');
    const retries = opts.retry === false ? 0 : (this.#options.retries ?? 3);
    const baseDelay = this.#options.retryDelayMs ?? 250;
    const start = new URL(this.#url(pathOrUrl));
    let authHeader = auth.cachedHeader(scope);
    let authTried = false;
    for (let attempt = 0; ; attempt++) {
      let url = start;
      let res: StreamResponse;
      try {
        for (let redirects = 0; ; redirects++) {
          opts.signal?.throwIfAborted();
          const headers: Record<string, string> = { ...opts.headers };
          if (authHeader !== undefined && url.origin === start.origin) headers['authorization'] = authHeader;
          res = await sendGet(url, headers, opts.signal, pool, this.#idleMs);
          const location = res.headers.get('location');
          if (![301, 302, 303, 307, 308].includes(res.status) || location === null) break;
          res.body.discard();
          if (redirects >= MAX_REDIRECTS) throw new Error(`more than ${String(MAX_REDIRECTS)} redirects`);
          url = new URL(location, url);
        }
      } catch (cause) {
        await this.#afterNetworkError(cause, attempt, retries, baseDelay, opts);
        continue;
      }
      const status = res.status;
      if (status === 401 && !authTried) {
        authTried = true;
        const header = await auth.respond(res.headers.get('www-authenticate'), scope, opts.signal);
        if (header !== undefined) {
          res.body.discard();
          authHeader = header;
          attempt--;
          continue;
        }
      }
      if (RETRYABLE_STATUS.has(status) && attempt < retries) {
        res.body.discard();
        await delay(baseDelay * 2 ** attempt, undefined, opts.signal !== undefined ? { signal: opts.signal } : {});
        continue;
      }
      return res;
    }
  }

  /** {@link RegistryClient.#error} for a streamed answer. */
  async #streamError(r: StreamResponse, what: string): Promise<RegistryError> {
    const text = await bodyText(r.body);
    return this.#error(new Response(text, { status: r.status, headers: r.headers }), what);
  }

  /** Turns a failed response into a RegistryError naming the status and the registry's error codes. */
  async #error(response: Response, what: string): Promise<RegistryError> {
    const text = await response.text().catch(() => '');
    let detail = '';
    try {
      const json = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> };
      detail = (json.errors ?? []).map((e) => [e.code, e.message].filter((x) => x !== undefined && x !== '').join(': ')).join('; ');
    } catch {
      detail = text.trim().split('\n')[0]?.slice(0, 200) ?? '';
    }
    let hint = '';
    if (response.status === 401) {
      const auth = await this.#authenticator();
      hint = auth.hasCredentials ? ' (the credentials were refused)' : ` (authentication required; run kiln login ${this.registry})`;
    }
    return new RegistryError(`${what}: HTTP ${String(response.status)}${detail !== '' ? ` ${detail}` : ''}${hint}`, response.status);
  }

  /** GET /v2/ — checks that the registry answers and that the credentials (if any) are accepted. */
  async ping(signal?: AbortSignal): Promise<void> {
    const r = await this.#request('GET', '/v2/', { repo: '', actions: 'pull', signal, what: `ping ${this.registry}` });
    if (!r.ok) throw await this.#error(r, `ping ${this.registry}`);
    await r.body?.cancel().catch(() => {});
  }

  /** Fetches a manifest (or index) by tag or digest; the digest is verified when the reference is one. */
  async getManifest(repo: string, reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const what = `get manifest ${this.registry}/${repo}:${reference}`;
    const r = await this.#request('GET', `/v2/${repo}/manifests/${reference}`, { repo, actions: 'pull', headers: { accept: MANIFEST_ACCEPT }, signal, what, maxBody: IMAGE_JSON_LIMITS.manifest });
    if (!r.ok) throw await this.#error(r, what);
    const bytes = Buffer.from(await r.arrayBuffer());
    const digest = sha256Digest(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) throw new RegistryError(`${what}: content digest is ${digest}`, r.status);
    let mediaType = (r.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
    try {
      const parsed = JSON.parse(bytes.toString('utf8')) as { mediaType?: string };
      if (typeof parsed.mediaType === 'string') mediaType = parsed.mediaType;
      else if (mediaType === '' || mediaType === 'application/json') mediaType = isIndex('', parsed) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
    } catch (cause) {
      throw new RegistryError(`${what}: manifest is not JSON`, r.status, { cause });
    }
    return { bytes, mediaType, digest };
  }

  /** HEAD of a manifest: its digest, media type and size, or undefined when the registry has none. */
  async headManifest(repo: string, reference: string, signal?: AbortSignal): Promise<{ digest: Digest; mediaType: string; size: number } | undefined> {
    const what = `head manifest ${this.registry}/${repo}:${reference}`;
    const r = await this.#request('HEAD', `/v2/${repo}/manifests/${reference}`, { repo, actions: 'pull', headers: { accept: MANIFEST_ACCEPT }, signal, what });
    if (r.status === 404) return undefined;
    if (!r.ok) throw await this.#error(r, what);
    const digest = r.headers.get('docker-content-digest');
    if (digest === null) return undefined;
    return { digest: digest as Digest, mediaType: r.headers.get('content-type') ?? '', size: Number(r.headers.get('content-length') ?? 0) };
  }

  /**
   * Resolves a reference to the single-platform manifest for `platform`: an index / manifest list is
   * followed to the matching entry. Returns the index too when there was one.
   */
  async resolveManifest(repo: string, reference: string, platform: Platform, signal?: AbortSignal): Promise<{ index?: FetchedManifest; manifest: FetchedManifest; parsed: ImageManifest }> {
    const first = await this.getManifest(repo, reference, signal);
    const json = parseUntrustedJson(first.bytes.toString('utf8'), `manifest ${this.registry}/${repo}:${reference}`);
    if (!isIndex(first.mediaType, json)) return { manifest: first, parsed: checkManifest(json, `${this.registry}/${repo}:${reference}`) };
    const entry = selectPlatform(json as ImageIndex, platform);
    if (entry === undefined) {
      const have = (json as ImageIndex).manifests.map((m) => (m.platform !== undefined ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant !== undefined ? `/${m.platform.variant}` : ''}` : '?')).join(', ');
      const want = `${platform.os}/${platform.architecture}${platform.variant !== undefined ? `/${platform.variant}` : ''}`;
      throw new RegistryError(`${this.registry}/${repo}:${reference} has no image for platform ${want} (it has: ${have})`);
    }
    const manifest = await this.getManifest(repo, entry.digest, signal);
    const parsed = parseUntrustedJson(manifest.bytes.toString('utf8'), `manifest ${this.registry}/${repo}@${entry.digest}`);
    if (isIndex(manifest.mediaType, parsed)) throw new RegistryError(`${this.registry}/${repo}@${entry.digest}: nested indexes are not supported`);
    return { index: first, manifest, parsed: checkManifest(parsed, `${this.registry}/${repo}@${entry.digest}`) };
  }

  /** HEAD of a blob: its size, or undefined when the repository does not have it. */
  async headBlob(repo: string, digest: Digest, signal?: AbortSignal): Promise<number | undefined> {
    const what = `head blob ${this.registry}/${repo}@${digest}`;
    const r = await this.#request('HEAD', `/v2/${repo}/blobs/${digest}`, { repo, actions: 'pull', signal, what });
    if (r.status === 404) return undefined;
    if (!r.ok) throw await this.#error(r, what);
    return Number(r.headers.get('content-length') ?? 0);
  }

  /**
   * Streams a blob. A connection that breaks mid-body is resumed with a Range request (or, when the
   * server ignores Range, by skipping what was already received), up to the retry bound. With `pool`,
   * chunks read over plain http are views of the pool's segments: give each back with
   * `pool.give(chunk)` once done with it (see {@link BufferPool}).
   */
  async *getBlob(repo: string, digest: Digest, signal?: AbortSignal, options: { pool?: BufferPool } = {}): AsyncGenerator<Uint8Array, void, undefined> {
    const what = `get blob ${this.registry}/${repo}@${digest}`;
    const retries = this.#options.retries ?? 3;
    const baseDelay = this.#options.retryDelayMs ?? 250;
    let received = 0;
    let failures = 0;
    for (;;) {
      const headers: Record<string, string> = received > 0 ? { range: `bytes=${String(received)}-` } : {};
      const r = await this.#getStream(`/v2/${repo}/blobs/${digest}`, { repo, actions: 'pull', headers, signal, what }, options.pool);
      if (r.status < 200 || r.status > 299) throw await this.#streamError(r, what);
      let skip = 0;
      if (received > 0) {
        const start = /^bytes (\d+)-/.exec(r.headers.get('content-range') ?? '')?.[1];
        if (r.status === 206 && start !== undefined && Number(start) !== received) {
          throw new RegistryError(`${what}: resumed at byte ${start}, wanted ${String(received)}`, r.status);
        }
        if (r.status === 200) skip = received;
      }
      let progressed = false;
      try {
        for await (const chunk of r.body) {
          let c = chunk;
          if (skip > 0) {
            const n = Math.min(skip, c.length);
            skip -= n;
            c = c.subarray(n);
            if (c.length === 0) continue;
          }
          received += c.length;
          progressed = true;
          yield c;
        }
        return;
      } catch (cause) {
        if (signal?.aborted === true) throw signal.reason;
        if (progressed) failures = 0;
        if (failures >= retries) throw new RegistryError(`${what}: connection broke after ${String(received)} bytes: ${networkMessage(cause)}`, undefined, { cause });
        await delay(baseDelay * 2 ** failures, undefined, signal !== undefined ? { signal } : {});
        failures++;
      }
    }
  }

  /**
   * Tries to mount a blob from another repository of the same registry. Returns true when mounted;
   * otherwise the upload session the registry opened instead (the registry may ignore the mount).
   */
  async mountBlob(repo: string, digest: Digest, from: string, signal?: AbortSignal): Promise<{ mounted: true } | { mounted: false; location: string }> {
    const what = `mount blob ${digest} from ${from} into ${this.registry}/${repo}`;
    const qs = new URLSearchParams({ mount: digest, from }).toString();
    const r = await this.#request('POST', `/v2/${repo}/blobs/uploads/?${qs}`, {
      repo,
      actions: 'pull,push',
      extraScopes: [`repository:${from}:pull`],
      headers: { 'content-length': '0' },
      signal,
      what,
    });
    await r.body?.cancel().catch(() => {});
    if (r.status === 201) return { mounted: true };
    if (r.status === 202) return { mounted: false, location: this.#location(r, what) };
    throw await this.#error(r, what);
  }

  #location(r: Response, what: string): string {
    const loc = r.headers.get('location');
    if (loc === null) throw new RegistryError(`${what}: the registry sent no upload Location`, r.status);
    return new URL(loc, this.baseUrl).toString();
  }

  /** Opens an upload session (POST /blobs/uploads/) and returns its location. */
  async startUpload(repo: string, signal?: AbortSignal): Promise<string> {
    const what = `start upload to ${this.registry}/${repo}`;
    const r = await this.#request('POST', `/v2/${repo}/blobs/uploads/`, { repo, actions: 'pull,push', headers: { 'content-length': '0' }, signal, what });
    if (r.status !== 202) throw await this.#error(r, what);
    await r.body?.cancel().catch(() => {});
    return this.#location(r, what);
  }

  /**
   * Opens a streaming upload for a blob whose digest is not known yet (a layer being compressed): the bytes
   * given to `write` go out at once in a single PATCH (chunked transfer encoding, as Docker sends), and
   * `finish` completes the upload with the digest, which the registry verifies. A streamed body cannot be
   * sent again, so nothing here is retried: on failure the caller uploads the stored blob with
   * {@link RegistryClient.uploadBlob} instead.
   */
  async openUploadStream(repo: string, signal?: AbortSignal): Promise<BlobUploadStream> {
    const what = `upload blob to ${this.registry}/${repo}`;
    const location = await this.startUpload(repo, signal);
    const auth = (await this.#authenticator()).cachedHeader(`repository:${repo}:pull,push`);
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const writer = writable.getWriter();
    if (location.startsWith('https:')) trustExtraCaCerts();
    // The idle timer runs only while kiln waits on the registry (a write it does not take, the answer at the
    // end), not while the caller is still producing the bytes.
    const timer = new IdleTimer(this.#idleMs, () => `${what}: registry ${this.registry} took no data for ${String(this.#idleMs / 1000)} s`, signal);
    timer.stop();
    const stalled = (): unknown => (timer.fired ? timer.signal.reason : undefined);
    const patch = fetch(location, {
      method: 'PATCH',
      headers: { 'content-type': 'application/octet-stream', ...(auth !== undefined ? { authorization: auth } : {}) },
      body: readable,
      duplex: 'half',
      signal: timer.signal,
    } as RequestInit);
    // The registry may answer (an error) or drop the connection before the body ends; then the body is no
    // longer read, and a write waiting for room must not wait forever.
    const answered = patch.then(
      () => 'answered' as const,
      () => 'answered' as const,
    );
    let sent = 0;
    return {
      write: async (chunk) => {
        timer.touch();
        const wrote = writer.write(chunk).then(() => 'written' as const);
        wrote.catch(() => undefined);
        const outcome = await Promise.race([wrote, answered]);
        timer.stop();
        if (outcome !== 'written') throw stalled() ?? new RegistryError(`${what}: the registry ended the upload early`);
        sent += chunk.byteLength;
      },
      finish: async (digest, size) => {
        const whatBlob = `upload blob ${digest} to ${this.registry}/${repo}`;
        if (size !== sent) throw new RegistryError(`${whatBlob}: streamed ${String(sent)} bytes, the blob has ${String(size)}`);
        timer.touch();
        try {
          let r: Response;
          try {
            await Promise.race([writer.close(), answered]);
            r = await patch;
          } catch (cause) {
            throw stalled() ?? new RegistryError(`${whatBlob}: ${networkMessage(cause)}`, undefined, { cause });
          }
          if (r.status !== 202) throw await this.#error(r, whatBlob);
          await r.body?.cancel().catch(() => {});
          const u = new URL(this.#location(r, whatBlob));
          u.searchParams.set('digest', digest);
          const done = await this.#request('PUT', u.toString(), { repo, actions: 'pull,push', headers: { 'content-length': '0' }, signal, what: whatBlob });
          if (done.status !== 201) throw await this.#error(done, whatBlob);
        } finally {
          timer.stop();
        }
      },
      abort: async () => {
        timer.stop();
        await writer.abort(new Error(`${what}: abandoned`)).catch(() => undefined);
        await patch.then((r) => r.body?.cancel()).catch(() => undefined);
      },
    };
  }

  /**
   * Uploads a blob: in one PUT when it is small, in PATCH chunks (Content-Range) followed by a PUT
   * when it is larger than `chunkedThreshold`. A chunk that fails is resumed from the offset the
   * registry reports. `location` reuses an upload session (from a mount the registry declined).
   */
  async uploadBlob(
    repo: string,
    digest: Digest,
    source: BlobSource,
    options: { signal?: AbortSignal; onProgress?: (bytes: number) => void; location?: string } = {},
  ): Promise<void> {
    const { signal } = options;
    const what = `upload blob ${digest} to ${this.registry}/${repo}`;
    let location = options.location ?? (await this.startUpload(repo, signal));
    const threshold = this.#options.chunkedThreshold ?? 32 * 1024 * 1024;
    const withDigest = (loc: string): string => {
      const u = new URL(loc);
      u.searchParams.set('digest', digest);
      return u.toString();
    };
    if (source.size <= threshold) {
      const data = await source.read(0, source.size);
      const r = await this.#request('PUT', withDigest(location), {
        repo,
        actions: 'pull,push',
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
        body: () => data,
        signal,
        what,
      });
      if (r.status !== 201) throw await this.#error(r, what);
      await r.body?.cancel().catch(() => {});
      options.onProgress?.(source.size);
      return;
    }
    const chunkSize = this.#options.chunkSize ?? 16 * 1024 * 1024;
    const retries = this.#options.retries ?? 3;
    const baseDelay = this.#options.retryDelayMs ?? 250;
    let offset = 0;
    let failures = 0;
    while (offset < source.size) {
      const length = Math.min(chunkSize, source.size - offset);
      const data = await source.read(offset, length);
      let r: Response;
      try {
        r = await this.#request('PATCH', location, {
          repo,
          actions: 'pull,push',
          headers: {
            'content-type': 'application/octet-stream',
            'content-range': `${String(offset)}-${String(offset + length - 1)}`,
            'content-length': String(length),
          },
          body: () => data,
          signal,
          retry: false,
          what,
        });
      } catch (cause) {
        if (signal?.aborted === true || failures >= retries) throw cause;
        await delay(baseDelay * 2 ** failures++, undefined, signal !== undefined ? { signal } : {});
        // The registry may have taken part of the chunk: ask it where the upload stands.
        const status = await this.#uploadStatus(repo, location, what, signal);
        location = status.location;
        offset = status.offset;
        continue;
      }
      if (r.status !== 202) throw await this.#error(r, what);
      await r.body?.cancel().catch(() => {});
      location = this.#location(r, what);
      offset += length;
      failures = 0;
      options.onProgress?.(offset);
    }
    const r = await this.#request('PUT', withDigest(location), { repo, actions: 'pull,push', headers: { 'content-length': '0' }, signal, what });
    if (r.status !== 201) throw await this.#error(r, what);
    await r.body?.cancel().catch(() => {});
  }

  async #uploadStatus(repo: string, location: string, what: string, signal: AbortSignal | undefined): Promise<{ location: string; offset: number }> {
    const r = await this.#request('GET', location, { repo, actions: 'pull,push', signal, what });
    if (r.status !== 204) throw await this.#error(r, what);
    const end = /^(?:bytes=)?0-(\d+)$/.exec(r.headers.get('range') ?? '')?.[1];
    return { location: this.#location(r, what), offset: end === undefined ? 0 : Number(end) + 1 };
  }

  /** PUTs a manifest under a tag or digest; returns the digest the registry stored it under. */
  async putManifest(repo: string, reference: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<Digest> {
    const what = `put manifest ${this.registry}/${repo}:${reference}`;
    const r = await this.#request('PUT', `/v2/${repo}/manifests/${reference}`, {
      repo,
      actions: 'pull,push',
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: () => bytes,
      signal,
      what,
    });
    if (r.status !== 201) throw await this.#error(r, what);
    await r.body?.cancel().catch(() => {});
    const digest = sha256Digest(bytes);
    const said = r.headers.get('docker-content-digest');
    if (said !== null && said !== digest) throw new RegistryError(`${what}: the registry stored it as ${said}, expected ${digest}`, r.status);
    return digest;
  }
}

/** Checks the shape of an image manifest just enough to use it safely. */
export function checkManifest(json: unknown, name: string): ImageManifest {
  const m = json as Partial<ImageManifest> | null;
  const ok = (d: unknown): boolean => typeof d === 'object' && d !== null && typeof (d as Descriptor).digest === 'string' && /^sha256:[a-f0-9]{64}$/.test((d as Descriptor).digest) && typeof (d as Descriptor).size === 'number';
  if (m === null || typeof m !== 'object' || m.schemaVersion !== 2 || !ok(m.config) || !Array.isArray(m.layers) || !m.layers.every(ok)) {
    throw new RegistryError(`${name}: unsupported or malformed manifest (kiln reads schemaVersion 2 OCI/Docker manifests with sha256 digests)`);
  }
  return m as ImageManifest;
}

/** The useful part of a fetch network error: undici hides the reason (ECONNREFUSED …) in `cause`. */
function networkMessage(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as unknown) : undefined;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code !== undefined && !cause.message.includes(code) ? `${code} ${cause.message}` : cause.message;
  }
  return messageOf(err);
}
