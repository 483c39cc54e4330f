/**
 * ADD's http(s) sources, fetched as BuildKit's http source fetches them:
 * - the content goes into the store as a blob (streamed to disk while hashed, never held in memory), and a
 *   record per URL (`cache/http-<sha256(url)>.json`: digest, size, ETag, Last-Modified) remembers it;
 * - the step's cache key is the content's digest (plus its Last-Modified, which becomes the file's mtime), so
 *   the key is known only after the server was asked;
 * - on a rebuild the request is conditional: `If-None-Match` with the stored ETag (what BuildKit sends), else
 *   `If-Modified-Since` with the stored Last-Modified (BuildKit re-downloads then; a 304 is as good an answer).
 *   A 304 reuses the stored download: unchanged files are not downloaded twice;
 * - with `--checksum`, the digest is known up front: nothing is requested while the key is computed, and a
 *   download (only when the store lacks the content) must match it.
 * Redirects are followed (fetch's limit of 20); a connection that stays silent for `idleTimeoutMs` fails.
 */
import path from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import { messageOf } from '../errors.js';
import type { Digest } from '../oci/types.js';
import { sha256Hex } from '../oci/digest.js';
import type { LayerStoreApi } from '../store/types.js';
import { trustExtraCaCerts } from './extra-ca.js';

/** A URL resolved to content in the store. */
export interface UrlSource {
  readonly url: string;
  /** The file name the download gets in the image (see {@link urlFileName}). */
  readonly name: string;
  readonly digest: Digest;
  /** The response's Last-Modified, as the server wrote it (the file's mtime). */
  readonly lastModified?: string;
  /** How the content was had: downloaded now, confirmed unchanged by the server (304), or taken from the store unasked. */
  readonly via?: 'download' | 'not-modified' | 'store';
}

/** What the store remembers of a URL's last download. */
interface UrlRecord {
  readonly url: string;
  readonly digest: Digest;
  readonly size: number;
  readonly etag?: string;
  readonly lastModified?: string;
}

/** Options of {@link fetchUrlSource}. */
export interface UrlFetchOptions {
  /** `sha256:<hex>` the content must have (ADD --checksum). */
  readonly checksum?: string;
  readonly signal?: AbortSignal;
  /** How long the server may stay silent (before the headers, or between body chunks). @default 60000 */
  readonly idleTimeoutMs?: number;
}

const DEFAULT_IDLE_TIMEOUT_MS = 60_000;

/**
 * The file name of an ADD'ed URL, as BuildKit's Dockerfile frontend derives it: the last segment of the URL's
 * decoded path, or `__unnamed__` when there is none (`http://host/`). The response's Content-Disposition is not
 * consulted: the frontend names the file before anything is fetched.
 */
export function urlFileName(url: string): string {
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(url).pathname);
  } catch {
    return '__unnamed__';
  }
  const base = path.posix.basename(pathname);
  return base === '' || base === '.' || base === '..' ? '__unnamed__' : base;
}

/** `sha256:<64 hex>` or a one-line error. */
export function parseChecksum(checksum: string): Digest {
  if (!/^sha256:[0-9a-f]{64}$/.test(checksum)) throw new Error(`unsupported checksum ${checksum}: expected sha256:<64 hex digits>`);
  return checksum as Digest;
}

const recordKey = (url: string): string => `http-${sha256Hex(url)}`;

/** `url` with any password replaced, for messages (as BuildKit redacts them). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = 'xxxxx';
    return u.toString();
  } catch {
    return url;
  }
}

/** fetch refuses URLs with credentials: they become a Basic Authorization header, as Go's client sends them. */
function splitCredentials(url: string): { href: string; authorization?: string } {
  const u = new URL(url);
  if (u.username === '' && u.password === '') return { href: url };
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  u.username = '';
  u.password = '';
  return { href: u.toString(), authorization };
}

/**
 * Resolves `url` to content in the store, asking the server only what it must: nothing when `checksum` names
 * content the store holds from this URL, a conditional request when an earlier download is stored, else a
 * plain GET. Errors name the URL.
 */
export async function fetchUrlSource(store: LayerStoreApi, url: string, options: UrlFetchOptions = {}): Promise<UrlSource> {
  const name = urlFileName(url);
  const checksum = options.checksum !== undefined ? parseChecksum(options.checksum) : undefined;
  const stored = await store.getCache<UrlRecord>(recordKey(url));
  const record = stored !== undefined && stored.url === url && (await store.hasBlob(stored.digest)) ? stored : undefined;
  const fromRecord = (r: UrlRecord, via: NonNullable<UrlSource['via']>): UrlSource => ({ url, name, digest: r.digest, ...(r.lastModified !== undefined ? { lastModified: r.lastModified } : {}), via });
  if (checksum !== undefined) {
    if (record?.digest === checksum) return fromRecord(record, 'store');
    // Pinned content the store already holds (another URL's download): no request, no Last-Modified to give.
    if (await store.hasBlob(checksum)) return { url, name, digest: checksum, via: 'store' };
  }

  const shown = redactUrl(url);
  let target: { href: string; authorization?: string };
  try {
    target = splitCredentials(url);
  } catch (err) {
    throw new Error(`invalid URL ${shown}: ${messageOf(err)}`, { cause: err });
  }
  const headers: Record<string, string> = { 'user-agent': 'kiln', ...(target.authorization ? { authorization: target.authorization } : {}) };
  if (checksum === undefined && record?.etag !== undefined) headers['if-none-match'] = record.etag;
  else if (checksum === undefined && record?.lastModified !== undefined) headers['if-modified-since'] = record.lastModified;

  const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const idle = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(new Error(`no data for ${idleMs / 1000} s`)), idleMs);
  };
  const signal = options.signal ? AbortSignal.any([options.signal, idle.signal]) : idle.signal;
  const failure = (err: unknown): unknown => {
    if (options.signal?.aborted === true) return options.signal.reason;
    if (idle.signal.aborted) return new Error(`failed to fetch ${shown}: ${messageOf(idle.signal.reason)} (idle timeout)`, { cause: err });
    // fetch's own message is just "fetch failed": the reason (DNS, refused, a certificate, redirects) is its cause.
    const cause = (err as { cause?: unknown }).cause;
    return new Error(`failed to fetch ${shown}: ${cause !== undefined ? messageOf(cause) : messageOf(err)}`, { cause: err });
  };
  trustExtraCaCerts(); // before the first connection: an http URL may redirect to https
  arm();
  try {
    let res: Response;
    try {
      res = await fetch(target.href, { headers, signal, redirect: 'follow' });
    } catch (err) {
      throw failure(err);
    }
    if (res.status === 304) {
      await res.body?.cancel();
      if (record === undefined || headers['if-none-match'] === undefined && headers['if-modified-since'] === undefined) {
        throw new Error(`failed to fetch ${shown}: 304 Not Modified to an unconditional request`);
      }
      return fromRecord(record, 'not-modified');
    }
    if (!res.ok || res.body === null) {
      await res.body?.cancel();
      throw new Error(`failed to fetch ${shown}: ${res.status} ${res.statusText}`.trimEnd());
    }
    arm();
    const body = Readable.fromWeb(res.body as ReadableStream<Uint8Array>);
    // Every chunk re-arms the idle timer; the store hashes and writes as it goes.
    const watched = async function* (): AsyncGenerator<Uint8Array> {
      for await (const chunk of body) {
        arm();
        yield chunk as Uint8Array;
      }
    };
    let written: { digest: Digest; size: number };
    try {
      written = await store.writeBlob(watched(), { signal, ...(checksum !== undefined ? { expectedDigest: checksum } : {}) });
    } catch (err) {
      if (checksum !== undefined && /digest mismatch/.test(messageOf(err)) && !signal.aborted) {
        throw new Error(`digest mismatch for ${shown}: ${messageOf(err).replace(/^.*digest mismatch: /, '')}`, { cause: err });
      }
      throw failure(err);
    }
    const etag = res.headers.get('etag') ?? undefined;
    const lastModified = res.headers.get('last-modified') ?? undefined;
    const next: UrlRecord = {
      url,
      digest: written.digest,
      size: written.size,
      ...(etag !== undefined ? { etag } : {}),
      ...(lastModified !== undefined ? { lastModified } : {}),
    };
    await store.putCache(recordKey(url), next);
    return fromRecord(next, 'download');
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What a step's cache key needs of an ADD'ed URL: with `checksum`, the pinned digest (no request); else
 * {@link fetchUrlSource}'s answer. `onProgress` hears whether the server was asked and what it said.
 */
export async function resolveUrlForKey(
  store: LayerStoreApi,
  url: string,
  options: { readonly checksum?: string; readonly signal?: AbortSignal; readonly onProgress?: (message: string) => void },
): Promise<UrlSource> {
  if (options.checksum !== undefined) return { url, name: urlFileName(url), digest: parseChecksum(options.checksum) };
  const src = await fetchUrlSource(store, url, options.signal ? { signal: options.signal } : {});
  if (src.via === 'download') options.onProgress?.(`${redactUrl(url)}: downloaded ${src.digest}`);
  else if (src.via === 'not-modified') options.onProgress?.(`${redactUrl(url)}: not modified, using the stored download`);
  return src;
}
