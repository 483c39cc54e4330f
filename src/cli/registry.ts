/**
 * The CLI's registry commands: `pull`, `push`, `login`, over the registry API. Transfer progress goes to
 * stderr as JSON lines; stdout carries the manifest digest.
 */
import { login, pull, push } from '../index.js';
import { UsageError, abortOnSignals, readStdin, rootOption, runStoreCommand, storeArgs } from './args.js';

export function runRegistryCommand(command: string, argv: string[]): Promise<number> {
  return runStoreCommand(command, () => dispatch(command, argv));
}

async function dispatch(command: string, argv: string[]): Promise<number> {
  switch (command) {
    case 'pull': {
      const { values, positionals } = storeArgs(argv, { 'insecure-registry': { type: 'string', multiple: true } });
      if (positionals.length !== 1) throw new UsageError('pull takes one reference');
      const image = await pull(positionals[0]!, {
        ...rootOption(values),
        insecureRegistries: (values['insecure-registry'] as string[] | undefined) ?? [],
        onProgress: (p) => process.stderr.write(`${JSON.stringify(p)}\n`),
        signal: abortOnSignals(),
      });
      process.stdout.write(`${image.manifestDigest}\n`);
      return 0;
    }
    case 'push': {
      const { values, positionals } = storeArgs(argv, { 'insecure-registry': { type: 'string', multiple: true } });
      if (positionals.length < 1 || positionals.length > 2) throw new UsageError('push takes NAME [REF]');
      const pushed = await push(positionals[0]!, {
        ...rootOption(values),
        ...(positionals[1] !== undefined ? { ref: positionals[1] } : {}),
        insecureRegistries: (values['insecure-registry'] as string[] | undefined) ?? [],
        onProgress: (p) => process.stderr.write(`${JSON.stringify(p)}\n`),
        signal: abortOnSignals(),
      });
      process.stdout.write(`${pushed.manifestDigest}\n`);
      return 0;
    }
    case 'login': {
      const { values, positionals } = storeArgs(argv, { username: { type: 'string', short: 'u' }, password: { type: 'string', short: 'p' }, 'password-stdin': { type: 'boolean' } });
      if (positionals.length !== 1 || !values.username) throw new UsageError('login takes HOST -u USER (-p PASS | --password-stdin)');
      let password = values.password as string | undefined;
      if (values['password-stdin']) password = (await readStdin()).trim();
      if (!password) throw new UsageError('a password is needed (-p or --password-stdin)');
      await login(positionals[0]!, { username: values.username as string, password });
      process.stdout.write('Login Succeeded\n');
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}
