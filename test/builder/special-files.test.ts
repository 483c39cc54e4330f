/**
 * Special files in the build context: a named pipe must never be opened (reading one blocks forever), a
 * socket is not part of the context (as in docker's context tar), and a file that shrinks while it is copied
 * fails naming it instead of spinning.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { copyRegularFile } from '../../src/store/copy-file.js';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

test('a named pipe in what COPY selects fails at once, naming it; ignored, it is harmless', { timeout: 60_000 }, async () => {
  const ctx = await sb.context({ 'Dockerfile': 'FROM scratch\nCOPY . /x/\n', 'a.txt': 'a\n' });
  execFileSync('mkfifo', [path.join(ctx, 'pipe')]);
  const started = Date.now();
  await assert.rejects(sb.build({ context: ctx }), /"\/pipe" in the build context is a named pipe/);
  assert.ok(Date.now() - started < 20_000, 'fails within seconds');
  // Named explicitly, too.
  await writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY pipe /p\n');
  await assert.rejects(sb.build({ context: ctx }), /"\/pipe" in the build context is a named pipe/);
  await writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY . /x/\n');
  await writeFile(path.join(ctx, '.dockerignore'), 'pipe\n');
  const built = await sb.build({ context: ctx });
  assert.equal(await built.read('x/a.txt'), 'a\n');
});

test('a named pipe COPY --from takes from a stage is left out without an error, as BuildKit\'s copier does', { timeout: 60_000 }, async () => {
  // dockerd 20.10's BuildKit: `COPY --from=s0 /tmp/fifo /x` makes no /x, and `COPY --from=s0 /tmp /t/` an empty /t.
  const ctx = await sb.context({
    'Dockerfile': 'FROM busybox AS s0\nRUN mkfifo /tmp/fifo\nFROM busybox\nCOPY --from=s0 /tmp/fifo /x\nCOPY --from=s0 /tmp /t/\n',
  });
  const built = await sb.build({ context: ctx });
  const { readdir } = await import('node:fs/promises');
  assert.ok(!(await readdir(built.fs)).includes('x'), 'no /x');
  assert.deepEqual(await readdir(path.join(built.fs, 't')), []);
  // Over a stage that has the same FIFO at the target (fuzz seed 41381): BuildKit removes it (its layer has a whiteout).
  const over = await sb.build({
    context: await sb.context({ 'Dockerfile': 'FROM busybox AS s0\nRUN mkfifo /tmp/fifo && echo k > /tmp/keep\nFROM s0\nCOPY --from=s0 /tmp /tmp/\n' }),
  });
  assert.deepEqual((await readdir(path.join(over.fs, 'tmp'))).sort(), ['keep']);
});

test('a socket in the context is left out, as docker leaves it out of the context tar', { timeout: 60_000 }, async (t) => {
  const ctx = await sb.context({ 'Dockerfile': 'FROM scratch\nCOPY . /x/\n', 'a.txt': 'a\n' });
  const server = createServer();
  server.listen(path.join(ctx, 'agent.sock'));
  await once(server, 'listening');
  t.after(() => server.close());
  assert.ok((await stat(path.join(ctx, 'agent.sock'))).isSocket());
  const built = await sb.build({ context: ctx });
  assert.deepEqual((await readdir(path.join(built.fs, 'x'))).sort(), ['Dockerfile', 'a.txt']);
  await writeFile(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY agent.sock /s\n');
  await assert.rejects(sb.build({ context: ctx }), /"\/agent\.sock": not found/);
});

test('a file that is shorter than when it was listed fails the copy, naming it (no endless loop)', async () => {
  const dir = await sb.tempDir();
  const src = path.join(dir, 'big.bin');
  // Bigger than one read chunk: the copy loop runs more than once before it meets the early end.
  await writeFile(src, Buffer.alloc(5 << 20, 7));
  const listedSize = 9 << 20; // what the file had when the context walk saw it, before it was truncated
  const started = Date.now();
  await assert.rejects(
    copyRegularFile(src, path.join(dir, 'out.bin'), { size: listedSize, name: 'data/big.bin' }),
    /data\/big\.bin changed while it was being copied \(it is shorter than the 9437184 bytes it had\)/,
  );
  assert.ok(Date.now() - started < 5000);
  await assert.rejects(stat(path.join(dir, 'out.bin')), /ENOENT/, 'no partial copy is left');
  // The same size copies exactly.
  await copyRegularFile(src, path.join(dir, 'ok.bin'), { size: 5 << 20 });
  assert.equal((await readFile(path.join(dir, 'ok.bin'))).length, 5 << 20);
});

test('a Dockerfile that is a named pipe, a device or too big is refused at once, naming it', { timeout: 60_000 }, async () => {
  const ctx = await sb.context({ 'a.txt': 'a\n' });
  execFileSync('mkfifo', [path.join(ctx, 'Dockerfile')]);
  await assert.rejects(sb.build({ context: ctx }), /failed to read dockerfile: .*Dockerfile: not a regular file/);
  const { symlink, rm: remove } = await import('node:fs/promises');
  await remove(path.join(ctx, 'Dockerfile'));
  await symlink('/dev/zero', path.join(ctx, 'Dockerfile'));
  await assert.rejects(sb.build({ context: ctx }), /failed to read dockerfile: .*Dockerfile: not a regular file/);
  await remove(path.join(ctx, 'Dockerfile'));
  await writeFile(path.join(ctx, 'Dockerfile'), `FROM scratch\n${'# padding\n'.repeat(300_000)}`);
  await assert.rejects(sb.build({ context: ctx }), /failed to read dockerfile: .*Dockerfile: 2\.9 MiB, over kiln's limit of 2 MiB for a Dockerfile/);
});
