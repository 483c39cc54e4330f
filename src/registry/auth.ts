/**
 * Registry credentials and authentication: Docker's `config.json` (`auths`, `credsStore`,
 * `credHelpers`), the bearer-token challenge flow of the Docker token spec, and basic auth.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { RegistryError, messageOf } from '../errors.js';
import { extraCaEnv } from '../net/extra-ca.js';

/** A user name and a password (or a registry token used as password). */
export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** Where Docker's client configuration lives: `$DOCKER_CONFIG` or `~/.docker`. */
export function dockerConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['DOCKER_CONFIG'] !== undefined && env['DOCKER_CONFIG'] !== '' ? env['DOCKER_CONFIG'] : join(homedir(), '.docker');
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [key: string]: unknown;
}

async function readDockerConfig(dir: string): Promise<DockerConfigFile> {
  let text: string;
  try {
    text = await readFile(join(dir, 'config.json'), 'utf8');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw cause;
  }
  try {
    return JSON.parse(text) as DockerConfigFile;
  } catch (cause) {
    throw new RegistryError(`${join(dir, 'config.json')} is not valid JSON: ${messageOf(cause)}`, undefined, { cause });
  }
}

/** The key a registry has in `auths`: Docker Hub is stored under its legacy v1 URL, others by host. */
function configKeys(registry: string): string[] {
  if (registry === 'docker.io' || registry === 'index.docker.io' || registry === 'registry-1.docker.io') {
    return ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];
  }
  return [registry];
}

/** Reduces an `auths` key (`https://host/v1/`, `http://host`, `host`) to its host. */
function keyHost(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
}

async function runHelper(helper: string, action: 'get' | 'store', input: string): Promise<string> {
  // Loaded lazily: most commands never need a credential helper.
  const { execa } = await import('execa');
  // A helper may be a Node program: it gets NODE_EXTRA_CA_CERTS back if bin/kiln moved it (src/net/extra-ca.ts).
  const r = await execa(`docker-credential-${helper}`, [action], { input, reject: false, timeout: 30_000, env: extraCaEnv() });
  if (r.exitCode !== 0) {
    const detail = (r.stdout || r.stderr || `exit code ${String(r.exitCode)}`).trim();
    if (action === 'get' && /credentials not found/i.test(detail)) return '';
    throw new RegistryError(`credential helper docker-credential-${helper} ${action} failed: ${detail}`);
  }
  return r.stdout;
}

/**
 * Finds the credentials for a registry host in Docker's configuration: `credHelpers[host]`, then
 * `credsStore`, then the base64 `auths[host].auth`. Returns undefined when there are none.
 */
export async function findCredentials(registry: string, options: { configDir?: string } = {}): Promise<Credentials | undefined> {
  const dir = options.configDir ?? dockerConfigDir();
  const config = await readDockerConfig(dir);
  const keys = configKeys(registry);
  const helper = keys.map((k) => config.credHelpers?.[k]).find((h) => h !== undefined) ?? config.credsStore;
  if (helper !== undefined && helper !== '') {
    const out = await runHelper(helper, 'get', keys[0] ?? registry);
    if (out.trim() !== '') {
      const parsed = JSON.parse(out) as { Username?: string; Secret?: string };
      // Shortcut: `<token>` means an identity (OAuth refresh) token, which needs the OAuth2 POST flow; kiln
      // passes it as a basic-auth password instead, which registries that accept tokens as passwords take.
      if (parsed.Secret !== undefined) return { username: parsed.Username ?? '', password: parsed.Secret };
    }
  }
  const auths = config.auths ?? {};
  for (const key of keys) {
    const entry = auths[key] ?? Object.entries(auths).find(([k]) => keyHost(k) === key)?.[1];
    if (entry === undefined) continue;
    if (entry.auth !== undefined && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon === -1) throw new RegistryError(`invalid auth entry for ${key} in ${join(dir, 'config.json')}`);
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  }
  return undefined;
}

/**
 * Stores credentials for a registry host in Docker's configuration: through the credential helper
 * when one is configured for it, else as base64 `auths[host].auth` (file mode 0600, written atomically).
 */
export async function storeCredentials(registry: string, credentials: Credentials, options: { configDir?: string } = {}): Promise<void> {
  const dir = options.configDir ?? dockerConfigDir();
  const config = await readDockerConfig(dir);
  const key = configKeys(registry)[0] ?? registry;
  const helper = config.credHelpers?.[key] ?? config.credsStore;
  if (helper !== undefined && helper !== '') {
    await runHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: credentials.username, Secret: credentials.password }));
    return;
  }
  const auths = { ...(config.auths ?? {}) };
  auths[key] = { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'config.json');
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ ...config, auths }, null, '\t')}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

/** One challenge of a `WWW-Authenticate` header: the scheme and its parameters (lowercased names). */
export interface AuthChallenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/** Parses a `WWW-Authenticate` header (RFC 7235: `Bearer realm="…",service="…",scope="…"`, several challenges allowed). */
export function parseWwwAuthenticate(header: string): AuthChallenge[] {
  const out: Array<{ scheme: string; params: Record<string, string> }> = [];
  const re = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?\s*,?/y;
  let pos = 0;
  while (pos < header.length) {
    re.lastIndex = pos;
    const m = re.exec(header);
    if (m === null || m[0] === '') break;
    pos = re.lastIndex;
    const name = m[1] ?? '';
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    const current = out[out.length - 1];
    if (value === undefined) out.push({ scheme: name.toLowerCase(), params: {} });
    else if (current !== undefined) current.params[name.toLowerCase()] = value;
  }
  return out;
}

function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** What {@link Authenticator} needs to fetch a token: the registry's fetch, so that tests and retries share it. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Answers a registry's 401 challenges for one registry host: basic auth with the credentials, or a
 * bearer token fetched from the challenge's realm (with the credentials when there are any, anonymous
 * otherwise). Tokens are cached per scope until they expire.
 */
export class Authenticator {
  readonly #credentials: Credentials | undefined;
  readonly #fetch: FetchLike;
  readonly #tokens = new Map<string, { header: string; expires: number }>();
  /** The scheme and parameters of the last challenge, so later requests can authenticate up front. */
  #challenge: AuthChallenge | undefined;

  constructor(credentials: Credentials | undefined, fetchImpl: FetchLike) {
    this.#credentials = credentials;
    this.#fetch = fetchImpl;
  }

  get hasCredentials(): boolean {
    return this.#credentials !== undefined;
  }

  /** The Authorization header to send up front for a scope, when an earlier challenge tells us how. */
  cachedHeader(scope: string): string | undefined {
    const c = this.#challenge;
    if (c === undefined) return undefined;
    if (c.scheme === 'basic') return this.#credentials !== undefined ? basicHeader(this.#credentials) : undefined;
    const t = this.#tokens.get(this.#tokenKey(c, scope));
    return t !== undefined && t.expires > Date.now() ? t.header : undefined;
  }

  /**
   * Answers a 401's challenge for `scope` (`repository:<name>:pull,push`). Returns the Authorization header
   * to retry with, or undefined when there is nothing to try (no credentials for basic auth).
   */
  async respond(wwwAuthenticate: string | null, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate ?? '');
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer !== undefined) {
      this.#challenge = bearer;
      return this.#token(bearer, scope, signal);
    }
    if (basic !== undefined || challenges.length === 0) {
      this.#challenge = { scheme: 'basic', params: basic?.params ?? {} };
      return this.#credentials !== undefined ? basicHeader(this.#credentials) : undefined;
    }
    throw new RegistryError(`unsupported authentication scheme: ${challenges.map((c) => c.scheme).join(', ')}`, 401);
  }

  #tokenKey(c: AuthChallenge, scope: string): string {
    return `${c.params['realm'] ?? ''}|${c.params['service'] ?? ''}|${scope}`;
  }

  async #token(challenge: AuthChallenge, scope: string, signal?: AbortSignal): Promise<string> {
    const key = this.#tokenKey(challenge, scope);
    const cached = this.#tokens.get(key);
    if (cached !== undefined && cached.expires > Date.now()) return cached.header;
    const realm = challenge.params['realm'];
    if (realm === undefined || realm === '') throw new RegistryError('bearer challenge without a realm', 401);
    const url = new URL(realm);
    const service = challenge.params['service'];
    if (service !== undefined) url.searchParams.set('service', service);
    // The registry's own scope names what this request needs; ours may add actions (pull,push) for the same repository.
    const scopes = new Set<string>([...scope.split(' '), ...(challenge.params['scope']?.split(' ') ?? [])].filter((s) => s !== ''));
    for (const s of scopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    if (this.#credentials !== undefined) headers['authorization'] = basicHeader(this.#credentials);
    let response: Response;
    try {
      response = await this.#fetch(url.toString(), { headers, ...(signal !== undefined ? { signal } : {}) });
    } catch (cause) {
      if (signal?.aborted === true) throw signal.reason;
      throw new RegistryError(`token request to ${url.origin} failed: ${messageOf(cause)}`, undefined, { cause });
    }
    if (!response.ok) {
      const body = await response.text().catch(() => '');
      const who = this.#credentials !== undefined ? `as ${this.#credentials.username}` : 'anonymously (no credentials found; run kiln login)';
      throw new RegistryError(`token server ${url.origin} refused ${who}: HTTP ${String(response.status)} ${body.trim().slice(0, 200)}`.trim(), response.status);
    }
    const json = (await response.json()) as { token?: string; access_token?: string; expires_in?: number };
    const token = json.token ?? json.access_token;
    if (token === undefined || token === '') throw new RegistryError(`token server ${url.origin} returned no token`, response.status);
    // Docker's default lifetime is 60 s when the server names none; renew 10 s early.
    const lifetime = Math.max(json.expires_in ?? 60, 20);
    const header = `Bearer ${token}`;
    this.#tokens.set(key, { header, expires: Date.now() + (lifetime - 10) * 1000 });
    return header;
  }
}
