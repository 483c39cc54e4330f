import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
import { pullImage } from '../src/registry/pull.js';
import { pushImage } from '../src/registry/push.js';
import { LayerStore } from '../src/store/layer-store.js';
import { makeStoreImage, startRegistry } from '../test/helpers/registry.js';
const work = await mkdtemp(join(tmpdir(), 'kiln-pb-'));
const reg = await startRegistry();
try {
  const store = await LayerStore.open(join(work, 'store'));
  const perLayer = Math.floor((200 * 1024 * 1024) / 4 / 2);
  const image = await makeStoreImage(store, Array.from({ length: 4 }, (_, i) => ({ [`d/${i}`]: randomBytes(perLayer).toString('hex') })));
  await pushImage(image, `${reg.host}/b/i:1`, store);
  const s = await LayerStore.open(join(work, `p`));
  const session = new Session(); session.connect();
  await session.post('Profiler.enable'); await session.post('Profiler.start');
  const t = performance.now();
  await pullImage(`${reg.host}/b/i:1`, s);
  console.log('pull', performance.now() - t);
  const { profile } = await session.post('Profiler.stop');
  // self time by function
  const self = new Map<string, number>();
  const dt = profile.timeDeltas ?? [];
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  (profile.samples ?? []).forEach((id, i) => { const n = byId.get(id)!; const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber}`; self.set(k, (self.get(k) ?? 0) + (dt[i] ?? 0)); });
  const parent = new Map<number, number>(); for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stacks = new Map<string, number>();
  (profile.samples ?? []).forEach((id, i) => { const n = byId.get(id)!; if (n.callFrame.functionName !== 'write' && n.callFrame.functionName !== 'writeBuffer') return; let chain = []; let c: number | undefined = id; for (let j = 0; j < 6 && c !== undefined; j++) { const nn = byId.get(c)!; chain.push(`${nn.callFrame.functionName}@${nn.callFrame.url.split('/').slice(-1)[0]}:${nn.callFrame.lineNumber}`); c = parent.get(c); } const k = chain.join(' < '); stacks.set(k, (stacks.get(k) ?? 0) + (dt[i] ?? 0)); });
  for (const [k, v] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 6)) console.log((v / 1000).toFixed(0).padStart(6), k);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log((v / 1000).toFixed(0).padStart(6), k);
} finally { await reg.stop(); await rm(work, { recursive: true, force: true }); }
