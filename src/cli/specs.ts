/** Parsing of the CLI's `--output`, `--secret`, `--ssh`, `--cache-from` and `--cache-to` specs (buildx syntax) into API options. */
import { validateTag, type CacheExportSpec, type CacheImportSpec, type OutputSpec, type SecretSource, type SshAgentSource } from '../index.js';

/**
 * One CSV record, as buildx reads its `--output` values (Go's encoding/csv): fields split at commas, and a field that
 * starts with `"` runs to the closing quote (`""` is a quote), so `"name=a:1,b:1"` is one field.
 */
export function csvFields(spec: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (spec[i] === '"') {
      i++;
      for (;;) {
        if (i >= spec.length) throw new Error(`unterminated quote in ${JSON.stringify(spec)}`);
        if (spec[i] === '"') {
          if (spec[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += spec[i++];
      }
      if (i < spec.length && spec[i] !== ',') throw new Error(`extraneous text after a quoted field in ${JSON.stringify(spec)}`);
    } else {
      const end = spec.indexOf(',', i);
      field = spec.slice(i, end < 0 ? spec.length : end);
      i = end < 0 ? spec.length : end;
    }
    out.push(field);
    if (i >= spec.length) return out;
    i++; // the comma
  }
}

/** The keys each output type takes (buildx's exporter attributes that kiln implements). */
const OUTPUT_KEYS: Record<string, readonly string[]> = {
  oci: ['type', 'dest', 'name', 'compression', 'tar', 'oci-mediatypes'],
  docker: ['type', 'dest', 'name', 'compression', 'oci-mediatypes'],
  local: ['type', 'dest'],
  tar: ['type', 'dest'],
  registry: ['type', 'name', 'push'],
  image: ['type', 'name', 'push'],
};

/** Exporter attributes buildx documents that kiln does not implement: refused by name rather than ignored. */
const UNSUPPORTED_KEYS = new Set([
  'compression-level', 'force-compression', 'rewrite-timestamp', 'platform-split', 'push-by-digest', 'registry.insecure',
  'dangling-name-prefix', 'name-canonical', 'unpack', 'store', 'buildinfo', 'buildinfo-attrs', 'attest-inline', 'oci-artifact',
]);

/**
 * A `-o`/`--output` value → an {@link OutputSpec}, as buildx reads it: `type=KIND,key=value,...`, or a bare path
 * (`-o ./out`: type=local) or `-` (type=tar to stdout; the CLI maps the `-` destination to stdout). Unknown keys
 * are an error naming the key. Throws a one-line message.
 */
export function parseOutputArg(spec: string): OutputSpec {
  const fields = csvFields(spec);
  if (fields.length === 1 && fields[0] === spec && !spec.includes('=')) {
    if (spec === '') throw new Error('--output needs a value');
    return spec === '-' ? { type: 'tar', dest: '-' } : { type: 'local', dest: spec };
  }
  const map: Record<string, string> = {};
  for (const f of fields) {
    const eq = f.indexOf('=');
    if (eq <= 0) throw new Error(`--output ${JSON.stringify(spec)}: expected key=value, got ${JSON.stringify(f)}`);
    map[f.slice(0, eq).trim().toLowerCase()] = f.slice(eq + 1);
  }
  return parseOutputSpec(map);
}

/** `type=oci,dest=out.tar` (already split into fields) → an {@link OutputSpec}; throws a one-line message on a bad spec. */
export function parseOutputSpec(fields: Record<string, string>): OutputSpec {
  const type = fields.type ?? (fields.dest ? 'local' : undefined);
  const allowed = type !== undefined ? OUTPUT_KEYS[type] : undefined;
  if (allowed === undefined) throw new Error(`unknown output type: ${type ?? '(none)'} (expected oci, docker, local, tar, registry or image)`);
  for (const key of Object.keys(fields)) {
    if (allowed.includes(key)) continue;
    if (UNSUPPORTED_KEYS.has(key) || key.startsWith('annotation')) throw new Error(`--output type=${type}: kiln does not support the ${key} attribute`);
    throw new Error(`--output type=${type}: unknown attribute "${key}"`);
  }
  const dest = fields.dest;
  const names = fields.name !== undefined ? fields.name.split(',').map((n) => n.trim()).filter(Boolean) : [];
  for (const n of names) {
    const bad = validateTag(n);
    if (bad) throw new Error(`--output type=${type}: ${bad}`);
  }
  const ociTypes = fields['oci-mediatypes'];
  // kiln's archives always use OCI media types.
  if (ociTypes !== undefined && ociTypes !== '' && ociTypes !== 'true') throw new Error(`--output type=${type}: kiln writes OCI media types only (oci-mediatypes=${ociTypes})`);
  const compression = (): { compression?: 'none' | 'gzip' | 'zstd' } => {
    const c = fields.compression;
    if (c === undefined) return {};
    if (c === 'uncompressed' || c === 'none') return { compression: 'none' };
    if (c === 'gzip' || c === 'zstd') return { compression: c };
    throw new Error(`--output type=${type}: unsupported compression: ${c} (uncompressed, gzip or zstd)`);
  };
  const bool = (key: string): boolean | undefined => {
    const v = fields[key];
    if (v === undefined) return undefined;
    if (v === 'true' || v === '') return true;
    if (v === 'false') return false;
    throw new Error(`--output type=${type}: ${key} must be true or false, not ${v}`);
  };
  switch (type) {
    case 'oci':
    case 'docker': {
      if (!dest) throw new Error(`--output type=${type} needs dest=PATH`);
      const tar = type === 'oci' ? bool('tar') : undefined;
      if (tar === false && dest === '-') throw new Error('--output type=oci: tar=false cannot go to stdout');
      return { type, dest, ...(names.length > 0 ? { names } : {}), ...compression(), ...(tar !== undefined ? { tar } : {}) };
    }
    case 'local':
    case 'tar':
      if (!dest) throw new Error(`--output type=${type} needs dest=PATH`);
      if (type === 'local' && dest === '-') throw new Error('--output type=local cannot go to stdout (use type=tar)');
      return { type, dest };
    case 'registry':
    case 'image':
      // Not pushed: the image goes to the store, named (tagged) as name= says.
      if ((type === 'image' && bool('push') !== true) || bool('push') === false) return names.length > 0 ? { type: 'image', names } : { type: 'image' };
      if (names.length > 1) throw new Error(`--output type=${type}: kiln pushes one name per output`);
      return names[0] !== undefined ? { type: 'registry', ref: names[0] } : { type: 'registry' };
    default:
      throw new Error(`unknown output type: ${type}`);
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
