import assert from 'node:assert/strict';
import { readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

test('a rw bind of a context file lets the step write to it, and the context file is unchanged', async () => {
  const context = await sb.context({
    'input.txt': 'original\n',
    Dockerfile: 'FROM busybox\nRUN --mount=type=bind,source=input.txt,target=/mnt/in.txt,rw echo changed > /mnt/in.txt && cat /mnt/in.txt > /seen\n',
  });
  const built = await sb.build({ context });
  assert.equal(await built.read('seen'), 'changed\n', 'the step saw its own write');
  assert.equal(await readFile(path.join(context, 'input.txt'), 'utf8'), 'original\n', 'the context file is untouched');
});

test('a bind source that is a symlink out of the context resolves inside the context, never to the host', async () => {
  const host = await sb.tempDir('host');
  await writeFile(path.join(host, 'secret.txt'), 'host-secret\n');
  const context = await sb.context({
    Dockerfile: 'FROM busybox\nRUN --mount=type=bind,source=escape,target=/mnt/x cat /mnt/x > /seen\n',
  });
  // An absolute link target is taken relative to the context root, as BuildKit scopes bind sources.
  await symlink(path.join(host, 'secret.txt'), path.join(context, 'escape'));
  await assert.rejects(sb.build({ context }), (err: unknown) => {
    assert.match((err as Error).message, /"?\/?escape"?: not found/);
    return true;
  });
});
