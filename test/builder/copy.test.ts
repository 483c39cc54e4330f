import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DockerfileError, StepFailedError } from '../../src/errors.js';
import { fixturesDir, sandbox, type Built, type Sandbox } from './helpers.js';

let sb: Sandbox;
let built: Built;
before(async () => {
  sb = await sandbox();
  built = await sb.build({ context: path.join(fixturesDir, 'copy') });
});
after(() => sb.cleanup());

const ls = async (p: string): Promise<string[]> => (await readdir(path.join(built.fs, p))).sort();

test('COPY of a file to a path without a trailing slash names the file', async () => {
  assert.equal(await built.read('file-as-name'), 'a\n');
});

test('COPY of a file to a path with a trailing slash copies into that directory', async () => {
  assert.equal(await built.read('into-dir/a.txt'), 'a\n');
});

test('COPY of a directory copies its contents, minus .dockerignore matches', async () => {
  assert.deepEqual(await ls('dir-contents'), ['keep.log', 'nested', 'top.txt']);
  assert.equal(await built.read('dir-contents/nested/n.txt'), 'n\n');
});

test('COPY wildcards and multiple sources copy into the destination directory, skipping ignored files', async () => {
  assert.deepEqual(await ls('globbed'), ['a.txt', 'b.txt']);
  assert.deepEqual(await ls('multi'), ['a.txt', 'b.txt']);
});

test('COPY . honours .dockerignore, including negated patterns', async () => {
  const whole = await ls('whole');
  assert.ok(!whole.includes('ignored.txt'));
  assert.deepEqual(await ls('whole/dir'), ['keep.log', 'nested', 'top.txt']);
});

test('COPY --chown and --chmod (octal and symbolic) set owner and mode', async () => {
  assert.equal((await built.read('tmp/owned')).trim(), '1000:50 640');
  assert.equal((await built.read('tmp/symbolic')).trim(), '755');
});

test('COPY --from takes files from a stage by name and by index', async () => {
  assert.equal(await built.read('from-stage/s.txt'), 'from-stage\n');
  assert.equal(await built.read('from-index.txt'), 'single\n');
});

test('a relative COPY destination resolves against WORKDIR', async () => {
  assert.equal(await built.read('rel/relative.txt'), 'a\n');
});

test('COPY heredocs expand variables unless the delimiter is quoted', async () => {
  assert.equal(await built.read('heredoc.txt'), 'hello heredoc\n');
  assert.equal(await built.read('quoted.txt'), '$NOT_EXPANDED\n');
});

test('ADD extracts a local tar archive and copies other files as they are', async () => {
  assert.equal(await built.read('extracted/pkg/inside.txt'), 'intar\n');
  assert.equal(await built.read('added.txt'), 'b\n');
});

test('COPY of a missing file fails naming the file and the line', async () => {
  const ctx = await sb.context({ 'here.txt': 'x' });
  await assert.rejects(
    sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nCOPY here.txt /\nCOPY missing.txt /\n' }),
    (err: unknown) => {
      assert.ok(err instanceof StepFailedError, String(err));
      assert.match(err.message, /missing\.txt/);
      assert.equal(err.range.start.line, 3);
      return true;
    },
  );
});

test('COPY of several sources to a destination without a trailing slash fails', async () => {
  const ctx = await sb.context({ 'a': 'a', 'b': 'b' });
  await assert.rejects(sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nCOPY a b /dest\n' }), /must be a directory and end with a \//);
});

test('unsupported features fail with a clear error instead of being ignored', async () => {
  const ctx = await sb.context({ 'a': 'a' });
  const cases: Array<[string, RegExp]> = [
    ['RUN --mount=type=ssh true', /ssh is not supported/],
    ['ADD https://github.com/x/y.git /src', /git/],
  ];
  for (const [line, re] of cases) {
    await assert.rejects(sb.build({ context: ctx, dockerfileText: `FROM busybox:latest\n${line}\n` }), (err: unknown) => {
      assert.ok(err instanceof DockerfileError, String(err));
      assert.match(err.message, re);
      assert.equal(err.range.start.line, 2);
      return true;
    });
  }
});
