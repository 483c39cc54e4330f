/**
 * `RUN --mount=type=ssh`: a socket that reaches an SSH agent given with `--ssh` (through a proxy of kiln's, so the
 * agent's own socket never enters the container).
 */
import { messageOf } from '../../errors.js';
import type { SshMount } from '../../parser/instructions.js';
import { failStep, type MountEnv, type MountModule } from './mount.js';

export const ssh: MountModule<SshMount> = {
  type: 'ssh',
  // The empty field is cache sharing, from when every mount type shared one key: keys recorded then still match.
  cacheKey: async (m) => `ssh ${m.target ?? ''} ${m.id ?? ''}  ${m.mode ?? ''} ${m.uid ?? ''} ${m.gid ?? ''}`,

  async prepare(m, setup) {
    // As BuildKit: the Nth ssh mount defaults to /run/buildkit/ssh_agent.N, and the first one's path becomes
    // SSH_AUTH_SOCK unless the step's environment already has one.
    const id = m.id ?? 'default';
    const socketTarget = setup.target ?? `/run/buildkit/ssh_agent.${setup.ordinal}`;
    const env: Partial<MountEnv> = setup.ordinal === 0 ? { defaults: [`SSH_AUTH_SOCK=${socketTarget}`] } : {};
    const agent = setup.ctx.options.ssh.find((a) => a.id === id);
    if (agent === undefined) {
      if (m.required) failStep(setup, `no SSH agent for id ${JSON.stringify(id)}: pass one with --ssh ${id}=SOCKET (or --ssh ${id} for $SSH_AUTH_SOCK)`);
      return { env };
    }
    const { startAgentProxy } = await import('../../runtime/ssh-agent-proxy.js');
    const proxy = await startAgentProxy(agent.socket, { mode: m.mode ?? 0o600, uid: m.uid ?? 0, gid: m.gid ?? 0 }).catch((err: unknown) =>
      failStep(setup, `ssh mount ${JSON.stringify(id)}: ${messageOf(err)}`),
    );
    setup.defer(() => proxy.close());
    return { env, mounts: [{ type: 'bind', source: proxy.socket, target: socketTarget, readonly: false }] };
  },
};
