import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { StepFailedError } from '../../src/errors.js';
import { fixturesDir, sandbox, type Built, type Sandbox } from './helpers.js';

let sb: Sandbox;
let built: Built;
let secretFile: string;
const mountsDir = path.join(fixturesDir, 'mounts');
before(async () => {
  sb = await sandbox();
  secretFile = path.join(await sb.tempDir('secret'), 'token');
  await writeFile(secretFile, 'hunter2');
  built = await sb.build({ context: mountsDir, secrets: [{ id: 'token', src: secretFile }] });
});
after(() => sb.cleanup());

test('RUN --mount=type=bind mounts a context file and a directory of another stage', async () => {
  assert.equal(await built.read('from-bind'), 'ctx-file\n');
  assert.equal(await built.read('from-stage-bind'), 'tool-output\n');
});

test('RUN --mount=type=tmpfs and type=secret are available during the step and leave nothing in the layer', async () => {
  assert.equal(await built.read('secret-status'), 'secret-read\n');
  assert.equal((await built.read('leftovers')).trim(), '0');
  // The parents the runtime made for mount points stay, empty and 0755, as BuildKit leaves them.
  assert.equal(await built.read('mount-parents'), '755 directory\n755 directory\n');
  const all = await readdir(built.fs, { recursive: true });
  assert.ok(!all.some((p) => p.includes('token')), 'no secret file in the image');
  const layers = await Promise.all(built.image.manifest.layers.map((l) => readFile(path.join(sb.root, 'blobs', 'sha256', l.digest.slice(7)))));
  assert.ok(!layers.some((b) => b.includes('hunter2')), 'the secret value is in no layer');
});

test('stages the target does not need are not built', () => {
  assert.ok(!built.result.steps.some((s) => s.step.stage === 'unused'));
});

test('a cache mount persists across builds even when the step reruns', async () => {
  assert.equal((await built.read('cache-count')).trim(), '1');
  const again = await sb.build({ context: mountsDir, secrets: [{ id: 'token', src: secretFile }], noCache: true });
  assert.equal((await again.read('cache-count')).trim(), '2');
});

test('--no-cache-filter reruns only the named stage', async () => {
  const b = await sb.build({ context: mountsDir, secrets: [{ id: 'token', src: secretFile }], noCacheFilter: ['tools'] });
  assert.ok(b.ran('RUN mkdir -p /opt/tool && echo tool-output > /opt/tool/out.txt'));
  assert.ok(!b.ran('RUN --mount=type=bind,source=input.txt,target=/mnt/input.txt cat /mnt/input.txt > /from-bind'));
});

test('a required secret that was not given fails the step', async () => {
  const ctx = await sb.context({});
  await assert.rejects(
    sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nRUN --mount=type=secret,id=nope,required=true true\n' }),
    /secret nope not found/,
  );
});

test('a failing RUN rejects with its exit code, output tail and line', async () => {
  const ctx = await sb.context({});
  await assert.rejects(
    sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nENV A=1\nRUN echo about to fail && echo oops >&2 && exit 3\n' }),
    (err: unknown) => {
      assert.ok(err instanceof StepFailedError, String(err));
      assert.equal(err.exitCode, 3);
      assert.equal(err.range.start.line, 3);
      assert.match(err.outputTail, /about to fail/);
      assert.match(err.outputTail, /oops/);
      return true;
    },
  );
  // Nothing half-written: no temp dirs, no partially adopted layers.
  assert.deepEqual(await readdir(path.join(sb.root, 'tmp')).catch(() => []), []);
  assert.ok(!(await readdir(path.join(sb.root, 'layers'))).some((n) => n.includes('.tmp')));
});

test('independent stages are built concurrently', async () => {
  const ctx = await sb.context({});
  // Each stage waits for the other's marker in a shared cache mount: this only finishes if both run at once.
  const wait = (me: string, other: string): string =>
    `RUN --mount=type=cache,target=/sync,id=sync-${process.pid} sh -c 'touch /sync/${me}; i=0; while [ ! -e /sync/${other} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; test -e /sync/${other}'`;
  const text = ['FROM busybox:latest AS a', wait('a', 'b'), 'FROM busybox:latest AS b', wait('b', 'a'), 'FROM busybox:latest', 'COPY --from=a /etc/passwd /a', 'COPY --from=b /etc/passwd /b', ''].join('\n');
  await sb.build({ context: ctx, dockerfileText: text, noCache: true });
});

test('aborting a build mid-RUN rejects with the reason and leaves no mounts or temp files behind', async () => {
  const ctx = await sb.context({});
  const controller = new AbortController();
  const reason = new Error('stop now');
  const p = sb.build({
    context: ctx,
    dockerfileText: 'FROM busybox:latest\nRUN echo started && sleep 30\n',
    signal: controller.signal,
    onEvent: (e) => {
      if (e.type === 'step-output' && e.chunk.includes('started')) controller.abort(reason);
    },
  });
  await assert.rejects(p, (err: unknown) => err === reason);
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  assert.ok(!mounts.includes(sb.root), mounts);
  const tmp = await readdir(path.join(sb.root, 'tmp')).catch(() => []);
  assert.deepEqual(tmp, []);
});

test('a locked cache mount is usable and its lock is released when the build returns', async () => {
  const b = await sb.build({
    context: await sb.context({}),
    dockerfileText: 'FROM busybox:latest\nRUN --mount=type=cache,target=/c,id=locked-test,sharing=locked sh -c "echo x > /c/f && cp /c/f /out"\n',
  });
  assert.equal(await b.read('out'), 'x\n');
  const locks = await readdir(path.join(sb.root, 'locks')).catch(() => [] as string[]);
  assert.ok(!locks.some((l) => l.startsWith('cache-mount-')), locks.join(','));
});

test('a step runs on the previous step’s files while that layer is still being hashed, and a later failure keeps it cached', async () => {
  const ctx = await sb.context({ copied: 'from the context\n' });
  // Each step reads what the one before it wrote (its layer may still be hashing: it is mounted as a lowerdir).
  const steps = ['FROM busybox:latest', `RUN echo ${process.pid} > /one`, 'RUN cat /one > /two && echo 2 >> /two', 'COPY copied /copied'];
  const ok = await sb.build({ context: ctx, dockerfileText: `${[...steps, 'RUN cat /two /copied > /three'].join('\n')}\n` });
  assert.equal(await ok.read('three'), `${process.pid}\n2\nfrom the context\n`);
  assert.equal(ok.image.manifest.layers.length, 1 + 4);

  // The same first steps, then a failure: the steps before it were recorded in the cache on the way out.
  const failing = `${[...steps.slice(0, 3), 'RUN echo extra > /extra', 'RUN exit 7'].join('\n')}\n`;
  await assert.rejects(sb.build({ context: ctx, dockerfileText: failing }), (err: unknown) => err instanceof StepFailedError && err.exitCode === 7);
  assert.deepEqual(await readdir(path.join(sb.root, 'tmp')).catch(() => []), []);
  const again = await sb.build({ context: ctx, dockerfileText: `${[...steps.slice(0, 3), 'RUN echo extra > /extra'].join('\n')}\n` });
  assert.equal(again.ran('RUN echo extra > /extra'), false, 'the step that finished before the failure is cached');
  assert.equal(again.ran('RUN cat /one > /two && echo 2 >> /two'), false);
});

test('a RUN step sees BuildKit’s /etc: hosts and resolv.conf read-only, the image’s own /etc/hostname', async () => {
  // dockerd 20.10's BuildKit wrote exactly this for the same step (its executor binds hosts and resolv.conf read-only
  // and no hostname file); busybox has no /etc/hostname, so one written by an earlier step shows.
  const b = await sb.build({
    context: await sb.context({}),
    dockerfileText:
      "FROM busybox:latest\nRUN (cat /etc/hostname 2>&1; touch /etc/hosts /etc/resolv.conf 2>&1; echo $?; hostname) > /out\nRUN echo mine > /etc/hostname && cat /etc/hostname > /out2\n",
  });
  assert.equal(
    await b.read('out'),
    "cat: can't open '/etc/hostname': No such file or directory\ntouch: /etc/hosts: Read-only file system\ntouch: /etc/resolv.conf: Read-only file system\n1\nbuildkitsandbox\n",
  );
  assert.equal(await b.read('out2'), 'mine\n');
  assert.equal(await b.read('etc/hostname'), 'mine\n');
});
