import assert from 'node:assert/strict';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let host: string;
before(async () => {
  sb = await sandbox();
  host = await sb.tempDir('host');
  await writeFile(path.join(host, 'secret.txt'), 'host-secret\n');
});
after(() => sb.cleanup());

test('COPY follows a symlink source inside the context, as BuildKit does', async () => {
  const context = await sb.context({ 'real/data.txt': 'inside\n', Dockerfile: 'FROM busybox\nCOPY link.txt /x\nCOPY dirlink/ /d/\n' });
  await symlink('real/data.txt', path.join(context, 'link.txt'));
  await symlink('/real', path.join(context, 'dirlink')); // absolute: taken from the context root
  const built = await sb.build({ context });
  assert.equal(await built.read('x'), 'inside\n');
  assert.equal(await built.read('d/data.txt'), 'inside\n');
});

for (const [what, dockerfile, make] of [
  ['a symlinked file', 'COPY escape /x', (ctx: string) => symlink(path.join(host, 'secret.txt'), path.join(ctx, 'escape'))],
  ['a symlinked directory', 'COPY escape/ /d/', (ctx: string) => symlink(host, path.join(ctx, 'escape'))],
  ['a path through a symlinked directory', 'COPY escape/secret.txt /x', (ctx: string) => symlink(host, path.join(ctx, 'escape'))],
  ['a wildcard under a symlinked directory', 'COPY escape/*.txt /d/', (ctx: string) => symlink(host, path.join(ctx, 'escape'))],
] as const) {
  test(`COPY of ${what} pointing out of the context reads nothing outside it`, async () => {
    const context = await sb.context({ Dockerfile: `FROM busybox\n${dockerfile}\n` });
    await mkdir(context, { recursive: true });
    await make(context);
    await assert.rejects(sb.build({ context }), /not found/);
  });
}

test('COPY refuses to merge one source’s directory into a symlink another source copies, writing nothing through it', async () => {
  const target = await sb.tempDir('link-target');
  const context = await sb.context({ 'b/x/evil': 'evil\n', Dockerfile: 'FROM busybox\nCOPY a/ b/ /dst/\n' });
  await mkdir(path.join(context, 'a'));
  await symlink(target, path.join(context, 'a', 'x'));
  await assert.rejects(sb.build({ context }), /cannot copy b\/x\/evil: \/dst\/x is a symlink copied from a\/x/);
  assert.deepEqual(await readdir(target), [], 'nothing was written through the link');
});
