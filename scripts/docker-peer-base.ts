/**
 * Writes kiln's embedded busybox base image (src/image/base-image.ts) as a `docker load` archive, so
 * the Docker peer (scripts/docker-peer.sh) builds from the very image kiln builds from: same layer,
 * same config, same image ID. Prints the image ID (the config digest) on stdout.
 *
 *   node --import tsx scripts/docker-peer-base.ts OUT.tar [STORE_ROOT]
 */
import path from 'node:path';
import { ensureBusyboxImage } from '../src/image/base-image.js';
import { exportImage } from '../src/outputs/index.js';
import { LayerStore } from '../src/store/layer-store.js';

const [out, root] = process.argv.slice(2);
if (out === undefined) {
  process.stderr.write('usage: docker-peer-base.ts OUT.tar [STORE_ROOT]\n');
  process.exit(2);
}
const store = await LayerStore.open(root);
const image = await ensureBusyboxImage(store);
await exportImage(image, store, { type: 'docker', dest: path.resolve(out), tags: ['busybox:latest'] });
process.stdout.write(`${image.configDigest}\n`);
