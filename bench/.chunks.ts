import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient } from '../src/registry/client.js';
import { pushImage } from '../src/registry/push.js';
import { LayerStore } from '../src/store/layer-store.js';
import { makeStoreImage, startRegistry } from '../test/helpers/registry.js';
const work = await mkdtemp(join(tmpdir(), 'kiln-pb-'));
const reg = await startRegistry();
try {
  const store = await LayerStore.open(join(work, 'store'));
  const image = await makeStoreImage(store, [{ d: randomBytes(25 << 20).toString('hex') }]);
  await pushImage(image, `${reg.host}/b/i:1`, store);
  const c = new RegistryClient(reg.host);
  const m = JSON.parse((await c.getManifest('b/i', '1')).bytes.toString());
  for (let k = 0; k < 3; k++) {
  let n = 0, bytes = 0; const t = performance.now(); const cpu = process.cpuUsage();
  for await (const ch of c.getBlob('b/i', m.layers[0].digest)) { n++; bytes += ch.length; }
  const u = process.cpuUsage(cpu);
  console.log('chunks', n, 'avg', (bytes / n).toFixed(0), 'ms', (performance.now() - t).toFixed(0), 'cpu', ((u.user + u.system) / 1000).toFixed(0));
  }
  // node:http
  const http = await import('node:http');
  for (let k = 0; k < 3; k++) {
  const t = performance.now(); const cpu = process.cpuUsage(); let n = 0, bytes = 0;
  await new Promise<void>((res, rej) => http.get(`http://${reg.host}/v2/b/i/blobs/${m.layers[0].digest}`, async (r) => { if (r.statusCode !== 200 && r.headers.location) { http.get(r.headers.location, async (r2) => { for await (const ch of r2) { n++; bytes += ch.length; } res(); }); return; } for await (const ch of r) { n++; bytes += (ch as Buffer).length; } res(); }).on('error', rej));
  const u = process.cpuUsage(cpu);
  console.log('http chunks', n, 'avg', (bytes / n).toFixed(0), 'ms', (performance.now() - t).toFixed(0), 'cpu', ((u.user + u.system) / 1000).toFixed(0));
  }
} finally { await reg.stop(); await rm(work, { recursive: true, force: true }); }
