import assert from 'node:assert/strict';
import { utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

const DOCKERFILE = [
  'FROM busybox:latest',
  'ARG USED=one',
  'ENV BEFORE=x',
  'COPY app.txt /app.txt',
  'RUN cat /app.txt > /copy && echo "$USED" > /used',
  'LABEL stage=final',
  '',
].join('\n');
const COPY_STEP = 'COPY app.txt /app.txt';
const RUN_STEP = 'RUN cat /app.txt > /copy && echo "$USED" > /used';

async function fresh(): Promise<string> {
  return sb.context({ 'app.txt': 'v1\n', 'unrelated.txt': 'u1\n', 'ignored.txt': 'i1\n', '.dockerignore': 'ignored.txt\n' });
}

test('a rebuild of the same input is fully cached and gives identical digests', async () => {
  const ctx = await fresh();
  const first = await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  assert.ok(first.ran(RUN_STEP));
  const second = await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  assert.ok(second.result.steps.every((s) => s.cached));
  assert.equal(second.result.manifestDigest, first.result.manifestDigest);
  assert.equal(second.result.configDigest, first.result.configDigest);
});

test('changing a copied file content reruns COPY and the steps after it', async () => {
  const ctx = await fresh();
  await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  await writeFile(path.join(ctx, 'app.txt'), 'v2\n');
  const b = await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  assert.ok(b.ran(COPY_STEP) && b.ran(RUN_STEP));
  assert.equal(await b.read('copy'), 'v2\n');
});

test('an mtime change, an ignored file or an unrelated file do not invalidate the cache', async () => {
  const ctx = await fresh();
  const first = await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  await utimes(path.join(ctx, 'app.txt'), new Date(2001, 1, 1), new Date(2001, 1, 1));
  await writeFile(path.join(ctx, 'ignored.txt'), 'i2\n');
  await writeFile(path.join(ctx, 'unrelated.txt'), 'u2\n');
  const b = await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  assert.ok(b.result.steps.every((s) => s.cached), JSON.stringify(b.result.steps));
  assert.equal(b.result.manifestDigest, first.result.manifestDigest);
});

test('a build arg the step uses, an ENV before it, or its text invalidates it', async () => {
  const ctx = await fresh();
  await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  const arg = await sb.build({ context: ctx, dockerfileText: DOCKERFILE, buildArgs: { USED: 'two' } });
  assert.ok(!arg.ran(COPY_STEP) && arg.ran(RUN_STEP));
  assert.equal(await arg.read('used'), 'two\n');
  const env = await sb.build({ context: ctx, dockerfileText: DOCKERFILE.replace('BEFORE=x', 'BEFORE=y') });
  assert.ok(env.ran(RUN_STEP));
  const text = await sb.build({ context: ctx, dockerfileText: DOCKERFILE.replace('> /used', '>  /used') });
  assert.ok(!text.ran(COPY_STEP) && text.ran(RUN_STEP.replace('> /used', '>  /used')));
});

test('a different base image invalidates every step', async () => {
  const ctx = await fresh();
  const base = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nRUN echo base > /base\n', tags: ['cache-base:1'] });
  void base;
  const text = DOCKERFILE.replace('FROM busybox:latest', 'FROM cache-base:1');
  await sb.build({ context: ctx, dockerfileText: text });
  const rebuiltBase = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nRUN echo base2 > /base\n', tags: ['cache-base:1'] });
  void rebuiltBase;
  const b = await sb.build({ context: ctx, dockerfileText: text });
  assert.ok(b.ran(COPY_STEP) && b.ran(RUN_STEP));
});

test('--no-cache reruns every step yet keeps the result usable from the cache afterwards', async () => {
  const ctx = await fresh();
  await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  const b = await sb.build({ context: ctx, dockerfileText: DOCKERFILE, noCache: true });
  assert.ok(b.ran(COPY_STEP) && b.ran(RUN_STEP));
  const c = await sb.build({ context: ctx, dockerfileText: DOCKERFILE });
  assert.equal(c.result.manifestDigest, b.result.manifestDigest);
});

test('with SOURCE_DATE_EPOCH, rebuilding without the cache reproduces the same image', async () => {
  const ctx = await fresh();
  const a = await sb.build({ context: ctx, dockerfileText: DOCKERFILE, sourceDateEpoch: 1700000000, noCache: true });
  const b = await sb.build({ context: ctx, dockerfileText: DOCKERFILE, sourceDateEpoch: 1700000000, noCache: true });
  assert.equal(b.result.manifestDigest, a.result.manifestDigest);
  assert.equal(a.image.config.created, '2023-11-14T22:13:20.000Z');
});
