/** Parsing of the CLI's `--output` and `--secret` specs (buildx syntax) into API options. */
import type { OutputSpec, SecretSource } from './builder/options.js';

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
