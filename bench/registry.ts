/**
 * Registry benchmark: kiln's push and pull of a ~200 MB image against `skopeo copy` of the same image,
 * in the same run, against docker-registry on 127.0.0.1.
 *
 *   node --import tsx bench/registry.ts [sizeMB] [rounds]
 *
 * Push: both sides start from uncompressed layers and gzip them (kiln through the store's cached
 * parallel gzip, which also writes and fsyncs the compressed blobs into the store; skopeo with
 * --dest-compress), each into a fresh registry. The compressed sizes are printed, so that a difference
 * in compression level shows. Pull (like for like): both download the compressed blobs, verify their
 * digests and store them (kiln into its store, skopeo into an OCI layout), each blob through a temp file
 * that is fsynced before it is renamed into place (skopeo 1.9 fsyncs each blob too, as strace shows), all
 * four layers at once on both sides. Neither decompresses: kiln checks a layer's diffID when the layer is
 * first unpacked or exported.
 *
 * The machine may be shared, so with `rounds` > 1 both sides run that many times, alternating, each
 * round on fresh registries and stores, and the medians are printed.
 *
 * Then the registry cache (issue 5): a build on "machine A" pushes a mode=max cache; the same build on an
 * empty "machine B" (base image only) with --cache-from is timed against A's local fully cached rebuild.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MEDIA_TYPES } from '../src/oci/types.js';
import type { ImageManifest } from '../src/oci/types.js';
import { pullImage } from '../src/registry/pull.js';
import { pushImage } from '../src/registry/push.js';
import { LayerStore } from '../src/store/layer-store.js';
import { build } from '../src/builder/build.js';
import { ensureBusyboxImage } from '../src/image/base-image.js';
import { makeStoreImage, startRegistry } from '../test/helpers/registry.js';
import { benchShell, closeBenchShell } from './shell-runner.js';

/** Timings in ms and the kiln/skopeo ratios (below 1 means kiln was faster). */
export interface RegistryBenchResult {
  readonly sizeMb: number;
  readonly kilnPushMs: number;
  readonly skopeoPushMs: number;
  readonly kilnPullMs: number;
  readonly skopeoPullMs: number;
  readonly pushRatio: number;
  readonly pullRatio: number;
  /** Total compressed layer bytes each side pushed. */
  readonly kilnPushedBytes: number;
  readonly skopeoPushedBytes: number;
}

/** Runs the benchmark once; `sizeMb` is the total uncompressed size, in 4 layers. */
export async function runRegistryBench(sizeMb = 200): Promise<RegistryBenchResult> {
  const work = await mkdtemp(join(tmpdir(), 'kiln-bench-registry-'));
  const kilnRegistry = await startRegistry();
  const skopeoRegistry = await startRegistry();
  try {
    const store = await LayerStore.open(join(work, 'store'));
    // Hex text: compresses about 2:1, like typical binaries and text together.
    const layerCount = 4;
    const perLayer = Math.floor((sizeMb * 1024 * 1024) / layerCount / 2);
    const layers = Array.from({ length: layerCount }, (_, i) => ({ [`data/${String(i)}.txt`]: randomBytes(perLayer).toString('hex') }));
    const image = await makeStoreImage(store, layers);

    // The same image as an OCI layout with uncompressed layers, for skopeo.
    const layout = join(work, 'layout');
    await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
    for (const digest of [image.manifestDigest, image.configDigest, ...image.manifest.layers.map((l) => l.digest)]) {
      await writeFile(join(layout, 'blobs', 'sha256', digest.slice(7)), await store.readBlob(digest));
    }
    const manifestSize = (await store.readBlob(image.manifestDigest)).length;
    await writeFile(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest: image.manifestDigest, size: manifestSize, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
      }),
    );
    await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));

    // Each timed step starts with the page cache written back: fsyncs (both sides make them) must not pay
    // for the dirty data the step before left behind. `sync` and skopeo run in the benchmark's one shell: a fork
    // of this process right before timing kiln in it would charge kiln copy-on-write faults (bench/shell-runner.ts).
    const shell = benchShell();
    await shell.check('sync');
    let t = performance.now();
    await pushImage(image, `${kilnRegistry.host}/bench/img:v1`, store);
    const kilnPushMs = performance.now() - t;

    await shell.check('sync');
    const skopeoPushMs =
      (await shell.check(`skopeo copy --dest-tls-verify=false --dest-compress --dest-compress-format gzip oci:${layout}:v1 docker://${skopeoRegistry.host}/bench/img:v1`)).seconds * 1000;

    const pullStore = await LayerStore.open(join(work, 'pull-store'));
    await shell.check('sync');
    t = performance.now();
    await pullImage(`${kilnRegistry.host}/bench/img:v1`, pullStore);
    const kilnPullMs = performance.now() - t;

    await shell.check('sync');
    const skopeoPullMs = (await shell.check(`skopeo copy --src-tls-verify=false docker://${kilnRegistry.host}/bench/img:v1 oci:${join(work, 'skopeo-pull')}:v1`)).seconds * 1000;

    const pushedBytes = async (host: string): Promise<number> => {
      const { output } = await shell.check(`skopeo inspect --raw --tls-verify=false docker://${host}/bench/img:v1`);
      return (JSON.parse(output) as ImageManifest).layers.reduce((n, l) => n + l.size, 0);
    };
    return {
      sizeMb,
      kilnPushMs,
      skopeoPushMs,
      kilnPullMs,
      skopeoPullMs,
      pushRatio: kilnPushMs / skopeoPushMs,
      pullRatio: kilnPullMs / skopeoPullMs,
      kilnPushedBytes: await pushedBytes(kilnRegistry.host),
      skopeoPushedBytes: await pushedBytes(skopeoRegistry.host),
    };
  } finally {
    await kilnRegistry.stop();
    await skopeoRegistry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** A cached build from the local store against the same build on a second, empty store from a registry cache. */
export interface RegistryCacheBenchResult {
  /** `build()` again on the store that built it (every step cached locally). */
  readonly localCachedMs: number;
  /** `build()` on a store holding only the base image, with `--cache-from` the registry cache. */
  readonly secondMachineMs: number;
  /** How many of the steps the second machine took from the cache, of how many. */
  readonly secondMachineCached: number;
  readonly steps: number;
  /** Uncompressed bytes of the image's layers (the base image's included, which B already had). */
  readonly layerBytes: number;
}

const CACHE_DOCKERFILE = [
  'FROM busybox:latest',
  'COPY input.bin /input.bin',
  'RUN cat /input.bin /input.bin > /twice.bin',
  'RUN sha256sum /twice.bin > /twice.sha',
  'RUN dd if=/dev/zero of=/zeros bs=1M count=8 2>/dev/null',
  '',
].join('\n');

/**
 * Issue 5's second benchmark: machine A builds and pushes a mode=max registry cache; then a local fully cached
 * rebuild on A, and the same build on machine B (an empty store but for the base image, which is not part of the
 * cache) with `--cache-from`. Both through the library's `build()` in this process, so neither pays a start-up.
 */
export async function runRegistryCacheBench(): Promise<RegistryCacheBenchResult> {
  const work = await mkdtemp(join(tmpdir(), 'kiln-bench-cache-'));
  const registry = await startRegistry();
  try {
    const ctx = join(work, 'ctx');
    await mkdir(ctx);
    await writeFile(join(ctx, 'input.bin'), randomBytes(16 * 1024 * 1024));
    await writeFile(join(ctx, 'Dockerfile'), CACHE_DOCKERFILE);
    const ref = `${registry.host}/bench/cache:max`;
    const machine = async (name: string): Promise<string> => {
      const root = join(work, name);
      await ensureBusyboxImage(await LayerStore.open(root));
      return root;
    };
    const a = await machine('machine-a');
    const opts = { context: ctx, tags: ['bench/cache:1'], insecureRegistries: [registry.host] };
    await build({ ...opts, root: a, cacheTo: [{ type: 'registry', ref, mode: 'max' }] });
    let t = performance.now();
    await build({ ...opts, root: a });
    const localCachedMs = performance.now() - t;
    const b = await machine('machine-b');
    t = performance.now();
    const second = await build({ ...opts, root: b, cacheFrom: [{ type: 'registry', ref }] });
    const secondMachineMs = performance.now() - t;
    return {
      localCachedMs,
      secondMachineMs,
      secondMachineCached: second.steps.filter((x) => x.cached).length,
      steps: second.steps.length,
      layerBytes: second.layers.reduce((n, l) => n + l.size, 0),
    };
  } finally {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** The median of some numbers (the mean of the middle two for an even count). */
function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const size = Number(process.argv[2] ?? 200);
  const rounds = Math.max(1, Number(process.argv[3] ?? 1));
  benchShell(); // the shell's fork happens now, before anything is measured
  const runs: RegistryBenchResult[] = [];
  for (let i = 0; i < rounds; i++) runs.push(await runRegistryBench(size));
  const m = (pick: (r: RegistryBenchResult) => number): number => median(runs.map(pick));
  const r: RegistryBenchResult = {
    sizeMb: size,
    kilnPushMs: m((x) => x.kilnPushMs),
    skopeoPushMs: m((x) => x.skopeoPushMs),
    kilnPullMs: m((x) => x.kilnPullMs),
    skopeoPullMs: m((x) => x.skopeoPullMs),
    pushRatio: m((x) => x.pushRatio),
    pullRatio: m((x) => x.pullRatio),
    kilnPushedBytes: m((x) => x.kilnPushedBytes),
    skopeoPushedBytes: m((x) => x.skopeoPushedBytes),
  };
  const f = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;
  if (rounds > 1) {
    for (const [i, x] of runs.entries()) console.log(`round ${String(i + 1)}: push ${x.pushRatio.toFixed(2)} (${f(x.kilnPushMs)} / ${f(x.skopeoPushMs)}), pull ${x.pullRatio.toFixed(2)} (${f(x.kilnPullMs)} / ${f(x.skopeoPullMs)})`);
  }
  console.log(`registry bench, ${String(r.sizeMb)} MB image (uncompressed), docker-registry on 127.0.0.1${rounds > 1 ? `, medians of ${String(rounds)} rounds` : ''}`);
  console.log(`pushed gzip layers: kiln ${mb(r.kilnPushedBytes)}  skopeo ${mb(r.skopeoPushedBytes)}`);
  console.log(`push: kiln ${f(r.kilnPushMs)}  skopeo ${f(r.skopeoPushMs)}  ratio kiln/skopeo ${r.pushRatio.toFixed(2)}`);
  console.log(`pull: kiln ${f(r.kilnPullMs)}  skopeo ${f(r.skopeoPullMs)}  ratio kiln/skopeo ${r.pullRatio.toFixed(2)}`);
  const caches: RegistryCacheBenchResult[] = [];
  for (let i = 0; i < rounds; i++) caches.push(await runRegistryCacheBench());
  const c = caches[caches.length - 1]!;
  const local = median(caches.map((x) => x.localCachedMs));
  const second = median(caches.map((x) => x.secondMachineMs));
  console.log(
    `registry cache: second machine (base image only, --cache-from, ${String(c.secondMachineCached)}/${String(c.steps)} steps cached, ` +
      `image layers ${mb(c.layerBytes)}) ${f(second)}  local cached build ${f(local)}  (both in-process, no start-up)`,
  );
  closeBenchShell();
}
