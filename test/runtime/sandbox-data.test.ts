// The data behind the sandbox: Docker's seccomp profile per capability set, the compiled-filter cache, and the
// resolv.conf a step gets.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { containerResolvConf } from '../../src/runtime/network.js';
import { detectRuntime } from '../../src/runtime/oci-runtime.js';
import { compiledSeccomp } from '../../src/runtime/seccomp-bpf-cache.js';
import { seccompProfile } from '../../src/runtime/seccomp.js';

const DOCKER_CAPS = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'];
const allowedNames = (p: ReturnType<typeof seccompProfile>): Set<string> =>
  new Set(p.syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW' && s.args === undefined).flatMap((s) => s.names));

test('Docker’s default capabilities get the allow-list without namespace, mount, module, clock or keyring calls', () => {
  const p = seccompProfile(DOCKER_CAPS, 'x64');
  assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(p.defaultErrnoRet, 1);
  assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const allowed = allowedNames(p);
  for (const name of ['read', 'write', 'openat', 'execve', 'fork', 'chown', 'chroot', 'arch_prctl', 'ptrace', 'statx']) assert.ok(allowed.has(name), name);
  // Docker's documented list of blocked calls (for a container without extra capabilities).
  for (const name of ['mount', 'umount2', 'unshare', 'setns', 'pivot_root', 'bpf', 'add_key', 'keyctl', 'request_key', 'init_module', 'kexec_load', 'reboot', 'swapon', 'clock_settime', 'settimeofday', 'acct', 'open_by_handle_at', 'perf_event_open', 'userfaultfd', 'io_uring_setup', 'clone', 'clone3', 'personality', 'socket']) {
    assert.ok(!allowed.has(name), `${name} is allowed unconditionally`);
  }
  // clone only without namespace flags; clone3 says ENOSYS so that libcs use clone.
  const clone = p.syscalls.find((s) => s.names.includes('clone') && s.args !== undefined);
  assert.deepEqual(clone?.args, [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
  assert.deepEqual(p.syscalls.find((s) => s.names.includes('clone3')), { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
});

test('a capability opens exactly the calls Docker ties to it', () => {
  const admin = allowedNames(seccompProfile([...DOCKER_CAPS, 'CAP_SYS_ADMIN'], 'x64'));
  for (const name of ['mount', 'umount2', 'unshare', 'setns', 'clone', 'clone3']) assert.ok(admin.has(name), name);
  assert.ok(!allowedNames(seccompProfile(DOCKER_CAPS.filter((c) => c !== 'CAP_SYS_CHROOT'), 'x64')).has('chroot'));
  assert.ok(allowedNames(seccompProfile([...DOCKER_CAPS, 'CAP_SYS_TIME'], 'x64')).has('clock_settime'));
});

test('crun compiles the profile once; the filter is cached root-only and read back', async () => {
  const runtime = await detectRuntime('crun');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-seccomp-cache-test-'));
  try {
    const profile = seccompProfile(DOCKER_CAPS);
    const first = await compiledSeccomp(runtime, profile, DOCKER_CAPS, dir);
    assert.ok(first !== undefined && first.length > 0, 'crun compiled the profile');
    assert.equal(Buffer.from(first, 'base64').length % 8, 0, 'a whole number of BPF instructions');
    const [file, ...more] = await readdir(dir);
    assert.deepEqual(more, []);
    assert.equal((await stat(path.join(dir, file!))).mode & 0o777, 0o600);
    assert.equal(await compiledSeccomp(runtime, profile, DOCKER_CAPS, dir), first);
    // runc does not read the annotation: no compiled filter, it compiles linux.seccomp itself.
    assert.equal(await compiledSeccomp({ ...runtime, name: 'runc' }, profile, DOCKER_CAPS, dir), undefined);
    // Filters of other profiles or crun versions do not pile up: the newest three others stay beside the new one.
    const stale = ['a', 'b', 'c', 'd', 'e'].map((c, i) => ({ name: `seccomp-${c.repeat(32)}.bpf`, age: i + 1 }));
    for (const s of stale) {
      await writeFile(path.join(dir, s.name), 'x');
      const when = new Date(Date.now() - s.age * 60_000);
      await utimes(path.join(dir, s.name), when, when);
    }
    await compiledSeccomp({ ...runtime, version: 'other' }, profile, DOCKER_CAPS, dir);
    const names = await readdir(dir);
    // The new filter, and of the others the newest three: the first one (written just now), a and b.
    assert.equal(names.length, 4, names.join(' '));
    for (const keep of [file!, stale[0]!.name, stale[1]!.name]) assert.ok(names.includes(keep), `${keep} is among the newest others`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('resolv.conf keeps the host’s resolvers but not loopback ones, and falls back to the DNS forwarder', () => {
  assert.deepEqual(containerResolvConf('search corp\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\n', '169.254.1.1'), {
    text: 'search corp\nnameserver 10.0.0.2\noptions edns0\n',
    forwarder: false,
  });
  assert.deepEqual(containerResolvConf('nameserver 127.0.0.53\nnameserver ::1\noptions edns0 trust-ad\nsearch .\n', '169.254.1.1'), {
    text: 'options edns0 trust-ad\nsearch .\nnameserver 169.254.1.1\n',
    forwarder: true,
  });
  assert.equal(containerResolvConf('nameserver 127.0.0.1\n', undefined).text, '');
});
