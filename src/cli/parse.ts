/**
 * `kiln parse [--format json|dump] FILE|-`: the parsed Dockerfile on stdout, as kiln's typed instructions (JSON)
 * or BuildKit's AST dump.
 */
import { readFile } from 'node:fs/promises';
import { DockerfileError, dumpDockerfile, formatError, parse } from '../index.js';
import { UsageError, parseArgv, readStdin } from './args.js';

export async function runParseCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgv(args, { format: { type: 'string', default: 'json' } });
  const format = values.format as string;
  if (format !== 'json' && format !== 'dump') throw new UsageError(`--format must be json or dump, not ${format}`);
  if (positionals.length !== 1) throw new UsageError('parse takes one FILE (or - for stdin)');
  const file = positionals[0]!;
  const text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  const name = file === '-' ? 'Dockerfile' : file;
  try {
    if (format === 'dump') {
      process.stdout.write(dumpDockerfile(text, { file: name }));
    } else {
      const df = parse(text, { file: name });
      process.stdout.write(`${JSON.stringify({ directives: df.directives, escapeToken: df.escapeToken, warnings: df.warnings, instructions: df.instructions }, null, 2)}\n`);
    }
    return 0;
  } catch (err) {
    if (err instanceof DockerfileError) {
      process.stderr.write(`${formatError(err, text)}\n`);
      return 1;
    }
    throw err;
  }
}
