// The one host → OCI platform mapping. Expected names are Go's GOARCH values as the OCI image-index spec asks
// (containerd/platforms' known architectures: 386 amd64 arm arm64 loong64 mips mipsle mips64 mips64le ppc64 ppc64le
// riscv64 s390x …) and the variants the official images use (docker-library's arm32v6/arm32v7/arm64v8).
import assert from 'node:assert/strict';
import { machine } from 'node:os';
import { test } from 'node:test';
import { formatPlatform, hostPlatform, ociPlatformOf } from '../../src/oci/platform.js';

test("Node's process.arch names map to Go's GOARCH names", () => {
  const le = (arch: string) => ociPlatformOf({ arch, endianness: 'LE' });
  assert.deepEqual(le('x64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(le('ia32'), { os: 'linux', architecture: '386' });
  assert.deepEqual(le('arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
  assert.deepEqual(le('riscv64'), { os: 'linux', architecture: 'riscv64' });
  assert.deepEqual(le('loong64'), { os: 'linux', architecture: 'loong64' });
  assert.deepEqual(le('mipsel'), { os: 'linux', architecture: 'mipsle' });
  assert.deepEqual(le('mips64el'), { os: 'linux', architecture: 'mips64le' });
  assert.deepEqual(ociPlatformOf({ arch: 's390x', endianness: 'BE' }), { os: 'linux', architecture: 's390x' });
});

test('Node calls both POWER byte orders ppc64: little-endian is ppc64le, big-endian ppc64', () => {
  assert.deepEqual(ociPlatformOf({ arch: 'ppc64', endianness: 'LE' }), { os: 'linux', architecture: 'ppc64le' });
  assert.deepEqual(ociPlatformOf({ arch: 'ppc64', endianness: 'BE' }), { os: 'linux', architecture: 'ppc64' });
});

test('32-bit ARM gets the ARM version Node was built for as its variant, v7 when unknown', () => {
  assert.deepEqual(ociPlatformOf({ arch: 'arm', endianness: 'LE' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.deepEqual(ociPlatformOf({ arch: 'arm', endianness: 'LE', armVersion: '6' }), { os: 'linux', architecture: 'arm', variant: 'v6' });
  assert.deepEqual(ociPlatformOf({ arch: 'arm', endianness: 'LE', armVersion: '7' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
});

test("platform strings leave out arm64's default variant, as containerd's Format(Normalize(p)) does", () => {
  assert.equal(formatPlatform({ os: 'linux', architecture: 'arm64', variant: 'v8' }), 'linux/arm64');
  assert.equal(formatPlatform({ os: 'linux', architecture: 'arm', variant: 'v7' }), 'linux/arm/v7');
  assert.equal(formatPlatform({ os: 'linux', architecture: 'amd64' }), 'linux/amd64');
});

// The kernel's machine name (uname -m) is a second witness of the host, independent of Node's arch names; the
// table is containerd's normalizeArch for the kernel names it knows.
const KERNEL_MACHINE: Readonly<Record<string, string>> = { x86_64: 'amd64', aarch64: 'arm64', ppc64le: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

test('the host platform agrees with the kernel machine name', (t) => {
  const want = KERNEL_MACHINE[machine()];
  if (want === undefined) return t.skip(`no expectation for machine ${machine()}`);
  assert.equal(hostPlatform().architecture, want);
  assert.equal(hostPlatform().os, 'linux');
});
