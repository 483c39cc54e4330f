// Scratch directories kiln makes in the system temp dir (overlay helper links, SSH agent sockets, unpacked
// archives, the seccomp compile bundle, the empty context of `kiln build -`) carry their owner, and the next
// kiln process removes a dead owner's (unmounting what is mounted inside first), never a live one's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeOwnedTempDir, type TempKind } from '../../src/store/owner.js';
import { mountPoints, recoverDeadOwners } from '../../src/store/recovery.js';

const KINDS: TempKind[] = ['ovl', 'ssh', 'import', 'seccomp', 'empty-context'];

test("a dead kiln's scratch dirs in the temp dir are recovered, mounts inside them detached; a live one's stay", (t) => {
  const base = mkdtempSync(path.join(tmpdir(), 'kiln-temp-recovery-'));
  const root = path.join(base, 'store');
  mkdirSync(root);
  t.after(() => rmSync(base, { recursive: true, force: true }));
  // A process that makes one of each and exits: its pid is then dead.
  const script = `import { makeOwnedTempDir } from ${JSON.stringify(path.resolve('src/store/owner.ts'))};
for (const k of ${JSON.stringify(KINDS)}) console.log(makeOwnedTempDir(k, ${JSON.stringify(base)}));`;
  const dead = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' }).trim().split('\n');
  assert.equal(dead.length, KINDS.length);
  for (const d of dead) writeFileSync(path.join(d, 'left-behind'), 'x');
  // The overlay helper of a killed build may still have something mounted inside.
  const mounted = path.join(dead[0]!, 'm');
  mkdirSync(mounted);
  execFileSync('mount', ['-t', 'tmpfs', 'kiln-test', mounted]);
  t.after(() => {
    if (mountPoints().includes(mounted)) execFileSync('umount', ['-l', mounted]);
  });
  const live = KINDS.map((k) => makeOwnedTempDir(k, base));
  // Not ours by name: left alone whatever its owner.
  const foreign = path.join(base, 'kiln-other-1-0123456789ab');
  mkdirSync(foreign);

  return recoverDeadOwners(root, base).then((report) => {
    for (const d of dead) assert.ok(!existsSync(d), `${path.basename(d)} removed`);
    assert.ok(!mountPoints().includes(mounted), 'the mount inside was detached first');
    assert.deepEqual([...report.removed].filter((r) => r.startsWith(base)).sort(), [...dead].sort());
    for (const d of live) assert.ok(existsSync(d), `${path.basename(d)} (live) stays`);
    assert.ok(existsSync(foreign));
  });
});
