import { syncFilesystem } from '/work/wt-life/src/store/durability.ts';
import { writeFileSync, mkdirSync, rmSync } from 'node:fs';
mkdirSync('/tmp/life/sy', { recursive: true });
let t0 = performance.now(); await syncFilesystem('/tmp/life/sy'); console.log('syncfs idle-ish', (performance.now() - t0).toFixed(1), 'ms');
for (const mb of [5, 50, 200]) {
  writeFileSync('/tmp/life/sy/f', Buffer.alloc(mb * 1024 * 1024, 7));
  t0 = performance.now(); await syncFilesystem('/tmp/life/sy'); console.log(`syncfs after ${mb} MB written`, (performance.now() - t0).toFixed(1), 'ms');
}
rmSync('/tmp/life/sy', { recursive: true });
