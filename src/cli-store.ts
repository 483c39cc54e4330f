/**
 * The CLI's store commands: `images`, `inspect`, `rmi`, `prune`, `pull`, `push`, `login`, `run`, `store verify`.
 * Each is a thin adapter over the library (store, registry client, container runtime).
 */
import { parseArgs } from 'node:util';
import { defaultStoreRoot } from './store/default-root.js';
import type { Digest } from './oci/types.js';

class UsageError extends Error {}

function args(argv: string[], options: NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>['options']> = {}): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args: argv, options: { root: { type: 'string' }, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function openStore(root: string | undefined) {
  const { LayerStore } = await import('./store/layer-store.js');
  return LayerStore.open(root ?? defaultStoreRoot());
}

/** Finds an image by tag, by manifest digest, or by a digest prefix of at least 12 hex digits. */
async function findImage(store: Awaited<ReturnType<typeof openStore>>, name: string) {
  const { normalizeTag } = await import('./builder/tags.js');
  const byTag = await store.resolveTag(normalizeTag(name));
  if (byTag) return store.getImage(byTag);
  const hex = name.replace(/^sha256:/, '');
  if (/^[0-9a-f]{12,64}$/.test(hex)) {
    for (const t of await store.listTags()) if (t.digest.slice(7).startsWith(hex)) return store.getImage(t.digest);
    if (hex.length === 64 && (await store.hasBlob(`sha256:${hex}`))) return store.getImage(`sha256:${hex}` as Digest);
  }
  throw new Error(`image not found: ${name}`);
}

export async function runStoreCommand(command: string, argv: string[]): Promise<number> {
  try {
    return await dispatch(command, argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kiln ${command}: ${err.message}\n`);
      return 2;
    }
    const { formatError } = await import('./errors.js');
    process.stderr.write(`${formatError(err)}\n`);
    return 1;
  }
}

async function dispatch(command: string, argv: string[]): Promise<number> {
  switch (command) {
    case 'images': {
      const { values } = args(argv);
      const store = await openStore(values.root as string | undefined);
      const rows = await store.listTags();
      process.stdout.write(`${'REPOSITORY:TAG'.padEnd(48)} ${'MANIFEST'.padEnd(19)} SIZE\n`);
      for (const { name, digest } of rows.sort((a, b) => a.name.localeCompare(b.name))) {
        const image = await store.getImage(digest);
        const size = image.manifest.layers.reduce((n, l) => n + l.size, 0);
        process.stdout.write(`${name.padEnd(48)} ${digest.slice(7, 19).padEnd(19)} ${(size / 1e6).toFixed(1)} MB\n`);
      }
      return 0;
    }
    case 'inspect': {
      const { values, positionals } = args(argv);
      if (positionals.length !== 1) throw new UsageError('inspect takes one image name');
      const store = await openStore(values.root as string | undefined);
      const image = await findImage(store, positionals[0]!);
      process.stdout.write(`${JSON.stringify({ manifestDigest: image.manifestDigest, configDigest: image.configDigest, manifest: image.manifest, config: image.config }, null, 2)}\n`);
      return 0;
    }
    case 'rmi': {
      const { values, positionals } = args(argv);
      if (positionals.length === 0) throw new UsageError('rmi takes one or more image names');
      const store = await openStore(values.root as string | undefined);
      const { normalizeTag } = await import('./builder/tags.js');
      let status = 0;
      for (const name of positionals) {
        if (await store.untag(normalizeTag(name))) process.stdout.write(`Untagged: ${normalizeTag(name)}\n`);
        else {
          process.stderr.write(`kiln rmi: no such image: ${name}\n`);
          status = 1;
        }
      }
      return status;
    }
    case 'prune': {
      const { values } = args(argv);
      const store = await openStore(values.root as string | undefined);
      const r = await store.prune();
      await (await import('./builder/parse-cache.js')).clearParseCache(store.root);
      process.stdout.write(`removed ${r.removedBlobs} blobs, freed ${(r.freedBytes / 1e6).toFixed(1)} MB\n`);
      return 0;
    }
    case 'pull': {
      const { values, positionals } = args(argv, { 'insecure-registry': { type: 'string', multiple: true } });
      if (positionals.length !== 1) throw new UsageError('pull takes one reference');
      const store = await openStore(values.root as string | undefined);
      const { pullImage } = await import('./registry/pull.js');
      const image = await pullImage(positionals[0]!, store, {
        insecureRegistries: (values['insecure-registry'] as string[] | undefined) ?? [],
        onProgress: (p: unknown) => process.stderr.write(`${JSON.stringify(p)}\n`),
        signal: abortOnSignals(),
      });
      process.stdout.write(`${image.manifestDigest}\n`);
      return 0;
    }
    case 'push': {
      const { values, positionals } = args(argv, { 'insecure-registry': { type: 'string', multiple: true } });
      if (positionals.length < 1 || positionals.length > 2) throw new UsageError('push takes NAME [REF]');
      const store = await openStore(values.root as string | undefined);
      const image = await findImage(store, positionals[0]!);
      const { pushImage } = await import('./registry/push.js');
      const digest = await pushImage(image, positionals[1] ?? positionals[0]!, store, {
        insecureRegistries: (values['insecure-registry'] as string[] | undefined) ?? [],
        onProgress: (p: unknown) => process.stderr.write(`${JSON.stringify(p)}\n`),
        signal: abortOnSignals(),
      });
      process.stdout.write(`${digest}\n`);
      return 0;
    }
    case 'login': {
      const { values, positionals } = args(argv, { username: { type: 'string', short: 'u' }, password: { type: 'string', short: 'p' }, 'password-stdin': { type: 'boolean' } });
      if (positionals.length !== 1 || !values.username) throw new UsageError('login takes HOST -u USER (-p PASS | --password-stdin)');
      let password = values.password as string | undefined;
      if (values['password-stdin']) {
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        password = Buffer.concat(chunks).toString('utf8').trim();
      }
      if (!password) throw new UsageError('a password is needed (-p or --password-stdin)');
      const { login } = await import('./registry/login.js');
      await login(positionals[0]!, values.username as string, password);
      process.stdout.write('Login Succeeded\n');
      return 0;
    }
    case 'run': {
      // Options come before IMAGE; everything after it is the command, dashes and all (`run img sh -c …`).
      let split = 0;
      while (split < argv.length && argv[split]!.startsWith('-')) split += argv[split]!.includes('=') ? 1 : 2;
      const { values, positionals: imageArg } = args(argv.slice(0, split + 1), { network: { type: 'string' } });
      const positionals = [...imageArg, ...argv.slice(split + 1)];
      if (positionals.length < 1) throw new UsageError('run takes IMAGE [COMMAND...]');
      const store = await openStore(values.root as string | undefined);
      const image = await findImage(store, positionals[0]!);
      const { runImage } = await import('./runtime/run-image.js');
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort(new Error('interrupted')));
      const code = await runImage(image, store, {
        command: positionals.slice(1),
        network: runNetwork(values.network),
        signal: controller.signal,
        onOutput: (chunk, stream) => (stream === 'stdout' ? process.stdout : process.stderr).write(chunk),
      });
      return code;
    }
    case 'store': {
      // `kiln store verify`: exit 0 when everything checked out, 1 when something was wrong (and quarantined).
      const { values, positionals } = args(argv, { 'no-quarantine': { type: 'boolean' } });
      if (positionals.length !== 1 || positionals[0] !== 'verify') throw new UsageError('store takes a subcommand: verify [--no-quarantine]');
      const store = await openStore(values.root as string | undefined);
      const { verifyStore } = await import('./store/verify.js');
      const report = await verifyStore(store, { quarantine: values['no-quarantine'] !== true });
      for (const p of report.problems) {
        process.stdout.write(`${p.kind} ${p.path}: ${p.detail}${p.quarantinedTo === undefined ? '' : ` (moved to ${p.quarantinedTo})`}\n`);
      }
      for (const dir of report.unverifiable) process.stderr.write(`kiln store verify: ${dir}: cannot be checked (no blob, not built here)\n`);
      process.stdout.write(`checked ${report.blobs} blobs, ${report.layers} layers, ${report.records} records: ${report.problems.length} problems\n`);
      return report.problems.length === 0 ? 0 : 1;
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

/**
 * A signal that SIGINT or SIGTERM aborts, so a pull or push stops at once and removes its temp files; a second
 * SIGINT gets Node's default (the process ends).
 */
function abortOnSignals(): AbortSignal {
  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return controller.signal;
}

/** `kiln run --network`: the same modes as RUN steps, the sandboxed network by default (as `docker run`'s bridge). */
function runNetwork(value: unknown): 'default' | 'none' | 'host' {
  if (value === undefined || value === 'default' || value === 'bridge') return 'default';
  if (value === 'none' || value === 'host') return value;
  throw new UsageError(`invalid --network: ${String(value)} (default, none or host)`);
}
