/**
 * Starting the OCI runtime's process: through the native addon's posix_spawn when it is built, through
 * execa otherwise. child_process (and so execa) forks, and a fork of the build's Node process costs
 * 20-50 ms here, growing with its memory; posix_spawn's cost does not. That is once per RUN step.
 */
import net from 'node:net';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { messageOf } from '../errors.js';
import { nativeSys } from '../native/sys.js';

/** How a started process ended. */
export interface ProcessEnd {
  /** Its exit code; undefined when a signal ended it or it could not be started. */
  readonly exitCode: number | undefined;
  /** The signal that ended it, e.g. 'SIGKILL'. */
  readonly signal: string | undefined;
  /** True when `signal` (the AbortSignal) was aborted while it ran. */
  readonly canceled: boolean;
  /** Why it could not be started or watched. */
  readonly error?: string;
}

/** A started process: stdin is /dev/null, stdout and stderr are piped. */
export interface StartedProcess {
  /** Its pid (undefined only when it could not be started). */
  readonly pid: number | undefined;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when it has exited and both pipes are drained; never rejects. */
  readonly ended: Promise<ProcessEnd>;
}

/** Options of {@link startProcess}. */
export interface StartProcessOptions {
  /** On abort the process gets SIGTERM, and SIGKILL after {@link forceKillAfterMs}. */
  readonly signal?: AbortSignal;
  /** @default 5000 */
  readonly forceKillAfterMs?: number;
}

/** Starts `file` (an absolute path) with `args`; see {@link StartedProcess}. */
export async function startProcess(file: string, args: readonly string[], options: StartProcessOptions = {}): Promise<StartedProcess> {
  const sys = nativeSys();
  return sys === undefined ? startWithExeca(file, args, options) : startNative(sys, file, args, options);
}

function startNative(sys: NonNullable<ReturnType<typeof nativeSys>>, file: string, args: readonly string[], options: StartProcessOptions): StartedProcess {
  const { signal, forceKillAfterMs = 5000 } = options;
  const [pid, outFd, errFd, exitFd] = sys.spawn(file, [file, ...args]);
  // Pipes wrapped as sockets: libuv polls them (fs streams would park a threadpool thread on each read).
  const pipe = (fd: number): net.Socket => new net.Socket({ fd, readable: true, writable: false });
  const stdout = pipe(outFd);
  const stderr = pipe(errFd);
  const exit = pipe(exitFd);
  const drained = (s: Readable): Promise<void> => new Promise((resolve) => s.once('close', () => resolve()));
  let status = '';
  exit.setEncoding('utf8');
  exit.on('data', (chunk: string) => (status += chunk));

  let canceled = false;
  let forceKill: NodeJS.Timeout | undefined;
  const onAbort = (): void => {
    canceled = true;
    kill(pid, 'SIGTERM');
    forceKill = setTimeout(() => kill(pid, 'SIGKILL'), forceKillAfterMs);
  };
  if (signal?.aborted === true) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });

  const ended = Promise.all([drained(exit), drained(stdout), drained(stderr)]).then((): ProcessEnd => {
    signal?.removeEventListener('abort', onAbort);
    clearTimeout(forceKill);
    const wait = Number.parseInt(status, 10);
    if (!Number.isInteger(wait)) return { exitCode: undefined, signal: undefined, canceled, error: `no exit status for process ${pid}` };
    // The wait(2) status: WIFEXITED when the low 7 bits are 0, the exit code in bits 8-15; else the signal.
    const termSignal = wait & 0x7f;
    if (termSignal === 0) return { exitCode: (wait >> 8) & 0xff, signal: undefined, canceled };
    const name = Object.entries(constants.signals).find(([, n]) => n === termSignal)?.[0];
    return { exitCode: undefined, signal: name ?? `signal ${termSignal}`, canceled };
  });
  return { pid, stdout, stderr, ended };
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone (the reaper thread may have collected it)
  }
}

async function startWithExeca(file: string, args: readonly string[], options: StartProcessOptions): Promise<StartedProcess> {
  const { execa } = await import('execa');
  const subprocess = execa(file, [...args], {
    stdin: 'ignore',
    buffer: false,
    reject: false,
    ...(options.signal === undefined ? {} : { cancelSignal: options.signal }),
    forceKillAfterDelay: options.forceKillAfterMs ?? 5000,
  });
  const ended = subprocess.then(
    (r): ProcessEnd => ({
      exitCode: r.exitCode,
      signal: r.signal,
      canceled: r.isCanceled,
      ...(r.exitCode === undefined && r.signal === undefined ? { error: messageOf(r.originalMessage ?? r.message) } : {}),
    }),
    (cause: unknown): ProcessEnd => ({ exitCode: undefined, signal: undefined, canceled: false, error: messageOf(cause) }),
  );
  return { pid: subprocess.pid, stdout: subprocess.stdout, stderr: subprocess.stderr, ended };
}
