/**
 * What the CLI's commands share: the usage error, strict argv parsing, stdin, and the runner of the store
 * commands (their `--root` option, their error output and exit codes).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A command line the CLI refuses: exit code 2. */
export class UsageError extends Error {}

/** `parseArgs` with positionals, strict; a parse failure is a {@link UsageError}. */
export function parseArgv(args: string[], options: ParseArgsConfig['options']): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args, options: options ?? {}, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A store command's argv with `--root` (every store command takes it) and the command's own options. */
export function storeArgs(argv: string[], options: NonNullable<ParseArgsConfig['options']> = {}): ReturnType<typeof parseArgs> {
  return parseArgv(argv, { root: { type: 'string' }, ...options });
}

/** The `--root` option as the API takes it. */
export function rootOption(values: ReturnType<typeof parseArgs>['values']): { root?: string } {
  return typeof values.root === 'string' ? { root: values.root } : {};
}

/**
 * Runs a store command (`images`, `pull`, `run`, …): a usage error prints `kiln COMMAND: message` and exits 2,
 * any other error its formatted message and exits 1.
 */
export async function runStoreCommand(command: string, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kiln ${command}: ${err.message}\n`);
      return 2;
    }
    // Imported here, not at the top: main.ts imports this module, and `kiln --version` should load no API.
    const { formatError } = await import('../index.js');
    process.stderr.write(`${formatError(err)}\n`);
    return 1;
  }
}

/**
 * A signal that SIGINT or SIGTERM aborts, so a pull or push stops at once and removes its temp files; a second
 * SIGINT gets Node's default (the process ends).
 */
export function abortOnSignals(): AbortSignal {
  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return controller.signal;
}
