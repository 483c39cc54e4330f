import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DockerfileError } from '../../src/errors.js';
import { parse } from '../../src/parser/index.js';
import { MAX_DOCKERFILE_BYTES } from '../../src/parser/parse.js';
import { MAX_STAGES, resolveStages } from '../../src/builder/stages.js';

test('a Dockerfile over the size limit is refused at once, naming the file', () => {
  const line = 'RUN echo hello world\n';
  const text = `FROM busybox\n${line.repeat(Math.ceil((MAX_DOCKERFILE_BYTES + 1) / line.length))}`;
  const started = Date.now();
  assert.throws(() => parse(text, { file: 'big.Dockerfile' }), (err: unknown) => {
    assert.ok(err instanceof DockerfileError);
    assert.equal(err.file, 'big.Dockerfile');
    assert.match(err.message, /^big\.Dockerfile is 2\.0 MiB, over kiln's limit of 2 MiB for a Dockerfile$/);
    return true;
  });
  assert.ok(Date.now() - started < 1000);
  // Multi-byte characters count as their UTF-8 bytes.
  assert.throws(() => parse(`FROM busybox\n# ${'é'.repeat(MAX_DOCKERFILE_BYTES / 2)}\n`), /over kiln's limit/);
  // Just under the limit still parses.
  const under = `FROM busybox\n${line.repeat(Math.floor((MAX_DOCKERFILE_BYTES - 20) / line.length))}`;
  assert.ok(parse(under).instructions.length > 1000);
});

test('a chain of stages as long as the limit resolves without exhausting the stack', () => {
  let text = 'FROM busybox AS s0\n';
  for (let i = 1; i < MAX_STAGES; i++) text += `FROM s${i - 1} AS s${i}\nCOPY --from=s${Math.floor(i / 2)} /a /b\n`;
  const graph = resolveStages(parse(text));
  assert.equal(graph.order.length, MAX_STAGES);
  assert.equal(graph.levels.length, MAX_STAGES);
  assert.deepEqual(graph.order.slice(0, 3), [0, 1, 2]);
});

test('more stages than the limit are refused at the first one past it', () => {
  let text = '';
  for (let i = 0; i <= MAX_STAGES; i++) text += `FROM busybox AS s${i}\n`;
  assert.throws(() => resolveStages(parse(text, { file: 'Dockerfile.many' })), (err: unknown) => {
    assert.ok(err instanceof DockerfileError);
    assert.match(err.message, /too many build stages: 1001 \(kiln's limit is 1000\)/);
    assert.equal(err.range.start.line, MAX_STAGES + 1);
    return true;
  });
});

test('the stage-graph walks are iterative: a 6,000-stage chain fails with the limit, not a stack overflow', () => {
  // The walks themselves are checked below the limit by the test above; this is the input.
  let text = 'FROM busybox AS s0\n';
  for (let i = 1; i < 6000; i++) text += `FROM s${i - 1} AS s${i}\n`;
  assert.throws(() => resolveStages(parse(text)), /too many build stages: 6000/);
});

test('a cycle deep in a long chain is still found', () => {
  let text = 'FROM busybox AS s0\nCOPY --from=s999 /a /b\n';
  for (let i = 1; i < MAX_STAGES; i++) text += `FROM s${i - 1} AS s${i}\n`;
  assert.throws(() => resolveStages(parse(text)), /circular dependency detected on stage: s0/);
});
