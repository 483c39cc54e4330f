import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { pullImage as pullNew } from '../src/registry/pull.js';
import { pullImage as pullOld } from './.pull-orig.js';
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
  const sum: Record<string, number[]> = { old: [], new: [], skopeo: [] };
  for (let i = 0; i < Number(process.argv[2] ?? 3); i++) {
    for (const [name, fn] of [['old', pullOld], ['new', pullNew]] as const) {
      const s = await LayerStore.open(join(work, `p${name}${i}`));
      const t = performance.now(); const cpu0 = process.cpuUsage();
      await fn(`${reg.host}/b/i:1`, s, name === 'new' && process.env.CONC ? { concurrency: Number(process.env.CONC) } : {});
      sum[name]!.push(performance.now() - t); const cu = process.cpuUsage(cpu0); (sum[name + 'cpu'] ??= []).push((cu.user + cu.system));
      await rm(join(work, `p${name}${i}`), { recursive: true });
    }
    const t = performance.now();
    await execa('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/b/i:1`, `oci:${join(work, `sk${i}`)}:v1`]);
    sum.skopeo!.push(performance.now() - t);
    await rm(join(work, `sk${i}`), { recursive: true });
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  for (const k of Object.keys(sum)) console.log(k, sum[k]!.map((x) => (x / 1000).toFixed(2)).join(' '), 'median', (med(sum[k]!) / 1000).toFixed(2), 'ratio', (med(sum[k]!) / med(sum.skopeo!)).toFixed(2));
} finally { await reg.stop(); await rm(work, { recursive: true, force: true }); }
