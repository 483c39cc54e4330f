/**
 * Runs an image's command in a container, as `docker run --rm IMAGE [CMD…]` would: the image's
 * layers as overlay lowerdirs, a throwaway upperdir, its Env, WorkingDir, User, Entrypoint and Cmd.
 * Used by `kiln run` (the README demo) and by tests that show a built image works.
 */
import { mkdir, rm } from 'node:fs/promises';
import { ownedName } from '../store/owner.js';
import { spreadSubdirs } from '../native/sys.js';
import path from 'node:path';
import type { LayerStoreApi, StoredImage } from '../store/types.js';
import { runContainer } from './container.js';
import type { NetworkMode } from './network.js';
import type { Host } from './host.js';

export interface RunImageOptions {
  /** Replaces the image's Cmd (as arguments after the image name do). */
  readonly command?: readonly string[];
  /** @default 'default' (a sandboxed network with outbound access, see src/runtime/network.ts) */
  readonly network?: NetworkMode;
  readonly signal?: AbortSignal;
  readonly onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => void;
  /** What is known about this host (see runtime/host.ts). @default a fresh one */
  readonly host?: Host;
}

/** Runs the image and resolves to the command's exit code. */
export async function runImage(image: StoredImage, store: LayerStoreApi, options: RunImageOptions = {}): Promise<number> {
  const cfg = image.config.config;
  const cmd = options.command && options.command.length > 0 ? [...options.command] : (cfg.Cmd ?? []);
  const argv = [...(cfg.Entrypoint ?? []), ...cmd];
  if (argv.length === 0) throw new Error('no command specified: the image has no Entrypoint or Cmd');
  const lowerDirs: string[] = [];
  for (const diffId of [...image.config.rootfs.diff_ids].reverse()) lowerDirs.push(await store.unpackedLayer(diffId, options.signal ? { signal: options.signal } : {}));
  await mkdir(path.join(store.root, 'tmp'), { recursive: true });
  spreadSubdirs(path.join(store.root, 'tmp'));
  const scratch = path.join(store.root, 'tmp', ownedName('run'));
  await mkdir(scratch, { mode: 0o700 });
  try {
    await mkdir(path.join(scratch, 'upper'));
    await mkdir(path.join(scratch, 'work'));
    const result = await runContainer(
      {
        rootfs: { lowerDirs, upperDir: path.join(scratch, 'upper'), workDir: path.join(scratch, 'work') },
        args: argv,
        env: cfg.Env ?? [],
        cwd: cfg.WorkingDir || '/',
        ...(cfg.User ? { user: cfg.User } : {}),
        network: options.network ?? 'default',
      },
      {
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onOutput ? { onOutput: options.onOutput } : {}),
        ...(options.host ? { host: options.host } : {}),
      },
    );
    return result.exitCode;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
