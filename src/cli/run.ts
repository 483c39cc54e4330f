/**
 * `kiln run [--network default|none|host] IMAGE [COMMAND...]`, over the API's `run`: the container's output goes
 * to the CLI's stdout and stderr, its exit code becomes the CLI's.
 */
import { run } from '../index.js';
import { UsageError, rootOption, runStoreCommand, storeArgs } from './args.js';

export function runRunCommand(argv: string[]): Promise<number> {
  return runStoreCommand('run', async () => {
    // Options come before IMAGE; everything after it is the command, dashes and all (`run img sh -c …`).
    let split = 0;
    while (split < argv.length && argv[split]!.startsWith('-')) split += argv[split]!.includes('=') ? 1 : 2;
    const { values, positionals: imageArg } = storeArgs(argv.slice(0, split + 1), { network: { type: 'string' } });
    const positionals = [...imageArg, ...argv.slice(split + 1)];
    if (positionals.length < 1) throw new UsageError('run takes IMAGE [COMMAND...]');
    const network = runNetwork(values.network);
    const controller = new AbortController();
    process.once('SIGINT', () => controller.abort(new Error('interrupted')));
    const result = await run(positionals[0]!, {
      ...rootOption(values),
      command: positionals.slice(1),
      network,
      signal: controller.signal,
      onOutput: (chunk, stream) => (stream === 'stdout' ? process.stdout : process.stderr).write(chunk),
    });
    return result.exitCode;
  });
}

/** `kiln run --network`: the same modes as RUN steps, the sandboxed network by default (as `docker run`'s bridge). */
function runNetwork(value: unknown): 'default' | 'none' | 'host' {
  if (value === undefined || value === 'default' || value === 'bridge') return 'default';
  if (value === 'none' || value === 'host') return value;
  throw new UsageError(`invalid --network: ${String(value)} (default, none or host)`);
}
