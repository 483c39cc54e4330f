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
import { exportImage } from '../../src/image/export.js';
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
}

const APT_NOISE = (p: string): boolean =>
  /^\/var\/log\//.test(p) ||
  /^\/var\/cache\/(ldconfig|debconf)\//.test(p) ||
  /^\/var\/lib\/apt\/(lists|extended_states)/.test(p) ||
  /^\/var\/cache\/apt\//.test(p) ||
  /^\/var\/lib\/dpkg\/(status-old|available)$/.test(p);

const HELLO_C = (greeting: string): string => `#include <stdio.h>\nint main(void) { puts("${greeting}"); return 0; }\n`;

export const REALWORLD_CASES: readonly RealWorldCase[] = [
  {
    name: 'apt-hello',
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
  const rootfs = await debianRootfs(signal);
  const store = await LayerStore.open(root);
  const image = await importImage({ type: 'rootfs', path: rootfs }, store, { tag: DEBIAN_TAG, ...(signal ? { signal } : {}) });
  const { stdout: have } = await execa(peer.bin, ['image', 'inspect', '--format', '{{.Id}}', DEBIAN_TAG], { env: peer.env, reject: false });
  if (have.trim() !== image.configDigest) {
    await mkdir(work, { recursive: true });
    const tar = path.join(work, 'debian-base-docker.tar');
    await exportImage(image, store, { type: 'docker', dest: tar, tags: [DEBIAN_TAG] }, signal ? { signal } : {});
    await execa(peer.bin, ['load', '-q', '-i', tar], { env: peer.env });
    await rm(tar, { force: true });
  }
  return image.configDigest;
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
  const r = await execa(process.execPath, ['--import', 'tsx', path.join(REPO, 'src', 'cli.ts'), 'run', '--root', root, tag], {
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
