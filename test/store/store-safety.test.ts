// Store permissions (issue 13 item 4) and durability (item 8): the store is private to its owner, layers that
// were never synced are dropped after a reboot, and `store verify` finds and quarantines what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile, appendFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LayerStore } from '../../src/store/layer-store.js';
import { verifyStore } from '../../src/store/verify.js';
import { build } from '../../src/builder/build.js';

const asNobody = (argv: string[]) =>
  spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', ...argv], { encoding: 'utf8' });

async function world(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-safety-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, 0o755); // only the store's own mode stands between other users and it
  return dir;
}

test('a setuid binary in an unpacked layer cannot be reached by another user; the store root is 0700', async (t) => {
  const dir = await world(t);
  const root = path.join(dir, 'store');
  const context = path.join(dir, 'ctx');
  await mkdir(context);
  await build({ root, context, dockerfileText: 'FROM busybox:latest\nRUN mkdir /s && cp /bin/busybox /s/busybox && chmod 4755 /s/busybox\n' });
  assert.equal((await stat(root)).mode & 0o777, 0o700);
  const layers = readdirSync(path.join(root, 'layers')).filter((n) => existsSync(path.join(root, 'layers', n, 'rootfs', 's')));
  assert.equal(layers.length, 1);
  const suid = path.join(root, 'layers', layers[0]!, 'rootfs', 's', 'busybox');
  assert.equal((await stat(suid)).mode & 0o4000, 0o4000, 'the layer does hold a setuid binary');
  // Through a shell: setpriv itself may open its program before it drops to nobody.
  const r = asNobody(['sh', '-c', '"$0" id -u', suid]);
  assert.notEqual(r.status, 0, `nobody ran it: ${r.stdout}`);
  assert.match(r.stderr, /Permission denied/);
  assert.notEqual(asNobody(['sh', '-c', 'ls "$0"', path.join(root, 'layers')]).status, 0);
});

test('an existing store with a looser mode is made private; one owned by another user is refused', async (t) => {
  const dir = await world(t);
  const root = path.join(dir, 'store');
  await mkdir(root, { mode: 0o755 });
  await chmod(root, 0o755);
  await LayerStore.open(root);
  assert.equal((await stat(root)).mode & 0o777, 0o700);
  // A lock and a lease left by a process that is gone are cleared by the next open; a live one's stay.
  const dead = spawnSync('true').pid;
  const { hostname } = await import('node:os');
  await writeFile(path.join(root, 'locks', 'layer-x.lock'), `${dead} ${hostname()} 0123456789abcdef 1\n`);
  await writeFile(path.join(root, 'leases', String(dead)), `${dead} ${hostname()} ${Date.now()} 1\n`);
  await writeFile(path.join(root, 'locks', 'layer-y.lock'), `${process.pid} ${hostname()} 0123456789abcdef\n`);
  await LayerStore.open(root);
  assert.deepEqual(readdirSync(path.join(root, 'locks')), ['layer-y.lock']);
  assert.deepEqual(readdirSync(path.join(root, 'leases')), []);
  const foreign = path.join(dir, 'foreign');
  await mkdir(foreign);
  await chown(foreign, 65534, 65534);
  await assert.rejects(LayerStore.open(foreign), /belongs to uid 65534.*use a directory you own/);
});

test('after a reboot, layers never synced are dropped and rebuilt; synced ones stay', async (t) => {
  const dir = await world(t);
  const root = path.join(dir, 'store');
  const context = path.join(dir, 'ctx');
  await mkdir(context);
  const text = 'FROM busybox:latest\nRUN echo a > /a\nRUN echo b > /b\n';
  const first = await build({ root, context, dockerfileText: text });
  const marked = readdirSync(path.join(root, 'layers')).filter((n) => /^[0-9a-f]{64}$/.test(n));
  assert.ok(marked.length >= 3);
  for (const n of marked) assert.ok(existsSync(path.join(root, 'layers', n, 'durable')), `layer ${n} is marked durable after the build`);
  // The last step's layer was (as far as the store knows) never synced, and the machine rebooted.
  const lastDiffId = first.layers[first.layers.length - 1]!.diffId.slice(7);
  await rm(path.join(root, 'layers', lastDiffId, 'durable'));
  await writeFile(path.join(root, 'boot'), 'an-earlier-boot\n');
  await mkdir(path.join(root, 'tmp', 'step-1.1-0123456789ab'));
  await LayerStore.open(root);
  assert.ok(!existsSync(path.join(root, 'layers', lastDiffId)), 'the unsynced layer is dropped');
  assert.ok(existsSync(path.join(root, 'layers', first.layers[0]!.diffId.slice(7))), 'a synced layer stays');
  assert.deepEqual(await readdir(path.join(root, 'tmp')), [], 'temp state of the earlier boot is gone');
  const again = await build({ root, context, dockerfileText: text, outputs: [{ type: 'local', dest: path.join(dir, 'out') }] });
  assert.equal(again.steps.filter((s) => !s.cached).length, 1, 'only the step whose layer was dropped runs again');
  assert.equal(await readFile(path.join(dir, 'out', 'b'), 'utf8'), 'b\n');
  assert.deepEqual((await verifyStore({ root })).problems, []);
});

test('store verify reports and quarantines a corrupt blob, a changed layer directory and a broken record; a rebuild repairs', async (t) => {
  const dir = await world(t);
  const root = path.join(dir, 'store');
  const context = path.join(dir, 'ctx');
  await mkdir(context);
  const text = 'FROM busybox:latest\nRUN echo hello > /h\n';
  const first = await build({ root, context, dockerfileText: text, tags: ['v:1'] });
  assert.deepEqual((await verifyStore({ root })).problems, [], 'a fresh store verifies');
  // A layer built here (only unpacked) whose file changed, a blob with a flipped byte, a truncated cache record.
  const built = first.layers[first.layers.length - 1]!.diffId.slice(7);
  await appendFile(path.join(root, 'layers', built, 'rootfs', 'h'), 'tampered');
  // (The image config: a base layer's blob would be gone for good, and only a pull could bring it back.)
  const blobs = [first.configDigest.slice(7)];
  const blob = path.join(root, 'blobs', 'sha256', blobs[0]!);
  const bytes = await readFile(blob);
  bytes[0] = bytes[0]! ^ 1;
  await writeFile(blob, bytes);
  const record = path.join(root, 'cache', readdirSync(path.join(root, 'cache')).find((n) => n.endsWith('.json'))!);
  await writeFile(record, '{"trunc');
  const report = await verifyStore({ root });
  const kinds = report.problems.map((p) => `${p.kind} ${path.relative(root, p.path)}`).sort();
  assert.deepEqual(kinds, [`blob blobs/sha256/${blobs[0]}`, `layer layers/${built}`, `record ${path.relative(root, record)}`].sort());
  for (const p of report.problems) assert.ok(p.quarantinedTo !== undefined && existsSync(p.quarantinedTo) && !existsSync(p.path));
  assert.deepEqual((await verifyStore({ root })).problems, [], 'what is left verifies');
  // The CLI says the same, with exit code 0 now.
  const cli = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'store', 'verify', '--root', root], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  assert.match(cli.stdout, /0 problems/);
  const again = await build({ root, context, dockerfileText: text, outputs: [{ type: 'local', dest: path.join(dir, 'out') }] });
  assert.equal(await readFile(path.join(dir, 'out', 'h'), 'utf8'), 'hello\n');
  assert.ok(again.manifestDigest.startsWith('sha256:'));
});
