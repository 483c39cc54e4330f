/**
 * `--build-context NAME=DIR` (the API's `buildContexts`): a local directory, absolute or relative to the working
 * directory, with its own .dockerignore, used by `COPY --from=NAME`, `RUN --mount=type=bind,from=NAME` and
 * `FROM NAME` (BuildKit loads a local named context as a filesystem with no image config). Host paths come only
 * from there: a Dockerfile naming `oci-layout://…` is refused without touching the host path.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BuildError } from '../../src/errors.js';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let other: string;
let secretFile: string;
before(async () => {
  sb = await sandbox();
  other = await sb.context({
    '.dockerignore': 'private.txt\n',
    'lib/a.txt': 'from other\n',
    'private.txt': 'OTHER-PRIVATE\n',
  });
  const host = await sb.tempDir('host');
  secretFile = path.join(host, 'shadow');
  await writeFile(secretFile, 'root:*:20200:0:99999:7:::\n');
});
after(() => sb.cleanup());

test('COPY --from=NAME copies from a named directory context given by an absolute path', async () => {
  const context = await sb.context({ 'main.txt': 'main\n' });
  const built = await sb.build({ context, buildContexts: { other }, dockerfileText: 'FROM scratch\nCOPY --from=other lib/a.txt /a\nCOPY main.txt /m\n' });
  assert.equal(await built.read('a'), 'from other\n');
  assert.equal(await built.read('m'), 'main\n');
});

test('a named directory context may be relative to the working directory', async () => {
  const context = await sb.context({});
  const relative = path.relative(process.cwd(), other);
  assert.ok(!path.isAbsolute(relative));
  const built = await sb.build({ context, buildContexts: { other: relative }, dockerfileText: 'FROM scratch\nCOPY --from=other lib /lib\n' });
  assert.equal(await built.read('lib/a.txt'), 'from other\n');
});

test('a named directory context applies its own .dockerignore, not the main context’s', async () => {
  const context = await sb.context({ '.dockerignore': 'lib\n' });
  const built = await sb.build({ context, buildContexts: { other }, dockerfileText: 'FROM scratch\nCOPY --from=other . /o/\n' });
  assert.deepEqual((await readdir(path.join(built.fs, 'o'))).sort(), ['.dockerignore', 'lib']);
  await assert.rejects(sb.build({ context, buildContexts: { other }, dockerfileText: 'FROM scratch\nCOPY --from=other private.txt /p\n' }), /not found/);
});

test('RUN --mount=type=bind,from=NAME mounts the named directory context, filtered', async () => {
  const context = await sb.context({});
  const built = await sb.build({
    context,
    buildContexts: { other },
    dockerfileText: 'FROM busybox:latest\nRUN --mount=type=bind,from=other,target=/o cat /o/lib/a.txt > /seen && ! test -e /o/private.txt\n',
  });
  assert.equal(await built.read('seen'), 'from other\n');
});

test('FROM NAME with a named directory context makes its files the root filesystem', async () => {
  const context = await sb.context({});
  const built = await sb.build({ context, buildContexts: { base: other }, dockerfileText: 'FROM base\nCOPY --from=base lib/a.txt /copy\n' });
  assert.equal(await built.read('lib/a.txt'), 'from other\n');
  assert.equal(await built.read('copy'), 'from other\n');
  assert.ok(!(await readdir(built.fs)).includes('private.txt'));
});

test('a named context overrides a stage of the same name', async () => {
  const context = await sb.context({});
  const built = await sb.build({
    context,
    buildContexts: { src: other },
    dockerfileText: 'FROM busybox:latest AS src\nRUN exit 1\nFROM scratch\nCOPY --from=src lib/a.txt /a\n',
  });
  assert.equal(await built.read('a'), 'from other\n');
});

test('a named context that is not a directory is a usage error naming it', async () => {
  const context = await sb.context({});
  await assert.rejects(
    sb.build({ context, buildContexts: { other: path.join(other, 'missing') }, dockerfileText: 'FROM scratch\n' }),
    (err: unknown) => err instanceof BuildError && err.code === 'USAGE' && /--build-context other=.*not a directory/.test(err.message),
  );
});

for (const [what, line] of [
  ['FROM', (dir: string) => `FROM oci-layout://${dir}`],
  ['COPY --from', (dir: string) => `FROM scratch\nCOPY --from=oci-layout://${dir} / /x`],
  ['RUN --mount=from', (dir: string) => `FROM busybox:latest\nRUN --mount=type=bind,from=oci-layout://${dir},target=/x true`],
  ['FROM docker-image://', () => 'FROM docker-image://busybox:latest'],
] as const) {
  test(`${what} with a scheme written in the Dockerfile is refused before the host path is looked at`, async () => {
    const layout = await sb.tempDir('layout');
    await writeFile(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await symlink(secretFile, path.join(layout, 'index.json'));
    const context = await sb.context({});
    const missing = path.join(layout, 'nope');
    for (const dir of [layout, missing]) {
      const err = await sb.build({ context, dockerfileText: `${line(dir)}\n` }).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      assert.ok(err, 'the build must fail');
      assert.match(err.message, /invalid reference format/);
      assert.doesNotMatch(err.message, /root:|is missing|no such file/);
    }
  });
}

test('an OCI layout given on the command line never echoes a file it cannot parse', async () => {
  const layout = await sb.tempDir('layout');
  await writeFile(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(path.join(layout, 'index.json'), 'root:*:20200:0:99999:7:::\n');
  const context = await sb.context({});
  await assert.rejects(sb.build({ context, buildContexts: { base: `oci-layout://${layout}` }, dockerfileText: 'FROM base\n' }), (err: Error) => {
    assert.match(err.message, /index\.json is not valid JSON/);
    assert.doesNotMatch(err.message, /root|20200/);
    return true;
  });
});

test('an OCI layout whose files are symlinks is refused without reading through them', async () => {
  const layout = await sb.tempDir('layout');
  await writeFile(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await symlink(secretFile, path.join(layout, 'index.json'));
  await mkdir(path.join(layout, 'blobs', 'sha256'), { recursive: true });
  const context = await sb.context({});
  await assert.rejects(sb.build({ context, buildContexts: { base: `oci-layout://${layout}` }, dockerfileText: 'FROM base\n' }), (err: Error) => {
    assert.match(err.message, /index\.json is a symbolic link/);
    assert.doesNotMatch(err.message, /root|20200/);
    return true;
  });
});
