// A build in a process of its own, for the crash tests (crash-recovery.test.ts), which kill it with SIGKILL.
// argv: STORE_ROOT CONTEXT DOCKERFILE_TEXT [SECRET_FILE]. Prints READY when a step prints "ready", DONE at the end.
import { build } from '../../src/builder/build.js';

const [root, context, dockerfileText, secret] = process.argv.slice(2);
const result = await build({
  root: root!,
  context: context!,
  dockerfileText: dockerfileText!,
  tags: ['crash:latest'],
  ...(secret === undefined ? {} : { secrets: [{ id: 's', src: secret }] }),
  onEvent: (e) => {
    if (e.type === 'step-output' && e.chunk.includes('ready')) process.stdout.write('READY\n');
  },
});
process.stdout.write(`DONE ${result.manifestDigest}\n`);
