/**
 * The registry API: pull an image into the store, push one from it, and store credentials (`kiln pull`,
 * `push`, `login`). Credentials come from Docker's config.json (`$DOCKER_CONFIG` or `~/.docker`): its `auths`,
 * `credsStore` and `credHelpers`.
 */
import type { Digest, Platform } from '../oci/types.js';
import type { Credentials } from '../registry/auth.js';
import type { TransferEvent } from '../registry/pull.js';
import type { StoredImage } from '../store/types.js';
import { findImage, openStore, type StoreOptions } from './store.js';

/** Options of {@link pull} and {@link push}. */
export interface TransferOptions extends StoreOptions {
  readonly signal?: AbortSignal;
  /** Transfer progress: the reference resolved, each blob started, progressing, done, the manifest. */
  readonly onProgress?: (event: TransferEvent) => void;
  /** Registries (host or host:port) spoken to over plain http besides loopback ones. @default [] */
  readonly insecureRegistries?: readonly string[];
  /** Docker's config directory, for credentials. @default `$DOCKER_CONFIG` or `~/.docker` */
  readonly dockerConfigDir?: string;
}

/** Options of {@link pull}. */
export interface PullOptions extends TransferOptions {
  /** The platform to pick from a multi-platform image, as an object or `os/arch[/variant]`. @default the host's */
  readonly platform?: Platform | string;
}

/**
 * Pulls `ref` (`busybox`, `HOST[:PORT]/REPO:TAG`, `…@sha256:…`) into the store and tags it there under its full
 * reference. A digest-pinned reference the store holds costs no network; only missing blobs are downloaded.
 * @throws RegistryError
 */
export async function pull(ref: string, options: PullOptions = {}): Promise<StoredImage> {
  const store = await openStore(options.root);
  const { pullImage } = await import('../registry/pull.js');
  return pullImage(ref, store, { ...transferOptions(options), ...(options.platform !== undefined ? { platform: options.platform } : {}) });
}

/** Options of {@link push}. */
export interface PushOptions extends TransferOptions {
  /** Where to push. @default the image name itself (a tag naming its registry, `HOST/REPO:TAG`) */
  readonly ref?: string;
}

/** What {@link push} pushed. */
export interface PushResult {
  /** The reference pushed to. */
  readonly ref: string;
  /** The digest of the manifest as the registry has it (its layers gzipped: not the store's manifest digest). */
  readonly manifestDigest: Digest;
}

/**
 * Pushes an image of the store (a tag, a manifest digest or a 12-digit prefix, as {@link inspectImage} takes)
 * to `options.ref`, or to the registry its name says. Blobs the registry has are not sent again.
 * @throws ImageNotFoundError, RegistryError
 */
export async function push(name: string, options: PushOptions = {}): Promise<PushResult> {
  const store = await openStore(options.root);
  const image = await findImage(store, name);
  const { pushImage } = await import('../registry/push.js');
  const ref = options.ref ?? name;
  return { ref, manifestDigest: await pushImage(image, ref, store, transferOptions(options)) };
}

/** Options of {@link login}. */
export interface LoginOptions {
  /** Docker's config directory, where the credentials go. @default `$DOCKER_CONFIG` or `~/.docker` */
  readonly configDir?: string;
  /** Registries spoken to over plain http besides loopback ones. @default [] */
  readonly insecureRegistries?: readonly string[];
  readonly signal?: AbortSignal;
}

/**
 * Checks credentials against the registry (`HOST[:PORT]`; `docker.io` for Docker Hub) and, when it accepts
 * them, stores them in Docker's config.json, or in its credential helper when one is configured.
 * @throws RegistryError when the registry refuses them or cannot be reached
 */
export async function login(registry: string, credentials: Credentials, options: LoginOptions = {}): Promise<void> {
  const { login: check } = await import('../registry/login.js');
  await check(registry, credentials.username, credentials.password, options);
}

/** The options pulls and pushes share, as the registry client takes them (no `root`). */
function transferOptions(options: TransferOptions): Omit<TransferOptions, 'root'> {
  return {
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.insecureRegistries ? { insecureRegistries: options.insecureRegistries } : {}),
    ...(options.dockerConfigDir !== undefined ? { dockerConfigDir: options.dockerConfigDir } : {}),
  };
}
