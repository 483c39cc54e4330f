/**
 * Real-world builds, kiln against BuildKit: Dockerfiles of the kind projects ship, on a Debian 12 base
 * made with mmdebstrap (scripts/debian-base.sh, cached outside the repository). The base enters kiln's
 * store as a one-layer image and is exported by kiln as a docker archive that dockerd loads, so both
 * engines start from the identical image (same diffID, same config).
 *
 * Used by test/differential/realworld.test.ts (one case, in npm test) and bench/realworld.ts (timings).
 */
import { execa } from 'execa';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exportImage } from '../../src/outputs/index.js';
import { importImage } from '../../src/image/import.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { REPO } from './engines.js';
import type { DockerPeer, NetworkMode } from './engines.js';

/**
 * The network RUN steps of the real-world builds get: kiln's default (no `--network` flag, each RUN in its own
 * sandboxed network); the peer dockerd, which has no bridge, builds with the host's network.
 */
export const REALWORLD_NETWORK: NetworkMode = 'default';

export const DEBIAN_TAG = 'debian:bookworm';

/** A real-world case: its Dockerfile, context files, what running the image must print, and the one-line change the benchmark makes. */
export interface RealWorldCase {
  readonly name: string;
  readonly dockerfile: string;
  readonly files: Readonly<Record<string, string>>;
  /** Running the image with no arguments prints this (stdout, trimmed). */
  readonly expectOutput: string;
  /** A one-line source change: the file and its new content. */
  readonly change: { readonly file: string; readonly content: string };
  /**
   * Paths whose content (size and hash) is not compared: logs and caches that hold timestamps
   * (apt/dpkg logs, ldconfig's cache, debconf's backups). Their presence, type, mode and owner still are.
   */
  readonly noisy: (p: string) => boolean;
  /** Build secrets (`--secret id=ID,src=PATH`), given to both engines. */
  readonly secrets?: ReadonlyArray<{ readonly id: string; readonly src: string }>;
  /** Part of the CI run (keep it to the cheap ones); the others run with KILN_REALWORLD=1 and in bench:realworld. */
  readonly ci?: boolean;
}

const APT_NOISE = (p: string): boolean =>
  /^\/var\/log\//.test(p) ||
  /^\/var\/cache\/(ldconfig|debconf)\//.test(p) ||
  /^\/var\/lib\/apt\/(lists|extended_states)/.test(p) ||
  /^\/var\/cache\/apt\//.test(p) ||
  /^\/var\/lib\/dpkg\/(status-old|available)$/.test(p);

/** npm's cache and logs (under the user's ~/.npm) besides apt's: they hold timestamps and random names. */
const NPM_NOISE = (p: string): boolean => APT_NOISE(p) || /^\/root\/\.npm\//.test(p);

/**
 * The host's CA bundle: HTTPS from these machines passes a TLS-inspecting proxy whose authority only the host's
 * bundle holds (../shared/DESIGN-NOTES.md), so `npm ci` gets it as a build secret, as it would behind a company proxy.
 */
const HOST_CA_BUNDLE = process.env.NODE_EXTRA_CA_CERTS ?? '/etc/ssl/certs/ca-certificates.crt';

const NODE_PACKAGE_JSON = `${JSON.stringify({ name: 'kiln-realworld-node', version: '1.0.0', private: true, dependencies: { ms: '2.1.3', semver: '7.6.3' } }, null, 2)}\n`;
// Written by `npm install --package-lock-only` (npm 10), with the registry URLs npm writes by default.
const NODE_PACKAGE_LOCK = `${JSON.stringify(
  {
    name: 'kiln-realworld-node',
    version: '1.0.0',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'kiln-realworld-node', version: '1.0.0', dependencies: { ms: '2.1.3', semver: '7.6.3' } },
      'node_modules/ms': {
        version: '2.1.3',
        resolved: 'https://registry.npmjs.org/ms/-/ms-2.1.3.tgz',
        integrity: 'sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==',
        license: 'MIT',
      },
      'node_modules/semver': {
        version: '7.6.3',
        resolved: 'https://registry.npmjs.org/semver/-/semver-7.6.3.tgz',
        integrity: 'sha512-oVekP1cKtI+CTDvHWYFUcMtsK/00wmAEfyqKfNdARm8u1wNVhSgaX7A8d4UuIlUI5e84iEwOhs7ZPYRmzU9U6A==',
        license: 'ISC',
        bin: { semver: 'bin/semver.js' },
        engines: { node: '>=10' },
      },
    },
  },
  null,
  2,
)}\n`;
const NODE_INDEX = (greeting: string): string =>
  `const ms = require('ms');\nconst semver = require('semver');\nconsole.log(\`${greeting} \${ms(90000)} \${semver.satisfies('1.2.3', '^1.0.0')}\`);\n`;

const PYTHON_APP = (greeting: string): string =>
  `import os, pwd\nprint("${greeting}", pwd.getpwuid(os.getuid()).pw_name, os.getuid(), os.getcwd())\n`;

const HELLO_C = (greeting: string): string => `#include <stdio.h>\nint main(void) { puts("${greeting}"); return 0; }\n`;

export const REALWORLD_CASES: readonly RealWorldCase[] = [
  {
    name: 'apt-hello',
    ci: true,
    dockerfile: [
      `FROM ${DEBIAN_TAG}`,
      'RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/*',
      'COPY greeting.txt /etc/greeting.txt',
      'CMD ["sh", "-c", "hello -g \\"$(cat /etc/greeting.txt)\\""]',
      '',
    ].join('\n'),
    files: { 'greeting.txt': 'hello from apt\n' },
    expectOutput: 'hello from apt',
    change: { file: 'greeting.txt', content: 'hello again from apt\n' },
    noisy: APT_NOISE,
  },
  {
    name: 'c-two-stage',
    dockerfile: [
      `FROM ${DEBIAN_TAG} AS build`,
      'RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*',
      'WORKDIR /src',
      'COPY hello.c .',
      'RUN gcc -O2 -o /out/hello hello.c || (mkdir -p /out && gcc -O2 -o /out/hello hello.c)',
      `FROM ${DEBIAN_TAG}`,
      'COPY --from=build /out/hello /usr/local/bin/hello',
      'USER 1000:1000',
      'CMD ["hello"]',
      '',
    ].join('\n'),
    files: { 'hello.c': HELLO_C('hello from a C program') },
    expectOutput: 'hello from a C program',
    change: { file: 'hello.c', content: HELLO_C('hello again from a C program') },
    noisy: APT_NOISE,
  },
  {
    // apt's archive and lists in cache mounts (the pattern Docker's docs give): the downloaded .debs stay out of
    // the image and are kept for the next build instead of the docker-clean hook deleting them.
    name: 'apt-cache-mount',
    dockerfile: [
      `FROM ${DEBIAN_TAG}`,
      `RUN rm -f /etc/apt/apt.conf.d/docker-clean && echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > /etc/apt/apt.conf.d/keep-cache`,
      'RUN --mount=type=cache,target=/var/cache/apt,sharing=locked --mount=type=cache,target=/var/lib/apt,sharing=locked \\',
      '    apt-get update && apt-get install -y --no-install-recommends jq',
      'COPY app.json /etc/app.json',
      'CMD ["jq", "-r", ".greeting", "/etc/app.json"]',
      '',
    ].join('\n'),
    files: { 'app.json': '{"greeting": "hello from jq"}\n' },
    expectOutput: 'hello from jq',
    change: { file: 'app.json', content: '{"greeting": "hello again from jq"}\n' },
    noisy: APT_NOISE,
  },
  {
    // Debian's nodejs and npm from apt, then `npm ci` of a lock file with two small registry packages (over https:
    // the host's CA bundle comes in as a secret), npm's cache in a cache mount, the source copied last.
    name: 'node-npm-ci',
    dockerfile: [
      `FROM ${DEBIAN_TAG}`,
      'RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*',
      'WORKDIR /app',
      'COPY package.json package-lock.json ./',
      'RUN --mount=type=secret,id=npm-ca --mount=type=cache,target=/root/.npm \\',
      '    NODE_EXTRA_CA_CERTS=/run/secrets/npm-ca npm ci --omit=dev --no-audit --no-fund',
      'COPY index.js ./',
      'CMD ["node", "index.js"]',
      '',
    ].join('\n'),
    files: { 'package.json': NODE_PACKAGE_JSON, 'package-lock.json': NODE_PACKAGE_LOCK, 'index.js': NODE_INDEX('hello from node') },
    expectOutput: 'hello from node 2m true',
    change: { file: 'index.js', content: NODE_INDEX('hello again from node') },
    noisy: NPM_NOISE,
    secrets: [{ id: 'npm-ca', src: HOST_CA_BUNDLE }],
  },
  {
    // python3 from apt, a user made with useradd, the app owned by and run as that user.
    name: 'python-nonroot',
    dockerfile: [
      `FROM ${DEBIAN_TAG}`,
      'RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*',
      'RUN useradd --create-home --uid 1001 --shell /bin/sh app',
      'WORKDIR /home/app',
      'COPY --chown=app:app app.py .',
      'USER app',
      'CMD ["python3", "app.py"]',
      '',
    ].join('\n'),
    files: { 'app.py': PYTHON_APP('hello from python') },
    expectOutput: 'hello from python app 1001 /home/app',
    change: { file: 'app.py', content: PYTHON_APP('hello again from python') },
    noisy: APT_NOISE,
  },
  {
    // A slimming step as images do it: perl and its modules installed in one layer, purged with docs, man pages and
    // locales in the next, which is thousands of whiteouts (and removed directories) over the layers below.
    name: 'apt-purge',
    dockerfile: [
      `FROM ${DEBIAN_TAG}`,
      // usr-is-merged: mmdebstrap's minbase lacks it, and without the lists apt's resolver then refuses any purge.
      'RUN apt-get update && apt-get install -y --no-install-recommends perl usr-is-merged && rm -rf /var/lib/apt/lists/*',
      'RUN apt-get purge -y --auto-remove perl perl-modules-5.36 libperl5.36 && rm -rf /usr/share/doc /usr/share/man /usr/share/locale /usr/share/info /var/cache/debconf/*-old',
      'COPY message.txt /etc/message.txt',
      'CMD ["sh", "-c", "cat /etc/message.txt; find /usr/share/perl /usr/share/doc /usr/share/man 2>/dev/null | wc -l"]',
      '',
    ].join('\n'),
    files: { 'message.txt': 'hello from a slim image\n' },
    expectOutput: 'hello from a slim image\n0',
    change: { file: 'message.txt', content: 'hello again from a slim image\n' },
    noisy: APT_NOISE,
  },
];

/** The cached Debian rootfs tar (built by scripts/debian-base.sh on first use: needs deb.debian.org). */
export async function debianRootfs(signal?: AbortSignal): Promise<string> {
  const { stdout } = await execa('bash', [path.join(REPO, 'scripts', 'debian-base.sh')], { ...(signal ? { cancelSignal: signal } : {}), stderr: 'inherit' });
  return stdout.trim();
}

/**
 * Puts the Debian base into kiln's store at `root` (tag debian:bookworm) and into the Docker peer (same
 * image, exported by kiln, loaded by dockerd). Returns the image ID both engines have.
 */
export async function prepareDebianBase(root: string, peer: DockerPeer, work: string, signal?: AbortSignal): Promise<string> {
  return (await prepareDebianBaseTimed(root, peer, work, signal)).configDigest;
}

/**
 * {@link prepareDebianBase}, also unpacking the base layer in kiln's store (as `docker load` unpacks it in
 * dockerd's), so that a benchmark's cold build starts from a ready base in both engines. Returns the seconds
 * kiln took to import the tar and to unpack the layer.
 */
export async function prepareDebianBaseTimed(
  root: string,
  peer: DockerPeer,
  work: string,
  signal?: AbortSignal,
): Promise<{ configDigest: string; importSeconds: number; unpackSeconds: number }> {
  const rootfs = await debianRootfs(signal);
  const store = await LayerStore.open(root);
  const started = performance.now();
  const image = await importImage({ type: 'rootfs', path: rootfs }, store, { tag: DEBIAN_TAG, ...(signal ? { signal } : {}) });
  const imported = performance.now();
  for (const d of image.config.rootfs.diff_ids) await store.unpackedLayer(d, signal ? { signal } : {});
  const unpacked = performance.now();
  // On disk before the clock starts, as dockerd's copy (loaded long before) is: otherwise the writeback of the
  // freshly unpacked base would land in the next build's syncfs and be timed as that build's.
  await store.makeDurable();
  const { stdout: have } = await execa(peer.bin, ['image', 'inspect', '--format', '{{.Id}}', DEBIAN_TAG], { env: peer.env, reject: false });
  if (have.trim() !== image.configDigest) {
    await mkdir(work, { recursive: true });
    const tar = path.join(work, 'debian-base-docker.tar');
    await exportImage(image, store, { type: 'docker', dest: tar, tags: [DEBIAN_TAG] }, signal ? { signal } : {});
    await execa(peer.bin, ['load', '-q', '-i', tar], { env: peer.env });
    await rm(tar, { force: true });
  }
  return { configDigest: image.configDigest, importSeconds: (imported - started) / 1000, unpackSeconds: (unpacked - imported) / 1000 };
}

/** Writes a case's Dockerfile and context under `dir` (with the one-line change applied when `changed`). */
export async function writeRealWorldCase(c: RealWorldCase, dir: string, changed = false): Promise<{ context: string; dockerfile: string }> {
  const context = path.join(dir, 'ctx');
  await mkdir(context, { recursive: true });
  for (const [name, text] of Object.entries(c.files)) await writeFile(path.join(context, name), changed && name === c.change.file ? c.change.content : text);
  const dockerfile = path.join(dir, 'Dockerfile');
  await writeFile(dockerfile, c.dockerfile);
  return { context, dockerfile };
}

/** What running an image with kiln prints (stdout, trimmed). */
export async function runWithKiln(root: string, tag: string, signal?: AbortSignal): Promise<string> {
  const r = await execa(process.execPath, ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts'), 'run', '--root', root, tag], {
    cwd: REPO,
    reject: false,
    ...(signal ? { cancelSignal: signal } : {}),
  });
  if (r.exitCode !== 0) throw new Error(`kiln run ${tag} failed (exit ${r.exitCode}): ${r.stderr}`);
  return r.stdout.trim();
}

/** What running an image with docker prints (stdout, trimmed), with no network. */
export async function runWithDocker(peer: DockerPeer, tag: string): Promise<string> {
  const r = await execa(peer.bin, ['run', '--rm', '--network', 'none', tag], { env: peer.env, reject: false });
  if (r.exitCode !== 0) throw new Error(`docker run ${tag} failed (exit ${r.exitCode}): ${r.stderr}`);
  return r.stdout.trim();
}
