/**
 * `kiln login`: checks credentials against a registry and stores them. Apart from auth.ts because it needs the
 * client, which itself needs auth.ts.
 */
import { storeCredentials } from './auth.js';
import { RegistryClient } from './client.js';

/** Options of {@link login}. */
export interface LoginOptions {
  /** Docker's config directory. @default $DOCKER_CONFIG or ~/.docker */
  readonly configDir?: string;
  /** Registries spoken to over plain http (loopback always is). @default [] */
  readonly insecureRegistries?: readonly string[];
  readonly signal?: AbortSignal;
}

/**
 * Checks credentials against the registry's `/v2/` endpoint (through its token server when it uses
 * one) and, when they are accepted, stores them in Docker's config.json (or its credential helper).
 */
export async function login(registry: string, username: string, password: string, options: LoginOptions = {}): Promise<void> {
  const client = new RegistryClient(registry, {
    credentials: { username, password },
    ...(options.insecureRegistries !== undefined ? { insecureRegistries: options.insecureRegistries } : {}),
  });
  await client.ping(options.signal);
  await storeCredentials(registry, { username, password }, options.configDir !== undefined ? { configDir: options.configDir } : {});
}
