#!/usr/bin/env node
/**
 * `kiln`: maps argv onto the library API (the package root, ../index.js) and renders what it reports. It can do
 * nothing the API can't, and imports nothing but the package root, node built-ins and its own modules
 * (test/cli/imports.test.ts checks).
 * Progress goes to stderr; stdout carries only the result (an image digest, a dump), so it pipes.
 * Exit codes: 0 success, 1 the build (or command) failed, 2 usage error.
 * A command's module (and through it the API) is loaded when the command runs: start-up time is part of every
 * cached rebuild, and `--version` or `--help` load nothing.
 */
import { readFile } from 'node:fs/promises';
import { UsageError } from './args.js';

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

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(USAGE);
    return 0;
  }
  switch (command) {
    case 'build':
      return (await import('./build.js')).runBuildCommand(rest);
    case 'parse':
      return (await import('./parse.js')).runParseCommand(rest);
    case 'images':
    case 'inspect':
    case 'rmi':
    case 'prune':
    case 'store':
      return (await import('./images.js')).runImagesCommand(command, rest);
    case 'pull':
    case 'push':
    case 'login':
      return (await import('./registry.js')).runRegistryCommand(command, rest);
    case 'run':
      return (await import('./run.js')).runRunCommand(rest);
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case '--version':
    case 'version': {
      // src/cli/main.ts under tsx and the bundle dist/cli/cli.cjs: package.json is two levels up; dist/src/cli/main.js: three.
      for (const rel of ['../../package.json', '../../../package.json']) {
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
    void import('../index.js').then(({ formatError }) => {
      process.stderr.write(`kiln: ${formatError(err)}\n`);
      process.exitCode = 1;
    });
  },
);
