import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { pullImage } from '../src/registry/pull.js';
import { pushImage } from '../src/registry/push.js';
import { LayerStore } from '../src/store/layer-store.js';
import { makeStoreImage, startRegistry } from '../test/helpers/registry.js';
import * as fsp from 'node:fs/promises';
if (process.env.NOSYNC) { const fh = await fsp.open('/dev/null'); const proto = Object.getPrototypeOf(fh); await fh.close(); proto.sync = async () => {}; }
const work = await mkdtemp(join(tmpdir(), 'kiln-pb-'));
const reg = await startRegistry();
try {
  const store = await LayerStore.open(join(work, 'store'));
  const perLayer = Math.floor((200 * 1024 * 1024) / 4 / 2);
  const image = await makeStoreImage(store, Array.from({ length: 4 }, (_, i) => ({ [`d/${i}`]: randomBytes(perLayer).toString('hex') })));
  await pushImage(image, `${reg.host}/b/i:1`, store);
  for (let i = 0; i < 3; i++) {
    const s = await LayerStore.open(join(work, `p${i}`));
    let t = performance.now();
    await pullImage(`${reg.host}/b/i:1`, s);
    const k = performance.now() - t;
    t = performance.now();
    await execa('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/b/i:1`, `oci:${join(work, `sk${i}`)}:v1`]);
    const sk = performance.now() - t;
    console.log(`kiln ${(k/1000).toFixed(2)}s skopeo ${(sk/1000).toFixed(2)}s ratio ${(k/sk).toFixed(2)}`);
    await rm(join(work, `p${i}`), { recursive: true }); await rm(join(work, `sk${i}`), { recursive: true });
  }
} finally { await reg.stop(); await rm(work, { recursive: true, force: true }); }
