/**
 * `kiln build`: docker build's flags onto the API's `build`, with progress rendered on stderr (./progress.ts)
 * and the image digest on stdout.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { build, formatError, type OutputSpec } from '../index.js';
import { UsageError, parseArgv, readStdin } from './args.js';
import { createProgressPrinter } from './progress.js';

/** `K=V` flags (repeatable) → a record; `--build-arg NAME` alone takes NAME's value from the environment. */
function keyValues(list: readonly string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) {
      // `--build-arg NAME` takes the value from the environment, as docker build does.
      if (flag === '--build-arg' && eq < 0 && item) {
        const v = process.env[item];
        if (v !== undefined) out[item] = v;
        continue;
      }
      throw new UsageError(`${flag} expects KEY=VALUE, got ${JSON.stringify(item)}`);
    }
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** A spec's `k=v,k2=v2` fields (a field without `=` maps to ''). */
function csv(spec: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) out[part] = '';
    else out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

export async function runBuildCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgv(args, {
    tag: { type: 'string', short: 't', multiple: true },
    file: { type: 'string', short: 'f' },
    'build-arg': { type: 'string', multiple: true },
    target: { type: 'string' },
    'no-cache': { type: 'boolean' },
    'no-cache-filter': { type: 'string', multiple: true },
    output: { type: 'string', short: 'o', multiple: true },
    progress: { type: 'string', default: 'auto' },
    'build-context': { type: 'string', multiple: true },
    secret: { type: 'string', multiple: true },
    ssh: { type: 'string', multiple: true },
    label: { type: 'string', multiple: true },
    iidfile: { type: 'string' },
    'metadata-file': { type: 'string' },
    network: { type: 'string' },
    allow: { type: 'string', multiple: true },
    pull: { type: 'boolean' },
    push: { type: 'boolean' },
    runtime: { type: 'string' },
    'insecure-registry': { type: 'string', multiple: true },
    'cache-from': { type: 'string', multiple: true },
    'cache-to': { type: 'string', multiple: true },
    quiet: { type: 'boolean', short: 'q' },
  });
  if (positionals.length !== 1) throw new UsageError('build takes exactly one CONTEXT argument (a directory, or - for a Dockerfile on stdin)');
  const v = values as Record<string, string | boolean | string[] | undefined>;
  const progress = v.progress as string;
  if (!['auto', 'tty', 'plain', 'rawjson', 'quiet'].includes(progress)) throw new UsageError(`invalid --progress: ${progress}`);
  const network = v.network as string | undefined;
  if (network !== undefined && network !== 'none' && network !== 'host' && network !== 'default') throw new UsageError(`invalid --network: ${network}`);
  // Comma-separated lists too, as buildx accepts (`--allow network.host,security.insecure`).
  const allow = ((v.allow as string[] | undefined) ?? []).flatMap((a) => a.split(',')).map((a) => a.trim()).filter((a) => a !== '');
  for (const a of allow) if (a !== 'network.host' && a !== 'security.insecure') throw new UsageError(`invalid --allow: ${a} (network.host or security.insecure)`);
  const runtime = v.runtime as string | undefined;
  if (runtime !== undefined && !['auto', 'runc', 'crun'].includes(runtime)) throw new UsageError(`invalid --runtime: ${runtime}`);

  // The spec parsers load only when a spec flag was given.
  const hasSpecs = ['cache-from', 'cache-to', 'output', 'secret', 'ssh'].some((f) => ((v[f] as string[] | undefined) ?? []).length > 0);
  const specs = hasSpecs ? await import('./specs.js') : undefined;
  const specList = <T,>(flag: string, pick: (m: typeof import('./specs.js')) => (f: Record<string, string>) => T): T[] =>
    ((v[flag] as string[] | undefined) ?? []).map((s) => {
      try {
        return pick(specs!)(csv(s));
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
    });
  const cacheFrom = specList('cache-from', (m) => m.parseCacheFromSpec);
  const cacheTo = specList('cache-to', (m) => m.parseCacheToSpec);
  // -o takes buildx's shorthands (a path, -), so it is parsed from its raw text; `-` destinations are stdout.
  const outputs = ((v.output as string[] | undefined) ?? []).map((raw): OutputSpec => {
    let spec: OutputSpec;
    try {
      spec = specs!.parseOutputArg(raw);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    return 'dest' in spec && spec.dest === '-' ? ({ ...spec, dest: process.stdout } as OutputSpec) : spec;
  });
  const toStdout = outputs.filter((o) => 'dest' in o && o.dest === process.stdout).length;
  if (toStdout > 1) throw new UsageError('only one --output can go to stdout');
  if (v.push) outputs.push({ type: 'registry' });
  const secrets = specList('secret', (m) => m.parseSecretSpec);
  const ssh = specList('ssh', (m) => (f) => m.parseSshSpec(f));

  const contextArg = positionals[0]!;
  const fileArg = v.file as string | undefined;
  let dockerfileText: string | undefined;
  if (contextArg === '-' || fileArg === '-') dockerfileText = await readStdin();
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => controller.abort(new Error(`build interrupted (${sig})`));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const quiet = Boolean(v.quiet) || progress === 'quiet';
  const printer = createProgressPrinter(quiet ? 'quiet' : (progress as 'auto' | 'tty' | 'plain' | 'rawjson'), process.stderr);
  const options = {
    // `docker build -` reads the Dockerfile from stdin and has no build context.
    context: contextArg === '-' ? null : contextArg,
    ...(fileArg && fileArg !== '-' ? { dockerfile: fileArg } : {}),
    ...(dockerfileText !== undefined ? { dockerfileText } : {}),
    tags: (v.tag as string[] | undefined) ?? [],
    buildArgs: keyValues(v['build-arg'] as string[] | undefined, '--build-arg'),
    ...(v.target ? { target: v.target as string } : {}),
    noCache: Boolean(v['no-cache']),
    noCacheFilter: (v['no-cache-filter'] as string[] | undefined) ?? [],
    outputs,
    buildContexts: keyValues(v['build-context'] as string[] | undefined, '--build-context'),
    secrets,
    ssh,
    labels: keyValues(v.label as string[] | undefined, '--label'),
    ...(v.iidfile ? { iidfile: v.iidfile as string } : {}),
    ...(network ? { network: network as 'default' | 'none' | 'host' } : {}),
    allow: allow as Array<'network.host' | 'security.insecure'>,
    pull: Boolean(v.pull),
    ...(runtime ? { runtime: runtime as 'auto' | 'runc' | 'crun' } : {}),
    insecureRegistries: (v['insecure-registry'] as string[] | undefined) ?? [],
    cacheFrom,
    cacheTo,
    onEvent: printer.onEvent,
    signal: controller.signal,
  };
  try {
    const result = await build(options);
    printer.done();
    if (v['metadata-file']) await writeFile(v['metadata-file'] as string, `${JSON.stringify(result.metadata, null, 2)}\n`);
    // The digest of the image as the last archive or push wrote it (the store's without one): what the user can find
    // in what they asked for. Stdout is the image itself with `-o -`.
    if (toStdout === 0) process.stdout.write(`${result.metadata['containerimage.digest']}\n`);
    return 0;
  } catch (err) {
    printer.done();
    let source: string | undefined = dockerfileText;
    const file = (err as { file?: string }).file;
    if (source === undefined && file) source = await readFile(file, 'utf8').catch(() => undefined);
    process.stderr.write(`${formatError(err, source)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
