import { runContainer } from '/work/wt-life/src/runtime/container.ts';
import { detectRuntime } from '/work/wt-life/src/runtime/oci-runtime.ts';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { makeBusyboxRootfs } from '/work/wt-life/test/helpers/busybox-rootfs.ts';
const lower = mkdtempSync('/tmp/life/l-'); await makeBusyboxRootfs(lower);
const info = await detectRuntime('crun');
const times: number[] = [];
for (let i = 0; i < 25; i++) {
  const d = mkdtempSync('/tmp/life/c-'); mkdirSync(d + '/u'); mkdirSync(d + '/w');
  const t0 = performance.now();
  const r = await runContainer({ rootfs: { lowerDirs: [lower], upperDir: d + '/u', workDir: d + '/w' }, args: ['/bin/true'], env: ['PATH=/bin'], cwd: '/', network: 'none' }, { runtimeInfo: info });
  times.push(performance.now() - t0);
  if (r.exitCode !== 0) throw new Error(r.outputTail);
  rmSync(d, { recursive: true });
}
times.sort((a, b) => a - b);
console.log(process.argv[2], 'median', times[12]!.toFixed(1), 'min', times[0]!.toFixed(1));
rmSync(lower, { recursive: true });
