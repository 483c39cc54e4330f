/**
 * `run`: an image's command in a container, as `docker run --rm IMAGE [COMMAND…]` (`kiln run`).
 */
import type { Host } from '../runtime/host.js';
import type { StoreOptions } from './store.js';
import { findImage, openStore } from './store.js';

/** Options of {@link run}. */
export interface RunOptions extends StoreOptions {
  /** Replaces the image's Cmd (its Entrypoint stays), as arguments after the image name do. */
  readonly command?: readonly string[];
  /**
   * `default`: a sandboxed network of the container's own with outbound access (as docker's bridge); `none`:
   * loopback only; `host`: the host's network. @default 'default'
   */
  readonly network?: 'default' | 'none' | 'host';
  /** Kills the container; the promise then rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
  /** The command's output as it comes. Without it the output is dropped. */
  readonly onOutput?: (chunk: string, stream: 'stdout' | 'stderr') => void;
  /** What kiln knows about this machine, shared with builds given the same one (see `createHost`). @default a fresh one */
  readonly host?: Host;
}

/** How a {@link run} ended. */
export interface RunResult {
  /** The command's exit code (128 + the signal's number when a signal ended it). */
  readonly exitCode: number;
}

/**
 * Runs an image's Entrypoint and Cmd (or `command`) with its Env, WorkingDir and User over a throwaway layer,
 * and resolves when the command ends; a nonzero exit is a result, not an error.
 * @throws ImageNotFoundError; RuntimeError when the container cannot start
 */
export async function run(name: string, options: RunOptions = {}): Promise<RunResult> {
  const store = await openStore(options.root);
  const image = await findImage(store, name);
  const { runImage } = await import('../runtime/run-image.js');
  const exitCode = await runImage(image, store, {
    ...(options.command ? { command: options.command } : {}),
    ...(options.network ? { network: options.network } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.onOutput ? { onOutput: options.onOutput } : {}),
    ...(options.host ? { host: options.host } : {}),
  });
  return { exitCode };
}
