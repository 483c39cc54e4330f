/**
 * The socket a `RUN --mount=type=ssh` step sees. kiln listens on a Unix socket of its own, bind-mounted at the mount's
 * target with the mount's mode and owner, and joins each connection to the user's SSH agent (`--ssh ID=SOCKET`). As
 * with BuildKit's forwarding, the step can ask the agent to sign but never sees a key, and the agent's own socket
 * (its path and permissions on this machine) never enters the container.
 *
 * The socket lives in a private 0700 directory under the system temp dir: a Unix socket path must fit in 108 bytes,
 * which a store path may not leave room for, and no other user of this machine may connect to it.
 */
import { chmod, chown, lstat, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { messageOf } from '../errors.js';
import { makeOwnedTempDir } from '../store/owner.js';

export interface AgentProxy {
  /** The proxy's socket on this machine (what the step's bind mount shows at its target). */
  readonly socket: string;
  /** Stops listening, cuts open connections and removes the socket. */
  close(): Promise<void>;
}

/** What the step sees of the socket: `mode` (default 0600), owner `uid`:`gid` (default root). */
export interface SocketAccess {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

/** Starts a proxy to the SSH agent listening on `agentSocket`. */
export async function startAgentProxy(agentSocket: string, access: SocketAccess): Promise<AgentProxy> {
  const st = await lstat(agentSocket).catch((err: unknown) => {
    throw new Error(`SSH agent socket ${agentSocket}: ${messageOf(err)}`);
  });
  if (!st.isSocket()) {
    throw new Error(`${agentSocket} is not a socket: kiln forwards SSH agents, not key files (add the key to an agent with ssh-add and pass the agent's socket)`);
  }
  const dir = makeOwnedTempDir('ssh');
  const socket = path.join(dir, 'agent.sock');
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const agent = net.connect(agentSocket);
    open.add(client);
    open.add(agent);
    // Either side going away ends the pair (an agent error reaches the client as a closed connection, as with a
    // real agent that dies).
    const drop = (): void => {
      client.destroy();
      agent.destroy();
      open.delete(client);
      open.delete(agent);
    };
    client.on('error', drop).on('close', drop);
    agent.on('error', drop).on('close', drop);
    client.pipe(agent);
    agent.pipe(client);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socket, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chown(socket, access.uid, access.gid);
    await chmod(socket, access.mode);
  } catch (err) {
    server.close();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  // Not a reason to keep the process alive on its own: the step that uses it holds the build open.
  server.unref();
  return {
    socket,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
