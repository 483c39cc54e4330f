/**
 * Starts a real registry (Debian's `docker-registry`, distribution 2.8) on 127.0.0.1 with its storage
 * in a temp dir, for the registry tests. Only loopback addresses are ever used.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { MEDIA_TYPES } from '../../src/oci/types.js';
import type { ImageConfig } from '../../src/oci/types.js';
import type { LayerInfo, LayerStoreApi, StoredImage } from '../../src/store/types.js';

/** A running test registry. */
export interface TestRegistry {
  /** `127.0.0.1:PORT`. */
  readonly host: string;
  /** The temp dir holding config, htpasswd and storage. */
  readonly dir: string;
  /** Kills the registry process (SIGKILL) but keeps its storage, so {@link restart} brings the same content back. */
  kill(): Promise<void>;
  /** Starts the registry again on the same port with the same storage. */
  restart(): Promise<void>;
  /** Kills the registry and removes its temp dir. */
  stop(): Promise<void>;
}

/** Options of {@link startRegistry}. */
export interface StartRegistryOptions {
  /** Require basic auth with this user (an htpasswd file made by `htpasswd -Bbn`). */
  readonly htpasswd?: { readonly user: string; readonly password: string };
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

/** Waits until `http://host/v2/` answers (200 or 401). */
async function waitReady(host: string, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${String(child.exitCode)}: ${log()}`);
    try {
      const r = await fetch(`http://${host}/v2/`);
      await r.body?.cancel();
      if (r.status === 200 || r.status === 401) return;
    } catch {
      // not listening yet
    }
    await delay(50);
  }
  throw new Error(`docker-registry on ${host} did not answer: ${log()}`);
}

/** Starts `docker-registry serve` on a random free port of 127.0.0.1. */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'kiln-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${String(port)}`;
  let auth = '';
  if (options.htpasswd !== undefined) {
    const { stdout } = await execa('htpasswd', ['-Bbn', options.htpasswd.user, options.htpasswd.password]);
    await writeFile(join(dir, 'htpasswd'), `${stdout.trim()}\n`);
    auth = `auth:\n  htpasswd:\n    realm: kiln-test\n    path: ${join(dir, 'htpasswd')}\n`;
  }
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${host}`,
    auth,
  ].join('\n');
  await writeFile(join(dir, 'config.yml'), config);

  let child: ChildProcess | undefined;
  let output = '';
  const start = async (): Promise<void> => {
    output = '';
    const c = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    await waitReady(host, c, () => output.slice(-2000));
  };
  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGKILL');
    await exited;
  };
  try {
    await start();
  } catch (err) {
    await kill();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    host,
    dir,
    kill,
    restart: async () => {
      await kill();
      await start();
    },
    stop: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A tar archive of regular files (sorted, fixed metadata), as one Buffer. */
export async function makeTar(files: Record<string, string | Uint8Array>): Promise<Buffer> {
  const { pack } = await import('tar-stream');
  const p = pack();
  const chunks: Buffer[] = [];
  p.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = once(p, 'end');
  for (const name of Object.keys(files).sort()) {
    const body = files[name] ?? '';
    const content = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
    await new Promise<void>((resolve, reject) => {
      p.entry({ name, size: content.length, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '' }, content, (err) => (err ? reject(err) : resolve()));
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/**
 * Puts an image made of the given layers (each a set of files) into a store the way the builder
 * does: uncompressed layers (digest = diffID), an OCI config and manifest. Returns the stored image.
 */
export async function makeStoreImage(
  store: LayerStoreApi,
  layers: ReadonlyArray<Record<string, string | Uint8Array>>,
  config: Partial<ImageConfig> = {},
): Promise<StoredImage> {
  const infos: LayerInfo[] = [];
  for (const files of layers) {
    const tar = await makeTar(files);
    const { digest, size } = await store.writeBlobBytes(tar);
    infos.push({ diffId: digest, digest, size, mediaType: MEDIA_TYPES.ociLayer });
  }
  const full: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
    ...config,
    rootfs: { type: 'layers', diff_ids: infos.map((l) => l.diffId) },
  };
  return store.putImage(full, infos);
}

/**
 * Throwaway HTTP servers on 127.0.0.1 that misbehave on purpose (tests of the blob download): `serve` starts
 * one and returns its `host:port`, `closeAll` (for `after`) stops every one it started.
 */
export function loopbackHttp(): { serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string>; closeAll(): void } {
  const servers: HttpServer[] = [];
  return {
    async serve(handler) {
      const server = createHttpServer(handler);
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const addr = server.address();
      if (addr === null || typeof addr !== 'object') throw new Error('the test server has no address');
      return `127.0.0.1:${String(addr.port)}`;
    },
    closeAll() {
      for (const s of servers) {
        s.closeAllConnections();
        s.close();
      }
    },
  };
}
