// kill -9 of a build: its container dies with it, and the next kiln process (any store open) recovers what it
// left (mounts, step dirs, bundles, secret files, lease) without touching what a live process owns; secrets never
// touch the store's disk. Plus the kill loop of issue 13 item 8: after kills at random points the store verifies
// and a rebuild gives the right content. KILN_KILL_LOOP=N (npm run test:kill-loop) runs a longer loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LayerStore } from '../../src/store/layer-store.js';
import { verifyStore } from '../../src/store/verify.js';
import { memoryDirs } from '../../src/store/owner.js';
import { mountPoints } from '../../src/store/recovery.js';
import { build } from '../../src/builder/build.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, 'crash-child.ts');

function startBuild(root: string, context: string, dockerfile: string, secret?: string): { proc: ChildProcess; ready: Promise<void>; done: Promise<number | null> } {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, root, context, dockerfile, ...(secret === undefined ? [] : [secret])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const ready = new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('READY')) resolve();
    });
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    proc.once('exit', (code) => reject(new Error(`build ended (${code}) before it was ready: ${err}`)));
  });
  ready.catch(() => undefined);
  const done = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, ready, done };
}

/** Pids of processes whose command line is exactly `argv`. */
function processesRunning(argv: readonly string[]): number[] {
  const want = `${argv.join('\0')}\0`;
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8') === want) found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

/** Private dirs (bundles, secrets) of process `pid` in memory-backed storage. */
function privateDirsOf(pid: number): string[] {
  return memoryDirs().flatMap((base) =>
    readdirSync(base)
      .filter((n) => new RegExp(`^kiln-(run|secret)-${pid}\\.`).test(n))
      .map((n) => path.join(base, n)),
  );
}

test('kill -9 of a build: its container dies at once, and the next store open recovers its mounts, step dirs, bundle and secret, leaving a live build alone', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-crash-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const root = path.join(dir, 'store');
  const context = path.join(dir, 'ctx');
  await mkdir(context);
  const secretValue = `s3cret-${process.pid}-${Date.now()}`;
  await writeFile(path.join(dir, 'secret'), secretValue);
  const seconds = String(900000 + Math.floor(Math.random() * 99999));
  const liveSeconds = String(Number(seconds) + 1);
  const dockerfile = `FROM busybox:latest\nRUN echo one > /one\nRUN --mount=type=secret,id=s --mount=type=bind,target=/ctx,rw cat /run/secrets/s > /dev/null && echo ready && sleep ${seconds}\n`;
  const run = startBuild(root, context, dockerfile, path.join(dir, 'secret'));
  // A second build in the same store that stays alive throughout.
  const live = startBuild(root, context, `FROM busybox:latest\nRUN echo ready && sleep ${liveSeconds}\n`);
  t.after(() => live.proc.kill('SIGKILL'));
  await Promise.all([run.ready, live.ready]);
  const pid = run.proc.pid!;
  const livePid = live.proc.pid!;
  assert.ok(await waitFor(() => processesRunning(['sleep', seconds]).length === 1 && processesRunning(['sleep', liveSeconds]).length === 1, 2000), 'both steps run');
  // While it runs: its secret is in memory-backed storage only, its step dir and mounts exist.
  const secretDirs = privateDirsOf(pid).filter((d) => path.basename(d).startsWith('kiln-secret-'));
  assert.equal(secretDirs.length, 1, 'one secret file, in memory-backed storage');
  assert.equal(readFileSync(path.join(secretDirs[0]!, 'secret'), 'utf8'), secretValue);
  const stepDirs = (await readdir(path.join(root, 'tmp'))).filter((n) => n.startsWith(`step-${pid}.`));
  assert.ok(stepDirs.length >= 1);
  const grep = await new Promise<string>((resolve) => {
    const g = spawn('grep', ['-rl', '--', secretValue, root], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    g.stdout.on('data', (c: Buffer) => (out += c.toString()));
    g.once('close', () => resolve(out));
  });
  assert.equal(grep, '', 'the secret is nowhere in the store');
  const mountsOf = (p: number): string[] =>
    mountPoints().filter((m) => m.includes(`-${p}.`) && (m.startsWith(`${root}/`) || memoryDirs().some((d) => m.startsWith(`${d}/`))));
  assert.ok(mountsOf(pid).length >= 2, `the step's rootfs and rw bind overlays are mounted: ${mountsOf(pid).join(', ')}`);
  const liveBefore = { mounts: mountsOf(livePid), tmp: (await readdir(path.join(root, 'tmp'))).filter((n) => n.includes(`-${livePid}.`)), dirs: privateDirsOf(livePid) };
  assert.ok(liveBefore.mounts.length >= 1 && liveBefore.tmp.length >= 1 && liveBefore.dirs.length >= 1);

  run.proc.kill('SIGKILL');
  await run.done;
  assert.ok(await waitFor(() => processesRunning(['sleep', seconds]).length === 0, 2000), 'the container died with the build');

  // Any later kiln process recovers: here, opening the store (the test process is alive and owns none of it).
  await LayerStore.open(root);
  assert.deepEqual(mountsOf(pid), [], 'no mounts left');
  assert.deepEqual(privateDirsOf(pid), [], 'no bundle or secret dirs left');
  assert.deepEqual((await readdir(path.join(root, 'tmp'))).filter((n) => n.includes(`-${pid}.`)), [], 'no step dirs left');
  assert.ok(!existsSync(path.join(root, 'leases', String(pid))), 'no lease left');
  // The live build's state is untouched and its container still runs.
  assert.deepEqual(
    { mounts: mountsOf(livePid), tmp: (await readdir(path.join(root, 'tmp'))).filter((n) => n.includes(`-${livePid}.`)), dirs: privateDirsOf(livePid) },
    liveBefore,
  );
  assert.equal(processesRunning(['sleep', liveSeconds]).length, 1);
});

const KILLS = Number(process.env['KILN_KILL_LOOP'] ?? 3);

test(`a build killed with SIGKILL at ${KILLS} random points leaves a store that verifies, and a rebuild gives the right content`, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-crash-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const root = path.join(dir, 'store');
  const context = path.join(dir, 'ctx');
  await mkdir(context);
  for (let i = 0; i < 50; i++) await writeFile(path.join(context, `f${i}`), `file ${i}\n`.repeat(200));
  // Each build differs (a build arg would too, but the text keeps the kill points spread over fresh steps).
  const dockerfile = (n: number): string =>
    [
      'FROM busybox:latest',
      `RUN echo ${n} > /n && mkdir -p /a && for i in 1 2 3 4 5 6 7 8; do seq 1 2000 > /a/$i; done`,
      'COPY . /ctx/',
      `RUN cat /ctx/f* | wc -l > /lines && echo ${n} >> /n`,
      'RUN rm /a/1 && ln -s /a/2 /a/link && mkdir /b && cp -a /a /b/',
      '',
    ].join('\n');
  for (let k = 0; k < KILLS; k++) {
    const run = startBuild(root, context, dockerfile(k));
    const delay = 150 + Math.floor(Math.random() * 2500);
    const timer = setTimeout(() => run.proc.kill('SIGKILL'), delay);
    await run.done;
    clearTimeout(timer);
    await LayerStore.open(root);
    assert.deepEqual(mountPoints().filter((m) => m.startsWith(`${root}/`)), [], `kill ${k} (${delay} ms): no mounts left`);
    const report = await verifyStore({ root });
    assert.deepEqual(report.problems, [], `kill ${k} (${delay} ms): the store verifies`);
  }
  const result = await build({ root, context, dockerfileText: dockerfile(0), outputs: [{ type: 'local', dest: path.join(dir, 'out') }] });
  assert.ok(result.manifestDigest.startsWith('sha256:'));
  assert.equal(await readFile(path.join(dir, 'out', 'n'), 'utf8'), '0\n0\n');
  assert.equal(await readFile(path.join(dir, 'out', 'lines'), 'utf8'), `${50 * 200}\n`);
  assert.equal((await readFile(path.join(dir, 'out', 'b', 'a', '8'), 'utf8')).split('\n').length, 2001);
  assert.deepEqual((await verifyStore({ root })).problems, []);
});
