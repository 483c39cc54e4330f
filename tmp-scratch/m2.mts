import { runContainer } from '/work/wt-life/src/runtime/container.ts';
import { detectRuntime } from '/work/wt-life/src/runtime/oci-runtime.ts';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { makeBusyboxRootfs } from '/work/wt-life/test/helpers/busybox-rootfs.ts';
const lower = mkdtempSync('/tmp/life/l-'); await makeBusyboxRootfs(lower);
const info = await detectRuntime('crun');
const t: Record<string, number[]> = { guard: [], none: [] };
for (let i = 0; i < 60; i++) {
  const mode = i % 2 ? 'guard' : 'none';
  if (mode === 'none') process.env.NOG = '1'; else delete process.env.NOG;
  const d = mkdtempSync('/tmp/life/c-'); mkdirSync(d + '/u'); mkdirSync(d + '/w');
  const t0 = performance.now();
  const r = await runContainer({ rootfs: { lowerDirs: [lower], upperDir: d + '/u', workDir: d + '/w' }, args: ['/bin/true'], env: ['PATH=/bin'], cwd: '/', network: 'none' }, { runtimeInfo: info });
  t[mode]!.push(performance.now() - t0);
  if (r.exitCode !== 0) throw new Error(r.outputTail);
  rmSync(d, { recursive: true });
}
for (const [k, v] of Object.entries(t)) { v.sort((a, b) => a - b); console.log(k, 'median', v[15]!.toFixed(1), 'q1', v[7]!.toFixed(1), 'min', v[0]!.toFixed(1)); }
rmSync(lower, { recursive: true });
