/**
 * Which network and security mode a RUN step gets, and whether the build was granted them. As in BuildKit,
 * `RUN --network=host` needs the `network.host` entitlement and `RUN --security=insecure` needs `security.insecure`
 * (`kiln build --allow …`, the API's `allow`); without the grant the step is refused at its line.
 */
import type { RunInstruction } from '../parser/instructions.js';
import type { ResolvedBuildOptions } from './options.js';

/** A RUN step's resolved network and security mode. */
export interface RunPrivileges {
  readonly network: 'default' | 'none' | 'host';
  readonly security: 'sandbox' | 'insecure';
}

/**
 * `RUN --network=default` (or no flag) takes the build's network; an explicit mode wins. `refuse` throws the error
 * for the step's location.
 */
export function runPrivileges(
  ins: Pick<RunInstruction, 'network' | 'security'>,
  options: Pick<ResolvedBuildOptions, 'network' | 'allow'>,
  refuse: (message: string) => never,
): RunPrivileges {
  const network = ins.network === undefined || ins.network === 'default' ? options.network : ins.network;
  // Only a Dockerfile's own --network=host needs the grant: the build's network comes from the caller, whose
  // choice of `host` is itself the grant (see resolveBuildOptions).
  if (network === 'host' && !options.allow.includes('network.host')) {
    refuse('RUN --network=host needs the network.host entitlement: pass --allow network.host (API: allow: [\'network.host\'])');
  }
  const security = ins.security === 'insecure' ? 'insecure' : 'sandbox';
  if (security === 'insecure' && !options.allow.includes('security.insecure')) {
    refuse('RUN --security=insecure needs the security.insecure entitlement: pass --allow security.insecure (API: allow: [\'security.insecure\'])');
  }
  return { network, security };
}
