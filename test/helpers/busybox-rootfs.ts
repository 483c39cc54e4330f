/**
 * Test helper: a minimal busybox root filesystem in a directory, to run real containers on.
 */
import { execFileSync } from 'node:child_process';
import { chmod, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Where busybox-static lives on Debian (installed by scripts/bootstrap.sh). */
const BUSYBOX = '/bin/busybox';

/**
 * Fills `dir` with a busybox rootfs: bin/busybox plus a symlink per applet, /etc/passwd with root,
 * nobody (65534) and app (1000), /etc/group (app is also a member of `staff` (50) and `extra` (2000)),
 * /tmp with mode 1777, and empty /proc, /dev, /sys, /etc, /root, /home/app.
 * Throws when busybox is missing: the bootstrap installs it, so a test must fail rather than skip.
 */
export async function makeBusyboxRootfs(dir: string): Promise<void> {
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a !== '' && a !== 'busybox');
  for (const d of ['bin', 'etc', 'proc', 'dev', 'sys', 'root', 'home/app', 'tmp']) await mkdir(path.join(dir, d), { recursive: true });
  await chmod(path.join(dir, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, path.join(dir, 'bin', 'busybox'));
  await chmod(path.join(dir, 'bin', 'busybox'), 0o755);
  await Promise.all(applets.map((a) => symlink('busybox', path.join(dir, 'bin', a))));
  await writeFile(
    path.join(dir, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  await writeFile(path.join(dir, 'etc', 'group'), 'root:x:0:\nstaff:x:50:app\napp:x:1000:\nextra:x:2000:root,app\nnogroup:x:65534:\n');
}
