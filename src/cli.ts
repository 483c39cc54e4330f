#!/usr/bin/env node
/**
 * `kiln`: a thin adapter from argv to the library API. It can do nothing the API can't.
 * Progress goes to stderr; stdout carries only the result (an image digest, a dump), so it pipes.
 * Exit codes: 0 success, 1 the build (or command) failed, 2 usage error.
 * Modules are imported lazily per command: start-up time is part of every cached rebuild.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFile } from 'node:fs/promises';
import type { OutputSpec } from './builder/options.js';

const USAGE = `usage: kiln <command> [options]

commands:
  build [options] CONTEXT|-     build an image from a Dockerfile
  parse [--format json|dump] FILE|-
                                print the parsed Dockerfile (dump = BuildKit's AST dump)
  images                        list tagged images in the store
  inspect NAME                  print an image's config and manifest
  rmi NAME...                   remove tags
  prune                         remove blobs and layers no tag or cache record uses
  pull REF / push NAME [REF]    copy images from / to a registry
  login HOST -u USER -p PASS    store registry credentials
  run [--network default|none|host] IMAGE [COMMAND...]
                                run an image's command in a container (like docker run --rm)
  store verify [--no-quarantine]
                                re-hash blobs and unpacked layers; quarantine what is wrong

build options (as docker build):
  -t, --tag NAME:TAG            tag the image (repeatable)
  -f, --file FILE|-             the Dockerfile (default CONTEXT/Dockerfile)
  --build-arg K=V               set a build argument (repeatable)
  --target STAGE                build up to this stage
  --no-cache                    do not use the cache
  --no-cache-filter STAGE       do not use the cache for these stages (repeatable)
  -o, --output SPEC             type=oci|docker|local|tar|registry|image[,dest=PATH][,name=REF][,compression=…][,tar=…],
                                or PATH (type=local), or - (type=tar to stdout) (repeatable)
  --metadata-file FILE          write the result's metadata as JSON (containerimage.digest, image.name, …)
  --progress auto|tty|plain|rawjson
  --build-context NAME=VALUE    a named context: DIR, oci-layout://DIR[:TAG], docker-image://REF
  --secret id=ID,src=PATH|env=VAR
  --ssh default|ID[=SOCKET]     give RUN --mount=type=ssh an SSH agent (default: $SSH_AUTH_SOCK) (repeatable)
  --label K=V                   add a label (repeatable)
  --iidfile FILE                write the image ID (config digest) to FILE
  --network default|none|host   network of RUN steps: default = a sandboxed network with outbound access
                                (pasta), none = loopback only, host = the host's network
  --allow ENTITLEMENT           grant network.host (RUN --network=host) or security.insecure
                                (RUN --security=insecure, privileged) (repeatable)
  --pull                        re-resolve base image tags from their registry
  --push                        push the image to the registry of its first tag
  --cache-from type=registry,ref=REF
                                import a shared build cache (a cache manifest or an image with an inline cache)
  --cache-to type=registry,ref=REF[,mode=min|max][,cache-mounts=true] | type=inline
                                export the build cache after the build
  --runtime auto|runc|crun
  -q, --quiet                   print only the image digest
`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(USAGE);
    return 0;
  }
  switch (command) {
    case 'build': {
      // Start loading the build modules at once: they load while the arguments are checked.
      const modules = Promise.all([import('./builder/build.js'), import('./cli-progress.js')]);
      modules.catch(() => {});
      return cmdBuild(rest, modules);
    }
    case 'parse':
      return cmdParse(rest);
    case 'images':
    case 'inspect':
    case 'rmi':
    case 'prune':
    case 'pull':
    case 'push':
    case 'login':
    case 'run':
    case 'store':
      return (await import('./cli-store.js')).runStoreCommand(command, rest);
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case '--version':
    case 'version': {
      // src/cli.ts under tsx, dist/src/cli.js when built: package.json is one or two levels up.
      for (const rel of ['../package.json', '../../package.json']) {
        const text = await readFile(new URL(rel, import.meta.url), 'utf8').catch(() => undefined);
        if (text) {
          process.stdout.write(`kiln ${(JSON.parse(text) as { version: string }).version}\n`);
          return 0;
        }
      }
      return 1;
    }
    default:
      throw new UsageError(command ? `unknown command: ${command}` : 'no command given');
  }
}

function parse(args: string[], options: ParseArgsConfig['options']): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args, options: options ?? {}, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function cmdParse(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { format: { type: 'string', default: 'json' } });
  const format = values.format as string;
  if (format !== 'json' && format !== 'dump') throw new UsageError(`--format must be json or dump, not ${format}`);
  if (positionals.length !== 1) throw new UsageError('parse takes one FILE (or - for stdin)');
  const file = positionals[0]!;
  const text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  const name = file === '-' ? 'Dockerfile' : file;
  const { formatError, DockerfileError } = await import('./errors.js');
  try {
    if (format === 'dump') {
      const [{ parseDockerfile }, { dumpAst }] = await Promise.all([import('./parser/parse.js'), import('./parser/dump.js')]);
      process.stdout.write(dumpAst(parseDockerfile(text, { file: name })));
    } else {
      const { parse: parseFile } = await import('./parser/index.js');
      const df = parseFile(text, { file: name });
      process.stdout.write(`${JSON.stringify({ directives: df.directives, escapeToken: df.escapeToken, warnings: df.warnings, instructions: df.instructions }, null, 2)}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof DockerfileError) {
      process.stderr.write(`${formatError(err, text)}\n`);
      return 1;
    }
    throw err;
  }
}

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

function csv(spec: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) out[part] = '';
    else out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

async function cmdBuild(
  args: string[],
  modules: Promise<[typeof import('./builder/build.js'), typeof import('./cli-progress.js')]>,
): Promise<number> {
  const { values, positionals } = parse(args, {
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
  const specs = hasSpecs ? await import('./cli-specs.js') : undefined;
  const specList = <T,>(flag: string, pick: (m: typeof import('./cli-specs.js')) => (f: Record<string, string>) => T): T[] =>
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
  // `docker build -` reads the Dockerfile from stdin and has no build context: an empty directory stands in.
  let emptyContext: string | undefined;
  if (contextArg === '-') {
    const { makeOwnedTempDir } = await import('./store/owner.js');
    emptyContext = makeOwnedTempDir('empty-context');
  }
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => controller.abort(new Error(`build interrupted (${sig})`));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const [{ build }, { createProgressPrinter }] = await modules;
  const quiet = Boolean(v.quiet) || progress === 'quiet';
  const printer = createProgressPrinter(quiet ? 'quiet' : (progress as 'auto' | 'tty' | 'plain' | 'rawjson'), process.stderr);
  const options = {
    context: emptyContext ?? contextArg,
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
    if (v['metadata-file']) await (await import('node:fs/promises')).writeFile(v['metadata-file'] as string, `${JSON.stringify(result.metadata, null, 2)}\n`);
    // The digest of the image as the last archive or push wrote it (the store's without one): what the user can find
    // in what they asked for. Stdout is the image itself with `-o -`.
    if (toStdout === 0) process.stdout.write(`${result.metadata['containerimage.digest']}\n`);
    return 0;
  } catch (err) {
    printer.done();
    const { formatError } = await import('./errors.js');
    let source: string | undefined = dockerfileText;
    const file = (err as { file?: string }).file;
    if (source === undefined && file) source = await readFile(file, 'utf8').catch(() => undefined);
    process.stderr.write(`${formatError(err, source)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (emptyContext) await (await import('node:fs/promises')).rm(emptyContext, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // Exit as soon as the output is flushed: a CLI run should not wait for idle background work
    // (fsync of files already renamed into place, the threadpool winding down).
    process.exitCode = code;
    process.stdout.write('', () => process.exit(code));
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`kiln: ${err.message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    void import('./errors.js').then(({ formatError }) => {
      process.stderr.write(`kiln: ${formatError(err)}\n`);
      process.exitCode = 1;
    });
  },
);
