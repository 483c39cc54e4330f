/** Parsing of the CLI's `--output`, `--secret`, `--ssh`, `--cache-from` and `--cache-to` specs (buildx syntax) into API options. */
import type { CacheExportSpec, CacheImportSpec, OutputSpec, SecretSource, SshAgentSource } from './builder/options.js';

/** `type=oci,dest=out.tar` → an {@link OutputSpec}; throws a one-line message on a bad spec. */
export function parseOutputSpec(fields: Record<string, string>): OutputSpec {
  const type = fields.type ?? (fields.dest ? 'local' : undefined);
  const dest = fields.dest;
  switch (type) {
    case 'oci': {
      if (!dest) throw new Error('--output type=oci needs dest=PATH');
      const c = fields.compression;
      if (c !== undefined && c !== 'none' && c !== 'gzip' && c !== 'zstd' && c !== 'uncompressed') throw new Error(`unknown compression: ${c}`);
      return c ? { type, dest, compression: c === 'uncompressed' ? 'none' : c } : { type, dest };
    }
    case 'docker':
    case 'local':
    case 'tar':
      if (!dest) throw new Error(`--output type=${type} needs dest=PATH`);
      return { type, dest };
    case 'registry':
    case 'image':
      if (type === 'image' && fields.push !== 'true') return { type: 'image' };
      return fields.name ? { type: 'registry', ref: fields.name } : { type: 'registry' };
    default:
      throw new Error(`unknown output type: ${type ?? '(none)'} (expected oci, docker, local, tar or registry)`);
  }
}

/** `id=npmrc,src=~/.npmrc` or `id=tok,env=TOKEN` → a {@link SecretSource}. */
export function parseSecretSpec(fields: Record<string, string>): SecretSource {
  const id = fields.id;
  if (!id) throw new Error('--secret needs id=ID');
  if (fields.src ?? fields.source) return { id, src: (fields.src ?? fields.source)! };
  if (fields.env) return { id, env: fields.env };
  // docker build: without src/env, the secret comes from the environment variable named like the id.
  return { id, env: id };
}

/**
 * `default`, `ID` or `ID=SOCKET` → an {@link SshAgentSource}; without a socket, the agent of `$SSH_AUTH_SOCK` (as docker
 * build). buildx also takes key files (`ID=KEY[,KEY]`) and runs an agent for them; kiln forwards agents only.
 */
export function parseSshSpec(fields: Record<string, string>, env: NodeJS.ProcessEnv = process.env): SshAgentSource {
  const entries = Object.entries(fields);
  const [id, socket] = entries[0] ?? ['', ''];
  if (!id) throw new Error('--ssh needs an id (default, or ID=SOCKET)');
  if (entries.length > 1) throw new Error(`--ssh ${id}: one agent socket per id; kiln does not load key files (add them to an agent with ssh-add and pass its socket)`);
  if (socket) return { id, socket };
  const fromEnv = env.SSH_AUTH_SOCK;
  if (!fromEnv) throw new Error(`--ssh ${id}: no socket given and SSH_AUTH_SOCK is not set (start ssh-agent, or pass ${id}=SOCKET)`);
  return { id, socket: fromEnv };
}

/** `type=registry,ref=HOST/REPO:TAG` (or a bare `REF`, as docker build accepts) → a {@link CacheImportSpec}. */
export function parseCacheFromSpec(fields: Record<string, string>): CacheImportSpec {
  const bare = Object.keys(fields).length === 1 ? Object.entries(fields).find(([, v]) => v === '')?.[0] : undefined;
  if (bare !== undefined && !bare.includes('=')) return { type: 'registry', ref: bare };
  const type = fields.type ?? 'registry';
  if (type !== 'registry') throw new Error(`unsupported --cache-from type: ${type} (kiln reads type=registry)`);
  if (!fields.ref) throw new Error('--cache-from type=registry needs ref=REF');
  return { type, ref: fields.ref };
}

/** `type=registry,ref=REF[,mode=min|max][,cache-mounts=true]` or `type=inline` → a {@link CacheExportSpec}. */
export function parseCacheToSpec(fields: Record<string, string>): CacheExportSpec {
  const type = fields.type;
  if (type === 'inline') return { type };
  if (type !== 'registry') throw new Error(`unsupported --cache-to type: ${type ?? '(none)'} (kiln writes type=registry or type=inline)`);
  if (!fields.ref) throw new Error('--cache-to type=registry needs ref=REF');
  const mode = fields.mode ?? 'min';
  if (mode !== 'min' && mode !== 'max') throw new Error(`invalid --cache-to mode: ${mode} (min or max)`);
  const mounts = fields['cache-mounts'];
  if (mounts !== undefined && mounts !== 'true' && mounts !== 'false') throw new Error(`invalid cache-mounts=${mounts} (true or false)`);
  return { type, ref: fields.ref, mode, ...(mounts === 'true' ? { cacheMounts: true } : {}) };
}
