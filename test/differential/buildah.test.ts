/**
 * Differential test against Buildah: the fixtures under test/fixtures/differential/<case>/ are built
 * by kiln and by `buildah build` from the same base image (kiln's busybox base, exported as an OCI
 * layout and pulled into a private Buildah store), then both images are exported as OCI layouts,
 * unpacked with `umoci unpack`, and compared: the config fields a Dockerfile sets, and every path of
 * the filesystem (type, mode, owner, size, content hash, link target; timestamps aside).
 *
 * A difference is a kiln bug unless it is listed in EXCEPTIONS below with the reason it is deliberate.
 * Buildah runs with a private store (overlay driver) and `--isolation chroot`, without `--layers`
 * (no step cache is needed, and committing only the final image keeps the test fast).
 * Buildah is required under CI=true; elsewhere a missing buildah skips the test with a message.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { build } from '../../src/builder/build.js';
import { ensureBusyboxImage } from '../../src/image/base-image.js';
import { exportImage } from '../../src/outputs/index.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { diffConfigs, diffTrees, layoutConfig, snapshotTree } from './image-facts.js';
import type { Config } from './image-facts.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'differential');
const NAMES = ['kiln', 'buildah'] as const;
const CI = process.env.CI === 'true' || process.env.CI === '1';

/** What an exception may look at besides the difference line. */
interface DiffContext {
  /** kiln's image config (`config` member). */
  readonly kilnConfig: Config;
}

/**
 * Deliberate differences, each with the reason kiln keeps its behaviour (in each case kiln does what
 * BuildKit does, checked against docker 20.10's BuildKit on this machine). A difference line is
 * `config <Field>...: kiln X | buildah Y` or `fs <path>: kiln X | buildah Y`.
 */
const EXCEPTIONS: ReadonlyArray<{ readonly why: string; readonly applies: (line: string, ctx: DiffContext) => boolean }> = [
  {
    why: 'Buildah stamps its version into every image it builds (label io.buildah.version); kiln, like BuildKit, adds no label of its own.',
    applies: (line) => line.startsWith('config Labels["io.buildah.version"]: kiln undefined | buildah '),
  },
  {
    why: 'ENV that redefines a variable: BuildKit (and kiln) replace it where it stands in Env; Buildah removes it and appends it at the end. Same entries, other order.',
    applies: (line) => line.startsWith('config Env (same entries, other order): '),
  },
  {
    why: 'WORKDIR: BuildKit (and kiln) create the working directory and its parents in the image even when no later step writes there; Buildah 1.28 only sets the config.',
    applies: (line, ctx) => {
      const m = /^fs (\S+): kiln dir \d+ 0:0 \| buildah absent$/.exec(line);
      const wd = typeof ctx.kilnConfig.WorkingDir === 'string' ? ctx.kilnConfig.WorkingDir : '';
      return m?.[1] !== undefined && (wd === m[1] || wd.startsWith(`${m[1]}/`));
    },
  },
  {
    why: 'Buildah leaves the empty mount-point stubs of a RUN step (/etc/hosts, /etc/hostname, /etc/resolv.conf, /run) in the layer; BuildKit (and kiln) leave no trace of them.',
    applies: (line) =>
      /^fs \/etc\/(hosts|hostname|resolv\.conf): kiln absent \| buildah file \d+ 0:0 0B e3b0c44298fc$/.test(line) || /^fs \/run: kiln absent \| buildah dir \d+ 0:0$/.test(line),
  },
];

const cases = (await readdir(FIXTURES, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();

let work = '';
let store: LayerStore | undefined;
let buildahArgs: string[] = [];
let skipReason: string | undefined;

before(async () => {
  const probe = await execa('buildah', ['--version'], { reject: false });
  if (probe.exitCode !== 0) {
    if (CI) throw new Error('buildah is not installed, and CI needs it for the differential test (scripts/bootstrap.sh installs it)');
    skipReason = 'buildah is not installed (apt-get install buildah, or npm run bootstrap); skipping the differential test';
    return;
  }
  // Lowercase only: buildah derives an image name from the OCI layout's path.
  work = path.join(tmpdir(), `kiln-diff-buildah-${randomBytes(6).toString('hex')}`);
  await mkdir(work);
  store = await LayerStore.open(path.join(work, 'kiln-store'));
  const base = await ensureBusyboxImage(store);
  const baseLayout = path.join(work, 'base-oci');
  await exportImage(base, store, { type: 'oci', dest: baseLayout, tags: ['busybox:latest'] });
  buildahArgs = ['--root', path.join(work, 'buildah-root'), '--runroot', path.join(work, 'buildah-run'), '--storage-driver', 'overlay'];
  const { stdout: id } = await execa('buildah', [...buildahArgs, 'pull', '-q', `oci:${baseLayout}:latest`]);
  await execa('buildah', [...buildahArgs, 'tag', id.trim(), 'busybox:latest']);
});

after(async () => {
  if (!work) return;
  // Buildah may leave containers (and their overlay mounts) behind after a failed build: remove them,
  // then unmount whatever is still mounted under the work dir, deepest first.
  if (buildahArgs.length > 0) {
    await execa('buildah', [...buildahArgs, 'rm', '-a'], { reject: false });
    await execa('buildah', [...buildahArgs, 'rmi', '-a', '-f'], { reject: false });
  }
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m === work || m.startsWith(`${work}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await execa('umount', [m], { reject: false });
  await rm(work, { recursive: true, force: true });
});

// Two fixtures at a time: the builds wait on disk and on buildah's process start-up more than on CPU.
describe('kiln against Buildah', { concurrency: 2 }, () => {
  for (const name of cases) {
    test(`the ${name} fixture builds to the same config and filesystem with kiln as with Buildah`, async (t) => {
      if (skipReason !== undefined) {
        t.skip(skipReason);
        return;
      }
      assert.ok(store);
      const dir = path.join(FIXTURES, name);
      const dockerfile = path.join(dir, 'Dockerfile');
      const context = (await stat(path.join(dir, 'ctx')).catch(() => undefined))?.isDirectory() ? path.join(dir, 'ctx') : dir;
      const out = path.join(work, name);
      await mkdir(out, { recursive: true });

      // The two engines build at the same time: they share nothing but the fixture.
      const kilnLayout = path.join(out, 'kiln-oci');
      const buildahLayout = path.join(out, 'buildah-oci');
      const started = performance.now();
      const kilnBuild = build({ context, dockerfile, root: store.root, tags: [`diff/${name}:latest`], outputs: [{ type: 'oci', dest: kilnLayout, compression: 'none' }] }).then(() => {
        t.diagnostic(`kiln built ${name} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      });
      const buildahBuild = (async () => {
        const tag = `localhost/diff/${name}:latest`;
        const bargs = [...buildahArgs, 'build', '--pull=never', '--isolation', 'chroot', '-q', '-t', tag, '-f', dockerfile, context];
        const b = await execa('buildah', bargs, { reject: false, all: true });
        assert.equal(b.exitCode, 0, `buildah build failed:\n${b.all ?? ''}`);
        await execa('buildah', [...buildahArgs, 'push', '-q', tag, `oci:${buildahLayout}:latest`]);
        t.diagnostic(`buildah built and pushed ${name} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      })();
      await Promise.all([kilnBuild, buildahBuild]);

      for (const [layout, bundle] of [
        [kilnLayout, path.join(out, 'kiln-bundle')],
        [buildahLayout, path.join(out, 'buildah-bundle')],
      ] as const) {
        await execa('umoci', ['unpack', '--image', `${layout}:latest`, bundle]);
      }

      const diffs = [
        ...diffConfigs(await layoutConfig(kilnLayout, 'latest'), await layoutConfig(buildahLayout, 'latest'), NAMES),
        ...diffTrees(await snapshotTree(path.join(out, 'kiln-bundle', 'rootfs')), await snapshotTree(path.join(out, 'buildah-bundle', 'rootfs')), NAMES),
      ];
      const ctx: DiffContext = { kilnConfig: await layoutConfig(kilnLayout, 'latest') };
      const unexplained = diffs.filter((d) => !EXCEPTIONS.some((e) => e.applies(d, ctx)));
      assert.deepEqual(unexplained, [], `kiln and Buildah differ on ${name}:\n${unexplained.join('\n')}`);
    });
  }
});
