/**
 * In docker an ignored file is not in the build context at all: no source path, no symlink in the context and no
 * bind mount of the context may reach it. (BuildKit receives only the filtered files; symlinks are resolved inside
 * what it received.)
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let context: string;
before(async () => {
  sb = await sandbox();
  context = await sb.context({
    '.dockerignore': 'ignored.txt\nsecret\n',
    'ignored.txt': 'IGNORED-CONTENT\n',
    'keep.txt': 'keep\n',
    'secret/key': 'SECRET-KEY\n',
  });
  await symlink('ignored.txt', path.join(context, 'link_ign'));
  await symlink('.', path.join(context, 'self'));
  await symlink('/secret', path.join(context, 'abs_secret'));
});
after(() => sb.cleanup());

for (const [what, dockerfile] of [
  ['COPY of a symlink to an ignored file', 'COPY link_ign /x'],
  ['COPY of an ignored file through a symlink to the context root', 'COPY self/ignored.txt /x'],
  ['COPY of an ignored directory through an absolute symlink', 'COPY abs_secret/key /x'],
  ['ADD of a symlink to an ignored file', 'ADD link_ign /x'],
] as const) {
  test(`${what} finds nothing`, async () => {
    await assert.rejects(sb.build({ context, dockerfileText: `FROM scratch\n${dockerfile}\n` }), /not found/);
  });
}

test('COPY of a symlink to the context root copies the filtered context', async () => {
  const built = await sb.build({ context, dockerfileText: 'FROM scratch\nCOPY self /x\nCOPY self/*.txt /w/\n' });
  const names = (await readdir(path.join(built.fs, 'x'))).sort();
  assert.ok(names.includes('keep.txt'));
  assert.ok(!names.includes('ignored.txt'), `ignored.txt copied: ${names.join(' ')}`);
  assert.ok(!names.includes('secret'), `secret copied: ${names.join(' ')}`);
  assert.deepEqual(await readdir(path.join(built.fs, 'w')), ['keep.txt']);
});

for (const [what, run] of [
  ['the ignored file', 'cat /m/ignored.txt'],
  ['the ignored file through a symlink', 'cat /m/link_ign'],
  ['the ignored file through a symlink to the root', 'cat /m/self/ignored.txt'],
  ['the ignored directory', 'ls /m/secret'],
] as const) {
  for (const rw of ['', ',rw']) {
    test(`RUN --mount=type=bind${rw} of the context does not show ${what}`, async () => {
      await assert.rejects(
        sb.build({ context, dockerfileText: `FROM busybox:latest\nRUN --mount=type=bind,target=/m${rw} ${run} > /out\n` }),
        /did not complete successfully/,
      );
    });
  }
}

test('RUN --mount=type=bind of the context shows what is not ignored, writes of a rw bind stay private', async () => {
  const built = await sb.build({
    context,
    dockerfileText: 'FROM busybox:latest\nRUN --mount=type=bind,target=/m,rw cat /m/keep.txt > /out && ls -a /m | sort > /list && echo w > /m/new\n',
  });
  assert.equal(await built.read('out'), 'keep\n');
  assert.deepEqual((await built.read('list')).split('\n').filter(Boolean), ['.', '..', '.dockerignore', 'abs_secret', 'keep.txt', 'link_ign', 'self']);
  assert.ok(!(await readdir(context)).includes('new'), 'a rw bind never writes to the context');
});

test('a bind mount of a subdirectory hides what is ignored below it', async () => {
  const ctx = await sb.context({ '.dockerignore': 'app/*.log\n', 'app/main': 'main\n', 'app/debug.log': 'LOG\n' });
  await mkdir(path.join(ctx, 'app', 'sub'));
  await writeFile(path.join(ctx, 'app', 'sub', 'x.log'), 'kept: pattern is one level\n');
  const built = await sb.build({
    context: ctx,
    dockerfileText: 'FROM busybox:latest\nRUN --mount=type=bind,source=app,target=/a ls -R /a > /list; test ! -e /a/debug.log\n',
  });
  const list = await built.read('list');
  assert.match(list, /main/);
  assert.match(list, /x\.log/);
  assert.doesNotMatch(list, /debug\.log/);
});
