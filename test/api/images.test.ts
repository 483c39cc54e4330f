/**
 * The images API as a program uses it, from the package root: build an image, list, inspect, tag, run, save and
 * load it, remove its tags and prune. Expected values come from the Dockerfile written here (its ENV, CMD,
 * WORKDIR and the files its RUN writes) and from docker's semantics for each command.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  BuildError,
  ImageNotFoundError,
  build,
  dumpDockerfile,
  inspectImage,
  listImages,
  load,
  prune,
  removeImage,
  run,
  save,
  tag,
  type BuildResult,
} from '../../src/index.js';

const DOCKERFILE = [
  'FROM busybox',
  'ENV GREETING=hello-from-api',
  'RUN echo built > /built.txt',
  'WORKDIR /app',
  'CMD ["sh", "-c", "cat /built.txt; echo $GREETING; exit 3"]',
  '',
].join('\n');

let work: string;
let root: string;
let built: BuildResult;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-api-images-'));
  root = path.join(work, 'store');
  const context = path.join(work, 'ctx');
  await mkdir(context);
  await writeFile(path.join(context, 'Dockerfile'), DOCKERFILE);
  built = await build({ root, context, tags: ['api-test:1'] });
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Runs an image with the API, collecting its output. */
async function runCollect(name: string, command?: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const { exitCode } = await run(name, {
    root,
    network: 'none',
    ...(command ? { command } : {}),
    onOutput: (chunk, stream) => {
      if (stream === 'stdout') stdout += chunk;
      else stderr += chunk;
    },
  });
  return { exitCode, stdout, stderr };
}

test('listImages lists the tag the build gave, and the base image it pulled in', async () => {
  const images = await listImages({ root });
  const mine = images.find((i) => i.name === 'api-test:1');
  assert.ok(mine, JSON.stringify(images));
  assert.equal(mine.manifestDigest, built.manifestDigest);
  assert.ok(mine.size > 0);
  assert.ok(images.some((i) => i.name === 'busybox:latest'));
});

test('inspectImage shows the config the Dockerfile wrote, by tag, by digest and by a digest prefix', async () => {
  const image = await inspectImage('api-test:1', { root });
  assert.equal(image.manifestDigest, built.manifestDigest);
  assert.ok(image.config.config.Env?.includes('GREETING=hello-from-api'));
  assert.deepEqual(image.config.config.Cmd, ['sh', '-c', 'cat /built.txt; echo $GREETING; exit 3']);
  assert.equal(image.config.config.WorkingDir, '/app');
  assert.equal((await inspectImage(built.manifestDigest, { root })).configDigest, image.configDigest);
  assert.equal((await inspectImage(built.manifestDigest.slice(7, 19), { root })).manifestDigest, built.manifestDigest);
  await assert.rejects(inspectImage('no-such-image:1', { root }), (err: unknown) => err instanceof ImageNotFoundError && err.image === 'no-such-image:1');
});

test('run runs the image\'s CMD in its WORKDIR with its ENV, and a command given replaces the CMD', async () => {
  const own = await runCollect('api-test:1');
  assert.equal(own.stdout, 'built\nhello-from-api\n', own.stderr);
  assert.equal(own.exitCode, 3, 'the command\'s exit code is the result');
  const pwd = await runCollect('api-test:1', ['sh', '-c', 'pwd; echo $GREETING']);
  assert.equal(pwd.stdout, '/app\nhello-from-api\n', pwd.stderr);
  assert.equal(pwd.exitCode, 0);
});

test('tag names the image again (app means app:latest); removeImage removes one tag and leaves the image', async () => {
  const tagged = await tag('api-test:1', 'api-copy', { root });
  assert.deepEqual(tagged, { name: 'api-copy:latest', manifestDigest: built.manifestDigest });
  assert.equal((await inspectImage('api-copy', { root })).manifestDigest, built.manifestDigest);
  await assert.rejects(tag('api-test:1', 'Upper:1', { root }), (err: unknown) => err instanceof BuildError && err.code === 'INVALID_OPTION');
  await assert.rejects(tag('no-such-image:1', 'other:1', { root }), ImageNotFoundError);

  assert.deepEqual(await removeImage('api-copy', { root }), { name: 'api-copy:latest', manifestDigest: built.manifestDigest });
  await assert.rejects(removeImage('api-copy', { root }), ImageNotFoundError);
  assert.ok(!(await listImages({ root })).some((i) => i.name === 'api-copy:latest'));
  assert.equal((await inspectImage('api-test:1', { root })).manifestDigest, built.manifestDigest, 'the other tag still names it');
});

test('save writes a docker-archive that load brings into another store, where it runs the same', async () => {
  const archive = path.join(work, 'image.tar');
  const saved = await save('api-test:1', { type: 'docker', dest: archive, tags: ['api-test:1'] }, { root });
  assert.equal(saved.dest, archive);
  const otherRoot = path.join(work, 'other-store');
  const loaded = await load({ type: 'docker-archive', path: archive }, { root: otherRoot });
  const image = await inspectImage('api-test:1', { root: otherRoot });
  assert.equal(image.manifestDigest, loaded.manifestDigest);
  // The image ID (config digest) survives the trip; the archive's name is the tag it was saved with.
  assert.equal(loaded.configDigest, saved.configDigest);
  assert.ok(loaded.config.config.Env?.includes('GREETING=hello-from-api'));

  const oci = path.join(work, 'oci-layout');
  await save('api-test:1', { type: 'oci', dest: oci, tar: false }, { root });
  assert.ok(existsSync(path.join(oci, 'index.json')) && existsSync(path.join(oci, 'oci-layout')));
  const fromOci = await load({ type: 'oci-layout', path: oci }, { root: otherRoot, tag: 'from-oci:1' });
  assert.equal(fromOci.configDigest, saved.configDigest);
  assert.equal((await inspectImage('from-oci:1', { root: otherRoot })).configDigest, saved.configDigest);
});

test('a build with no context (context: null, as docker build -) takes its Dockerfile from the text', async () => {
  const result = await build({ root, context: null, dockerfileText: 'FROM busybox\nRUN echo no-context > /nc\nCMD ["cat", "/nc"]\n', tags: ['api-nc:1'] });
  assert.equal((await inspectImage('api-nc:1', { root })).manifestDigest, result.manifestDigest);
  assert.equal((await runCollect('api-nc:1')).stdout, 'no-context\n');
});

test('prune removes what no tag uses, once its tags are gone, and keeps tagged images', async () => {
  await removeImage('api-test:1', { root });
  await removeImage('api-nc:1', { root });
  const parseCache = path.join(root, 'cache', 'parse');
  assert.ok((await readdir(parseCache)).length > 0, 'the builds stored their parsed Dockerfiles');
  const pruned = await prune({ root });
  assert.ok(pruned.removedBlobs > 0 && pruned.freedBytes > 0, JSON.stringify(pruned));
  assert.ok(!existsSync(parseCache), 'prune removes the parse cache');
  // The image's manifest was used by its tag only (cache records keep layers, not images).
  await assert.rejects(inspectImage(built.manifestDigest, { root }), ImageNotFoundError);
  // busybox:latest is still tagged: it stays, and runs.
  assert.equal((await runCollect('busybox:latest', ['echo', 'still here'])).stdout, 'still here\n');
});

test('dumpDockerfile prints BuildKit\'s AST dump', () => {
  assert.equal(dumpDockerfile('FROM busybox AS base\nENV A=1\n'), '(from "busybox" "AS" "base")\n(env "A" "1" "=")\n');
});
