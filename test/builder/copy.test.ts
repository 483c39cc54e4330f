import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
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

test('ADD extracts xz and bzip2 compressed tars too (through the xz and bzip2 tools)', async () => {
  const ctx = await sb.context({ 'inner/x.txt': 'in xz and bz2\n' });
  execFileSync('tar', ['-C', ctx, '-cJf', path.join(ctx, 'a.tar.xz'), 'inner']);
  execFileSync('tar', ['-C', ctx, '-cjf', path.join(ctx, 'a.tar.bz2'), 'inner']);
  const b = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nADD a.tar.xz /xz/\nADD a.tar.bz2 /bz/\n' });
  assert.equal(await b.read('xz/inner/x.txt'), 'in xz and bz2\n');
  assert.equal(await b.read('bz/inner/x.txt'), 'in xz and bz2\n');
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

test('several sources or wildcard matches to a destination without a trailing slash are copied in turn: the last file is it', async () => {
  // As dockerd 20.10's BuildKit builds it (and the modern frontend, which has no "must end with /" rule either):
  // `COPY *.txt /dst` with a.txt and b.txt leaves /dst a file holding b.txt; no match copies nothing.
  const ctx = await sb.context({ 'a.txt': 'a', 'b.txt': 'b', 'c.md': 'c' });
  const b = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nCOPY a.txt c.md /dest\nCOPY *.txt /dst\nCOPY c.* /one\nCOPY *.none /zero\n' });
  assert.equal(await b.read('dest'), 'c');
  assert.equal(await b.read('dst'), 'b');
  assert.equal(await b.read('one'), 'c');
  assert.ok(!(await readdir(b.fs)).includes('zero'));
  // A directory's contents after a file at that destination: BuildKit fails with "cannot copy to non-directory"
  // (fuzz seed 40715, `COPY src/* /w/f1` with src/main.ts, src/util.ts and src/sub/).
  const withDir = await sb.context({ 'src/main.ts': 'm', 'src/sub/notes.md': 'n' });
  await assert.rejects(sb.build({ context: withDir, dockerfileText: 'FROM busybox:latest\nCOPY src/* /w/f1\n' }), /cannot copy to non-directory: \/w\/f1/);
});

test('unsupported features and missing inputs fail with a clear error at their line instead of being ignored', async () => {
  const ctx = await sb.context({ 'a': 'a' });
  const cases: Array<[string, RegExp]> = [
    ['RUN --mount=type=ssh,required true', /no SSH agent for id "default"/],
    ['ADD https://github.com/x/y.git /src', /git/],
    ['COPY --parents a /no-slash', /--parents needs a destination directory/],
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

test('ADD of a URL with --checksum downloads and verifies it; a wrong checksum fails the step', async () => {
  const { createServer } = await import('node:http');
  const { createHash } = await import('node:crypto');
  const body = 'downloaded content\n';
  const server = createServer((_req, res) => res.end(body));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as import('node:net').AddressInfo).port;
    const url = `http://127.0.0.1:${port}/files/data.txt`;
    const sum = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const ctx = await sb.context({});
    const b = await sb.build({ context: ctx, dockerfileText: `FROM busybox:latest\nADD --checksum=${sum} ${url} /dl/\nRUN stat -c %a /dl/data.txt > /mode\n` });
    assert.equal(await b.read('dl/data.txt'), body);
    assert.equal((await b.read('mode')).trim(), '600');
    const wrong = `sha256:${'0'.repeat(64)}`;
    await assert.rejects(
      sb.build({ context: ctx, dockerfileText: `FROM busybox:latest\nADD --checksum=${wrong} ${url} /dl/\n` }),
      (err: unknown) => err instanceof StepFailedError && /digest mismatch/.test(err.message) && err.range.start.line === 2,
    );
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('RUN with a heredoc runs its body as the script', async () => {
  const ctx = await sb.context({});
  const b = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nRUN <<EOF\nset -e\necho one > /h1\necho two >> /h1\nEOF\nRUN cat <<EOF > /h2\nviaheredoc\nEOF\n' });
  assert.equal(await b.read('h1'), 'one\ntwo\n');
  assert.equal(await b.read('h2'), 'viaheredoc\n');
});

test('COPY --exclude drops matching sources and files inside copied directories, and keys the cache on them', async () => {
  const ctx = await sb.context({ 'src/a.txt': 'a', 'src/b.md': 'b', 'src/sub/c.txt': 'c', 'top.txt': 't', 'top.md': 'm' });
  const text = 'FROM busybox:latest\nCOPY --exclude=*.txt --exclude=sub/c.txt src /src/\nCOPY --exclude=*.md top.* /tops/\n';
  const b = await sb.build({ context: ctx, dockerfileText: text });
  assert.deepEqual((await readdir(path.join(b.fs, 'src'), { recursive: true })).sort(), ['b.md', 'sub']);
  assert.deepEqual(await readdir(path.join(b.fs, 'tops')), ['top.txt']);
  // An excluded file's content is not part of the key.
  const { writeFile } = await import('node:fs/promises');
  await writeFile(path.join(ctx, 'src', 'a.txt'), 'changed');
  const again = await sb.build({ context: ctx, dockerfileText: text });
  assert.ok(!again.ran('COPY --exclude=*.txt --exclude=sub/c.txt src /src/'));
});

test('COPY --parents keeps the source directories, from the /./ pivot when given', async () => {
  const ctx = await sb.context({ 'app/x/one.txt': '1', 'app/y/two.txt': '2', 'lib/z/three.txt': '3' });
  const b = await sb.build({
    context: ctx,
    dockerfileText: 'FROM busybox:latest AS s\nCOPY lib /lib2/\nFROM busybox:latest\nCOPY --parents app/*/*.txt /out/\nCOPY --parents ./lib/./z /piv/\nCOPY --parents --from=s /lib2/z/three.txt /st/\n',
  });
  assert.equal(await b.read('out/app/x/one.txt'), '1');
  assert.equal(await b.read('out/app/y/two.txt'), '2');
  assert.equal(await b.read('piv/z/three.txt'), '3');
  assert.equal(await b.read('st/lib2/z/three.txt'), '3');
});

test('a <Dockerfile>.dockerignore next to the Dockerfile wins over the context .dockerignore', async () => {
  const ctx = await sb.context({ 'a.txt': 'a', 'b.txt': 'b', '.dockerignore': 'a.txt\n', 'build/app.Dockerfile': 'FROM busybox:latest\nCOPY . /all/\n', 'build/app.Dockerfile.dockerignore': 'b.txt\nbuild\n' });
  const b = await sb.build({ context: ctx, dockerfile: path.join(ctx, 'build', 'app.Dockerfile') });
  assert.deepEqual((await readdir(path.join(b.fs, 'all'))).sort(), ['.dockerignore', 'a.txt']);
});

test('COPY into a directory that already has content keeps that content, with or without the overlay mount', async () => {
  const ctx = await sb.context({ 'a.txt': 'a', 'dir/x.txt': 'x' });
  const b = await sb.build({
    context: ctx,
    dockerfileText: 'FROM busybox:latest\nRUN mkdir -p /app/keep && echo old > /app/keep/old && ln -s /app /link\nCOPY a.txt /bin/\nCOPY dir /app/\nCOPY a.txt /link/via-link.txt\nCOPY dir /fresh/nested/\n',
  });
  assert.ok((await readdir(path.join(b.fs, 'bin'))).includes('sh'));
  assert.equal(await b.read('bin/a.txt'), 'a');
  assert.equal(await b.read('app/keep/old'), 'old\n');
  assert.equal(await b.read('app/x.txt'), 'x');
  assert.equal(await b.read('app/via-link.txt'), 'a');
  assert.equal(await b.read('fresh/nested/x.txt'), 'x');
});

test('COPY --from an image reference takes files from that image', async () => {
  const b = await sb.build({ context: await sb.context({}), dockerfileText: 'FROM scratch\nCOPY --from=busybox:latest /etc/passwd /passwd\n' });
  assert.match(await b.read('passwd'), /^root:/);
  assert.equal(b.image.manifest.layers.length, 1);
});
