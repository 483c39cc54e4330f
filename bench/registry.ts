/**
 * Registry benchmark: kiln's push and pull of a ~200 MB image against `skopeo copy` of the same image,
 * in the same run, against docker-registry on 127.0.0.1.
 *
 *   node --import tsx bench/registry.ts [sizeMB]
 *
 * Push: both sides start from uncompressed layers and gzip them (kiln through the store's cached
 * parallel gzip, skopeo with --dest-compress), each into a fresh registry. Pull: kiln downloads,
 * verifies, decompresses and stores both forms; skopeo downloads into an OCI layout.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { MEDIA_TYPES } from '../src/image/types.js';
import { pullImage } from '../src/registry/pull.js';
import { pushImage } from '../src/registry/push.js';
import { LayerStore } from '../src/store/layer-store.js';
import { makeStoreImage, startRegistry } from '../test/helpers/registry.js';

/** Timings in ms and the kiln/skopeo ratios (below 1 means kiln was faster). */
export interface RegistryBenchResult {
  readonly sizeMb: number;
  readonly kilnPushMs: number;
  readonly skopeoPushMs: number;
  readonly kilnPullMs: number;
  readonly skopeoPullMs: number;
  readonly pushRatio: number;
  readonly pullRatio: number;
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

    let t = performance.now();
    await pushImage(image, `${kilnRegistry.host}/bench/img:v1`, store);
    const kilnPushMs = performance.now() - t;

    t = performance.now();
    await execa('skopeo', ['copy', '--dest-tls-verify=false', '--dest-compress', '--dest-compress-format', 'gzip', `oci:${layout}:v1`, `docker://${skopeoRegistry.host}/bench/img:v1`]);
    const skopeoPushMs = performance.now() - t;

    const pullStore = await LayerStore.open(join(work, 'pull-store'));
    t = performance.now();
    await pullImage(`${kilnRegistry.host}/bench/img:v1`, pullStore);
    const kilnPullMs = performance.now() - t;

    t = performance.now();
    await execa('skopeo', ['copy', '--src-tls-verify=false', `docker://${kilnRegistry.host}/bench/img:v1`, `oci:${join(work, 'skopeo-pull')}:v1`]);
    const skopeoPullMs = performance.now() - t;

    return {
      sizeMb,
      kilnPushMs,
      skopeoPushMs,
      kilnPullMs,
      skopeoPullMs,
      pushRatio: kilnPushMs / skopeoPushMs,
      pullRatio: kilnPullMs / skopeoPullMs,
    };
  } finally {
    await kilnRegistry.stop();
    await skopeoRegistry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const size = Number(process.argv[2] ?? 200);
  const r = await runRegistryBench(size);
  const f = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  console.log(`registry bench, ${String(r.sizeMb)} MB image (uncompressed), docker-registry on 127.0.0.1`);
  console.log(`push: kiln ${f(r.kilnPushMs)}  skopeo ${f(r.skopeoPushMs)}  ratio kiln/skopeo ${r.pushRatio.toFixed(2)}`);
  console.log(`pull: kiln ${f(r.kilnPullMs)}  skopeo ${f(r.skopeoPullMs)}  ratio kiln/skopeo ${r.pullRatio.toFixed(2)}`);
}
