/**
 * The container tests, run once per OCI runtime by container-crun.test.ts and container-runc.test.ts
 * (which set KILN_RUNTIME before importing this): both must isolate and clean up the same way.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { runContainer, type ContainerSpec } from '../../src/runtime/container.js';
import { detectRuntime } from '../../src/runtime/oci-runtime.js';
import { makeBusyboxRootfs } from '../helpers/busybox-rootfs.js';

let dir: string;
let lower: string;
let tmp: string;
let stateRoot: string;
let savedTmp: string | undefined;
let listContainers: readonly string[];
let counter = 0;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-container-test-'));
  lower = path.join(dir, 'lower');
  await mkdir(lower);
  await makeBusyboxRootfs(lower);
  stateRoot = path.join(dir, 'state');
  // runContainer puts its bundle (kiln-run-*) in memory-backed storage, $XDG_RUNTIME_DIR first: a private
  // tmpfs there lets us check it is gone.
  tmp = path.join(dir, 'tmp');
  await mkdir(tmp);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0700', 'kiln-test-run', tmp]);
  savedTmp = process.env['XDG_RUNTIME_DIR'];
  process.env['XDG_RUNTIME_DIR'] = tmp;
  // No skip: the bootstrap installs runc and crun, so a missing runtime must fail the suite.
  const runtime = await detectRuntime('auto');
  assert.equal(runtime.name, process.env['KILN_RUNTIME'] ?? runtime.name, `KILN_RUNTIME=${process.env['KILN_RUNTIME']} was not used`);
  listContainers = [...runtime.command, '--root', stateRoot, 'list', '-q'];
});

after(async () => {
  if (savedTmp === undefined) delete process.env['XDG_RUNTIME_DIR'];
  else process.env['XDG_RUNTIME_DIR'] = savedTmp;
  execFileSync('umount', [tmp]);
  await rm(dir, { recursive: true, force: true });
});

/** A fresh upper/work pair over the shared busybox lower layer. */
async function freshRootfs(): Promise<ContainerSpec['rootfs']> {
  const base = path.join(dir, `step-${++counter}`);
  const upperDir = path.join(base, 'upper');
  const workDir = path.join(base, 'work');
  await mkdir(upperDir, { recursive: true });
  await mkdir(workDir);
  return { lowerDirs: [lower], upperDir, workDir };
}

async function sh(script: string, extra: Partial<ContainerSpec> = {}) {
  const rootfs = extra.rootfs ?? (await freshRootfs());
  const chunks: { chunk: string; stream: string }[] = [];
  const result = await runContainer(
    { rootfs, args: ['/bin/sh', '-c', script], env: ['PATH=/bin'], cwd: '/', network: 'none', ...extra },
    { stateRoot, onOutput: (chunk, stream) => chunks.push({ chunk, stream }) },
  );
  const text = (stream: string) => chunks.filter((c) => c.stream === stream).map((c) => c.chunk).join('');
  return { ...result, rootfs, stdout: text('stdout'), stderr: text('stderr') };
}

/** Asserts nothing of any container is left: mounts, runtime state, bundle dirs, processes. */
async function assertNothingLeft(marker?: string): Promise<void> {
  const mountinfo = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.split(' ')[4] !== tmp).join('\n');
  assert.ok(!mountinfo.includes(dir), `a mount below ${dir} is left:\n${mountinfo}`);
  // (crun keeps a directory of its own in $XDG_RUNTIME_DIR.)
  assert.deepEqual((await readdir(tmp)).filter((n) => n.startsWith('kiln-')), [], 'a bundle dir is left');
  const [bin, ...args] = listContainers as [string, ...string[]];
  const list = execFileSync(bin, args, { encoding: 'utf8' });
  assert.equal(list.trim(), '', 'the runtime still lists a container');
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    assert.ok(!cmdline.includes(stateRoot), `runtime process ${pid} is left: ${cmdline}`);
    if (marker !== undefined) assert.ok(!cmdline.replaceAll('\0', ' ').includes(marker), `process ${pid} is left: ${cmdline}`);
  }
}

test('output is streamed per stream and the exit code is returned', async () => {
  const r = await sh('echo to-out; echo to-err >&2; exit 7');
  assert.equal(r.exitCode, 7);
  assert.equal(r.stdout, 'to-out\n');
  assert.equal(r.stderr, 'to-err\n');
  assert.match(r.outputTail, /to-out\n/);
  assert.match(r.outputTail, /to-err\n/);
  assert.equal((await sh('true')).exitCode, 0);
  await assertNothingLeft();
});

test('the output tail keeps only the last few kilobytes', async () => {
  const r = await sh('i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done');
  assert.equal(r.exitCode, 0);
  assert.ok(r.outputTail.endsWith('line-1999\n'));
  assert.ok(!r.outputTail.includes('line-10\n'));
  assert.ok(r.outputTail.length <= 4096);
  assert.ok(r.stdout.includes('line-10\n'), 'onOutput still saw everything');
});

test('a missing executable reports the runtime’s error and a nonzero exit', async () => {
  const rootfs = await freshRootfs();
  const r = await runContainer({ rootfs, args: ['/no/such/binary'], env: [], cwd: '/', network: 'none' }, { stateRoot });
  assert.notEqual(r.exitCode, 0);
  assert.match(r.runtimeError ?? '', /\/no\/such\/binary/);
  await assertNothingLeft();
});

test('writes land in the upperdir only and the lower layer stays untouched', async () => {
  const passwdBefore = await readFile(path.join(lower, 'etc', 'passwd'), 'utf8');
  const r = await sh('echo new > /tmp/new-file && echo extra >> /etc/passwd && rm /etc/group');
  assert.equal(r.exitCode, 0, r.outputTail);
  const upper = r.rootfs.upperDir;
  assert.equal(await readFile(path.join(upper, 'tmp', 'new-file'), 'utf8'), 'new\n');
  assert.equal(await readFile(path.join(upper, 'etc', 'passwd'), 'utf8'), `${passwdBefore}extra\n`);
  // overlayfs records the deletion as a 0/0 character device (a whiteout).
  const wh = await lstat(path.join(upper, 'etc', 'group'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0);
  assert.equal(await readFile(path.join(lower, 'etc', 'passwd'), 'utf8'), passwdBefore);
  await stat(path.join(lower, 'etc', 'group'));
  await assert.rejects(stat(path.join(lower, 'tmp', 'new-file')));
});

test('mount points the runtime needed are not left in the upperdir', async () => {
  const r = await sh('true', { mounts: [{ type: 'tmpfs', target: '/mnt/scratch/deep' }] });
  assert.equal(r.exitCode, 0, r.outputTail);
  const upper = r.rootfs.upperDir;
  const etc = await readdir(path.join(upper, 'etc')).catch(() => []);
  assert.deepEqual(etc, [], 'no /etc/hosts, /etc/resolv.conf or /etc/hostname stubs');
  // The mount point itself was a stub and is gone; the parents the runtime made for it stay, as BuildKit
  // leaves them (an empty /run/secrets after a secret mount).
  await assert.rejects(lstat(path.join(upper, 'mnt', 'scratch', 'deep')));
  const parent = await stat(path.join(upper, 'mnt', 'scratch'));
  assert.ok(parent.isDirectory());
  assert.equal(parent.mode & 0o7777, 0o755);
  assert.deepEqual(await readdir(path.join(upper, 'mnt', 'scratch')), []);
  // /etc was copied up for the stubs; its times are put back so it looks unchanged.
  const [before, after] = await Promise.all([stat(path.join(lower, 'etc')), stat(path.join(upper, 'etc'))]);
  assert.equal(Math.round(after.mtimeMs), Math.round(before.mtimeMs));
});

test('host files and host processes are not visible, and the command is pid 1', async () => {
  const marker = path.join(os.tmpdir(), `kiln-host-marker-${process.pid}`);
  await writeFile(marker, 'host');
  try {
    const r = await sh(`test -e ${marker} && echo visible || echo absent; echo pid=$$; ls /proc | grep -c '^[0-9]'`);
    assert.equal(r.exitCode, 0, r.outputTail);
    const [visibility, pid, count] = r.stdout.trim().split('\n');
    assert.equal(visibility, 'absent');
    assert.equal(pid, 'pid=1');
    // sh, ls and grep at most: none of the host's processes.
    assert.ok(Number(count) <= 3, `processes seen: ${count}`);
    await stat(marker);
  } finally {
    await rm(marker, { force: true });
  }
});

test('network none has only the loopback interface, network host sees the host’s', async () => {
  const names = (dev: string) =>
    dev
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0]?.trim())
      .filter((n) => n)
      .sort();
  const none = await sh('cat /proc/net/dev');
  assert.deepEqual(names(none.stdout), ['lo']);
  const host = await sh('cat /proc/net/dev', { network: 'host' });
  assert.deepEqual(names(host.stdout), names(await readFile('/proc/net/dev', 'utf8')));
  const hosts = await sh('cat /etc/hosts; hostname', { hostname: 'kiln-test-host' });
  assert.match(hosts.stdout, /^127\.0\.0\.1\s+localhost/m);
  assert.match(hosts.stdout, /^kiln-test-host$/m);
});

test('a build step gets BuildKit’s /etc: hosts and resolv.conf read-only, no hostname file; a plain container gets docker run’s', async () => {
  // What dockerd 20.10's BuildKit showed to `RUN (cat /etc/hostname 2>&1; touch /etc/hosts /etc/resolv.conf 2>&1; echo $?)`
  // on busybox (its executor binds only hosts and resolv.conf, read-only).
  const script = '(cat /etc/hostname 2>&1; touch /etc/hosts /etc/resolv.conf 2>&1; echo $?; hostname)';
  const step = await sh(script, { hostname: 'buildkitsandbox', buildStep: true });
  assert.equal(
    step.stdout,
    "cat: can't open '/etc/hostname': No such file or directory\ntouch: /etc/hosts: Read-only file system\ntouch: /etc/resolv.conf: Read-only file system\n1\nbuildkitsandbox\n",
  );
  assert.deepEqual(await readdir(path.join(step.rootfs.upperDir, 'etc')).catch(() => []), [], 'no /etc/hostname stub is left');
  const run = await sh(script, { hostname: 'kiln-test-host' });
  assert.equal(run.stdout, 'kiln-test-host\n0\nkiln-test-host\n');
});

test('a build step’s missing working directory is made for its user, a plain container’s for root', async () => {
  // dockerd 20.10's BuildKit: `WORKDIR /w/x`, `RUN rm -rf /w`, `USER 1000:1000`, `RUN true` left /w and /w/x 1000:1000 0755.
  const step = await sh('true', { cwd: '/w/x', user: '1000:1000', buildStep: true });
  assert.equal(step.exitCode, 0, step.outputTail);
  for (const p of ['w', 'w/x']) {
    const st = await stat(path.join(step.rootfs.upperDir, p));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1000, 1000, 0o755], p);
  }
  const run = await sh('true', { cwd: '/w/x', user: '1000:1000' });
  const st = await stat(path.join(run.rootfs.upperDir, 'w', 'x'));
  assert.deepEqual([st.uid, st.gid], [0, 0]);
});

test('USER strings resolve through the image’s passwd and group files', async () => {
  const ids = async (user: string) => (await sh('id -u; id -g; id -G', { user })).stdout.trim().split('\n');
  const [appUid, appGid, appGroups] = await ids('app');
  assert.equal(appUid, '1000');
  assert.equal(appGid, '1000');
  assert.deepEqual(appGroups?.split(' ').sort(), ['1000', '2000', '50']);
  assert.deepEqual(await ids('1000:50'), ['1000', '50', '50']);
  assert.deepEqual((await ids('nobody')).slice(0, 2), ['65534', '65534']);
  assert.deepEqual((await ids('4242')).slice(0, 2), ['4242', '0']);
  const home = await sh('echo $HOME', { user: 'app' });
  assert.equal(home.stdout, '/home/app\n');
  await assert.rejects(sh('true', { user: 'ghost' }), { message: 'unable to find user ghost: no matching entries in passwd file' });
  await assertNothingLeft();
});

test('a missing working directory is created and used', async () => {
  const r = await sh('pwd; touch here', { cwd: '/work/dir/deep' });
  assert.equal(r.stdout, '/work/dir/deep\n');
  await stat(path.join(r.rootfs.upperDir, 'work', 'dir', 'deep', 'here'));
});

test('env entries reach the process as given', async () => {
  const r = await sh('echo "$GREETING|$EMPTY|$HOME"', { env: ['PATH=/bin', 'GREETING=hello  world', 'EMPTY='] });
  assert.equal(r.stdout, 'hello  world||/root\n');
});

test('bind mounts (rw and ro) and tmpfs mounts are available and do not reach the upperdir', async () => {
  const shared = path.join(dir, 'shared-rw');
  const secret = path.join(dir, 'secret.txt');
  await mkdir(shared);
  await writeFile(secret, 's3cret');
  const r = await sh(
    'echo from-container > /cache/out; cat /run/secret; (echo x > /run/secret) 2>/dev/null && echo writable || echo readonly; echo t > /scratch/t; cat /scratch/t',
    {
      mounts: [
        { type: 'bind', source: shared, target: '/cache' },
        { type: 'bind', source: secret, target: '/run/secret', readonly: true },
        { type: 'tmpfs', target: '/scratch' },
      ],
    },
  );
  assert.equal(r.exitCode, 0, r.outputTail);
  assert.equal(r.stdout, 's3cretreadonly\nt\n');
  assert.equal(await readFile(path.join(shared, 'out'), 'utf8'), 'from-container\n');
  assert.equal(await readFile(secret, 'utf8'), 's3cret');
  for (const name of ['cache', 'run/secret', 'scratch']) await assert.rejects(lstat(path.join(r.rootfs.upperDir, name)), name);
  // /run was made for the /run/secret mount point: it stays, as BuildKit leaves a mount point's parents.
  assert.deepEqual(await readdir(path.join(r.rootfs.upperDir, 'run')), []);
  await assertNothingLeft();
});

test('after a normal, a failing and an aborted run nothing is left behind', async () => {
  await sh('echo ok');
  await assertNothingLeft();
  await sh('exit 3');
  await assertNothingLeft();

  const controller = new AbortController();
  const reason = new Error('stop the build');
  const marker = 'sleep 3017';
  const rootfs = await freshRootfs();
  const running = runContainer(
    { rootfs, args: ['/bin/sh', '-c', `echo started; ${marker}; echo not-reached`], env: ['PATH=/bin'], cwd: '/', network: 'none' },
    {
      stateRoot,
      signal: controller.signal,
      onOutput: (chunk) => {
        if (chunk.includes('started')) controller.abort(reason);
      },
    },
  );
  await assert.rejects(running, (err) => err === reason);
  await assertNothingLeft(marker);
});

test('a signal aborted before the start rejects without starting anything', async () => {
  const controller = new AbortController();
  controller.abort(new Error('early'));
  await assert.rejects(
    runContainer({ rootfs: await freshRootfs(), args: ['/bin/true'], env: [], cwd: '/', network: 'none' }, { stateRoot, signal: controller.signal }),
    { message: 'early' },
  );
  await assertNothingLeft();
});

test('device nodes can be made, but only the standard ones opened (Docker’s device rules)', async () => {
  // 10:237 is /dev/loop-control, which root on the host may open. Under runc the step's own cgroup
  // denies it; under crun without cgroups, kiln's shared devices cgroup does.
  const r = await sh('mknod /tmp/lc c 10 237 && mknod /tmp/nul c 1 3 && ls /tmp; (: < /tmp/lc) 2>/dev/null && echo opened-lc; echo x > /tmp/nul && echo wrote-nul');
  assert.equal(r.stdout, 'lc\nnul\nwrote-nul\n', r.outputTail);
  const ok = await sh('echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c');
  assert.equal(ok.stdout, '4\n4\n', ok.outputTail);
});

test('every container runs under Docker’s seccomp profile: it cannot make namespaces or mount', async () => {
  const r = await sh('grep "^Seccomp:" /proc/self/status; unshare -Urm true && echo unshare-ok; unshare -n true && echo netns-ok; mkdir -p /m; mount -t tmpfs none /m && echo mount-ok; echo done');
  assert.equal(r.exitCode, 0, r.outputTail);
  // 2 = SECCOMP_MODE_FILTER; 0 (no filter) was what every step had before.
  assert.match(r.stdout, /^Seccomp:\s+2$/m);
  assert.doesNotMatch(r.stdout, /unshare-ok|netns-ok|mount-ok/);
  assert.match(r.stdout, /done/);
  // Ordinary work is not affected: fork/exec, files, chown, chroot.
  const ok = await sh('echo x > /tmp/f && chown 1000:1000 /tmp/f && ls -ln /tmp/f | grep -q " 1000 " && chroot / true && echo fine');
  assert.match(ok.stdout, /fine/);
  await assertNothingLeft();
});

test('RUN --security=insecure runs privileged: every capability, no seccomp filter, nothing masked', async () => {
  // Masked and read-only paths are mounts over /proc (a /dev/null bind, a read-only bind); privileged has none of them.
  const procMounts = 'grep -cE " /proc/(keys|timer_list|sys|sysrq-trigger|bus) " /proc/self/mountinfo';
  const sandboxed = await sh(procMounts);
  assert.notEqual(sandboxed.stdout.trim(), '0', 'the sandboxed step has masked and read-only paths');
  const r = await sh(`grep -E "^(Seccomp|CapEff):" /proc/self/status; echo "proc-mounts=$(${procMounts})"`, { security: 'insecure' });
  assert.equal(r.exitCode, 0, r.outputTail);
  assert.match(r.stdout, /^Seccomp:\s+0$/m);
  const capEff = /^CapEff:\s+([0-9a-f]+)$/m.exec(r.stdout)?.[1];
  // CAP_SYS_ADMIN is bit 21: the sandboxed set never has it.
  assert.ok(capEff !== undefined && (BigInt(`0x${capEff}`) & (1n << 21n)) !== 0n, r.stdout);
  assert.match(r.stdout, /^proc-mounts=0$/m);
  await assertNothingLeft();
});

test('a step cannot write the host’s OCI runtime binary through /proc/self/exe or /proc/PID/exe (CVE-2019-5736)', async () => {
  const runtime = await detectRuntime('auto');
  const { createHash } = await import('node:crypto');
  const digest = async () => createHash('sha256').update(await readFile(runtime.path)).digest('hex');
  const before = await digest();
  // Every exe link the step can see (its own, pid 1, anything else in its pid namespace), opened for writing by
  // path and through an fd kept across the process' exit, as the CVE's payload does.
  const script = [
    'for p in /proc/[0-9]*; do',
    '  exe="$p/exe"; [ -e "$exe" ] || continue',
    '  (echo pwned >> "$exe") 2>/dev/null && echo "wrote $exe"',
    '  (exec 3<"$exe" && sleep 0 && echo pwned >> /proc/self/fd/3) 2>/dev/null && echo "wrote via fd $exe"',
    'done',
    '(echo pwned >> /proc/self/exe) 2>/dev/null && echo wrote-self',
    'echo checked',
  ].join('\n');
  const r = await sh(script);
  assert.match(r.stdout, /checked/);
  assert.doesNotMatch(r.stdout, /wrote/);
  // The runtime binary itself as the step's first process (the CVE's `#!/proc/self/exe` entry point).
  await runContainer({ rootfs: await freshRootfs(), args: ['/proc/self/exe', '--version'], env: [], cwd: '/', network: 'none' }, { stateRoot });
  assert.equal(await digest(), before, `${runtime.path} changed`);
  await assertNothingLeft();
});

test('the default network: outbound access, the host’s resolvers, and no way to the host’s loopback services', async () => {
  const net = await import('node:net');
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    s.end('host-secret\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  try {
    const r = await sh(
      [
        'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " | sort | tr "\\n" " "; echo',
        'cat /etc/resolv.conf',
        'gw=$(ip route | awk "/default/ {print \\$3}"); echo "gateway=$gw"',
        `for a in 127.0.0.1 "$gw" 10.0.2.2 169.254.1.1; do [ -n "$a" ] || continue; nc -w 2 "$a" ${port} </dev/null 2>/dev/null | grep -q host-secret && echo "reached $a"; done`,
        'echo end',
      ].join('\n'),
      { network: 'default' },
    );
    assert.equal(r.exitCode, 0, r.outputTail);
    const ifaces = r.stdout.split('\n')[0]!.trim().split(' ');
    assert.ok(ifaces.includes('lo') && ifaces.length >= 2, `an interface besides lo: ${ifaces.join(',')}`);
    assert.doesNotMatch(r.stdout, /^nameserver\s+(127\.|::1)/m);
    assert.match(r.stdout, /^nameserver\s+\S+/m);
    assert.doesNotMatch(r.stdout, /reached/);
    assert.match(r.stdout, /end/);
    assert.equal(connections, 0, 'the host server saw a connection');
  } finally {
    server.close();
  }
  // Includes the step's network namespace file (a mount in its bundle) and pasta (its command line names that file).
  await assertNothingLeft(tmp);
});

test('a default-network step reaches the Debian archive', async (t) => {
  // The archive is the one outside host these tests may talk to; the check from the host says whether it is reachable at all.
  const http = await import('node:http');
  const reachable = await new Promise<boolean>((resolve) => {
    const req = http.get('http://deb.debian.org/debian/dists/bookworm/Release', { timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
  if (!reachable) {
    t.skip('deb.debian.org is not reachable from this host');
    return;
  }
  const r = await sh('wget -q -O- http://deb.debian.org/debian/dists/bookworm/Release | head -c 100', { network: 'default' });
  assert.equal(r.exitCode, 0, r.outputTail);
  assert.match(r.stdout, /^Origin: Debian/m);
  await assertNothingLeft();
});
