/**
 * The one mapping from the host Node runs on to an OCI platform. The image-index spec asks for Go's GOOS and
 * GOARCH names (go/build's syslist: `386 amd64 arm arm64 loong64 mips mipsle mips64 mips64le ppc64 ppc64le
 * riscv64 s390x …`), and Node names some architectures differently (`x64`, `ia32`, `mipsel`) or not at all
 * (it calls little-endian POWER `ppc64` too, so the byte order decides).
 */
import { endianness } from 'node:os';
import type { Platform } from './types.js';

/** What the mapping reads from the host: Node's `process.arch`, the CPU byte order and, on 32-bit ARM, the ARM version Node was built for. */
export interface NodeArch {
  readonly arch: string;
  readonly endianness: 'BE' | 'LE';
  /** `process.config.variables.arm_version` (`'6'`, `'7'`); only read for `arm`. */
  readonly armVersion?: string | undefined;
}

/**
 * The OCI platform (Linux) of a Node architecture. arm64 carries variant `v8` and arm its ARM version (`v7`
 * unless Node was built for another), as the official images' indexes and configs do (`arm64v8`, `arm32v7`).
 */
export function ociPlatformOf(host: NodeArch): Platform {
  switch (host.arch) {
    case 'x64':
      return { architecture: 'amd64', os: 'linux' };
    case 'ia32':
      return { architecture: '386', os: 'linux' };
    case 'arm64':
      return { architecture: 'arm64', os: 'linux', variant: 'v8' };
    case 'arm':
      return { architecture: 'arm', os: 'linux', variant: /^[5-8]$/.test(host.armVersion ?? '') ? `v${host.armVersion}` : 'v7' };
    case 'ppc64':
      return { architecture: host.endianness === 'LE' ? 'ppc64le' : 'ppc64', os: 'linux' };
    case 'mipsel':
      return { architecture: 'mipsle', os: 'linux' };
    case 'mips64el':
      return { architecture: 'mips64le', os: 'linux' };
    default:
      // riscv64, s390x, loong64, mips, ppc, s390: Node's name is Go's.
      return { architecture: host.arch, os: 'linux' };
  }
}

/** The OCI platform of this process's host. */
export function hostPlatform(): Platform {
  const armVersion = (process.config.variables as { arm_version?: unknown }).arm_version;
  return ociPlatformOf({ arch: process.arch, endianness: endianness(), armVersion: typeof armVersion === 'string' ? armVersion : undefined });
}

/** `os/arch[/variant]`, leaving out arm64's default variant `v8` as containerd's `platforms.Format(Normalize(p))` does. */
export function formatPlatform(p: Platform): string {
  const variant = p.architecture === 'arm64' && p.variant === 'v8' ? undefined : p.variant;
  return `${p.os}/${p.architecture}${variant ? `/${variant}` : ''}`;
}

/** The PATH a Linux image has when its config sets none (BuildKit's `system.DefaultPathEnvUnix`). */
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
