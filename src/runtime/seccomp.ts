/**
 * The OCI `linux.seccomp` object of a container: Docker's default profile (src/runtime/seccomp-default.ts) resolved
 * for the container's capabilities and the host's architecture. Applied to every RUN step and `kiln run`; only
 * `RUN --security=insecure` (an entitlement) goes without it, as in Docker.
 */
import { DEFAULT_ACTION, DEFAULT_SECCOMP_RULES, SECCOMP_ARCHES } from './seccomp-default.js';

/** The OCI runtime spec's seccomp object (the fields kiln sets). */
export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet: number;
  architectures: string[];
  syscalls: Array<{ names: string[]; action: string; errnoRet?: number; args?: Array<{ index: number; value: number; valueTwo?: number; op: string }> }>;
}

/** Docker's default profile for a container with `capabilities` on `arch` (Node's `process.arch`). */
export function seccompProfile(capabilities: readonly string[], arch: string = process.arch): OciSeccomp {
  const caps = new Set(capabilities);
  const syscalls: OciSeccomp['syscalls'] = [];
  for (const rule of DEFAULT_SECCOMP_RULES) {
    if (rule.arches !== undefined && !rule.arches.includes(arch)) continue;
    if (rule.includesCaps !== undefined && !rule.includesCaps.every((c) => caps.has(c))) continue;
    if (rule.excludesCaps !== undefined && rule.excludesCaps.some((c) => caps.has(c))) continue;
    const action = rule.action ?? 'SCMP_ACT_ALLOW';
    syscalls.push({
      names: [...rule.names],
      action,
      ...(rule.errnoRet === undefined ? {} : { errnoRet: rule.errnoRet }),
      ...(rule.args === undefined ? {} : { args: rule.args.map((a) => ({ index: a.index, value: a.value, valueTwo: a.valueTwo ?? 0, op: a.op })) }),
    });
  }
  return {
    defaultAction: DEFAULT_ACTION.action,
    defaultErrnoRet: DEFAULT_ACTION.errnoRet,
    architectures: [...(SECCOMP_ARCHES[arch] ?? [])],
    syscalls,
  };
}
