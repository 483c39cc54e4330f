import { runContainer } from '/work/wt-life/src/runtime/container.ts';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { makeBusyboxRootfs } from '/work/wt-life/test/helpers/busybox-rootfs.ts';
const lower = mkdtempSync('/tmp/life/l-'); await makeBusyboxRootfs(lower);
const d = mkdtempSync('/tmp/life/c-');
mkdirSync(d + '/u'); mkdirSync(d + '/w');
const r = await runContainer({ rootfs: { lowerDirs: [lower], upperDir: d + '/u', workDir: d + '/w' }, args: ['sh', '-c', 'echo hi; exit 7'], env: ['PATH=/bin'], cwd: '/', network: 'none', runtime: (process.env.RT ?? 'runc') as 'runc' }, { onOutput: (c) => process.stdout.write(c) });
console.log(r);
