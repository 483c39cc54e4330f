import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DockerfileError } from '../../src/errors.js';
import { parse } from '../../src/parser/index.js';
import { resolveStages, type ResolveStagesOptions, type StageGraph } from '../../src/builder/stages.js';

function graph(text: string, options: ResolveStagesOptions = {}): StageGraph {
  return resolveStages(parse(text), options);
}

function failure(text: string, options: ResolveStagesOptions = {}): DockerfileError {
  try {
    graph(text, options);
  } catch (err) {
    assert.ok(err instanceof DockerfileError, `expected a DockerfileError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

test('global ARGs expand FROM, with --build-arg overriding the default', () => {
  const text = 'ARG TAG=3.19\nARG IMG=alpine:${TAG}\nFROM ${IMG} AS base\n';
  assert.equal(graph(text).stages[0]?.base, 'alpine:3.19');
  assert.equal(graph(text, { buildArgs: { TAG: '3.20' } }).stages[0]?.base, 'alpine:3.20');
  assert.equal(graph(text, { buildArgs: { IMG: 'busybox' } }).stages[0]?.base, 'busybox');
});

test('a FROM whose base expands to nothing fails at its line', () => {
  const err = failure('ARG X\nFROM ${BLANK} AS foo\n');
  assert.equal(err.message, 'base name (${BLANK}) should not be blank');
  assert.equal(err.range.start.line, 2);
});

test('the target is found case-insensitively and a misspelt target gets a suggestion', () => {
  const text = 'FROM scratch AS build\nFROM scratch AS test\nFROM scratch\n';
  assert.equal(graph(text, { target: 'Build' }).target, 0);
  assert.equal(graph(text).target, 2);
  assert.equal(failure(text, { target: 'bulid' }).message, 'target stage "bulid" could not be found (did you mean build?)');
});

test('a stage used as base or by COPY --from becomes a dependency; other names are images', () => {
  const g = graph('FROM alpine AS base\nFROM base AS app\nCOPY --from=0 /a /a\nCOPY --from=nginx:1 /b /b\n');
  const app = g.stages[1];
  assert.equal(app?.baseStage, 0);
  assert.deepEqual(app?.deps.map((d) => (d.kind === 'stage' ? `${d.via}:${d.stage}` : `${d.via}:${d.ref}`)), ['base:0', 'copy:0', 'copy:nginx:1']);
});

test('COPY --from naming a stage index that does not exist fails at its line', () => {
  const err = failure('FROM alpine\nCOPY --from=3 /a /a\n');
  assert.equal(err.message, 'invalid stage index 3');
  assert.equal(err.range.start.line, 2);
});

test('COPY --from with a variable fails with the workaround in the message', () => {
  const err = failure('ARG S=x\nFROM scratch\nCOPY --from=$S . .\n');
  assert.match(err.message, /^variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope/);
  assert.equal(err.range.start.line, 3);
});

test('a stage that copies from itself, directly or through another stage, is a cycle', () => {
  assert.equal(failure('FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n').message, 'circular dependency detected on stage: stage0');
  const err = failure('FROM a AS one\nRUN --mount=from=two,target=/t true\nFROM b AS two\nCOPY --from=one x y\n');
  assert.equal(err.message, 'circular dependency detected on stage: one');
});

test('the graph keeps only what the target needs and groups independent stages into one level', () => {
  const text = [
    'FROM alpine AS deps', 'FROM alpine AS assets', 'FROM alpine AS unused',
    'FROM deps AS build', 'COPY --from=assets /a /a', 'FROM scratch AS final', 'COPY --from=build /out /',
  ].join('\n');
  const g = graph(text);
  assert.deepEqual(g.order, [0, 1, 3, 4]);
  assert.deepEqual(g.levels, [[0, 1], [3], [4]]);
  assert.deepEqual(graph(text, { target: 'assets' }).order, [1]);
});

test('an instruction before the first FROM other than ARG fails', () => {
  const err = failure('ARG A=1\nRUN true\nFROM alpine\n');
  assert.equal(err.message, 'no build stage in current context');
  assert.equal(err.range.start.line, 2);
});

test('COPY from a URL is rejected while ADD from a URL is fine', () => {
  assert.equal(failure('FROM scratch\nCOPY http://example.com/README.md /\n').message, "source can't be a URL for COPY");
  assert.doesNotThrow(() => graph('FROM scratch\nADD http://example.com/README.md /\n'));
});

test('a stage name used twice is reported as a warning and the later stage wins', () => {
  const g = graph('FROM a AS x\nFROM b AS x\nFROM x\n');
  assert.equal(g.warnings.length, 1);
  assert.match(g.warnings[0]?.message ?? '', /Duplicate stage name "x"/);
  assert.equal(g.stages[2]?.baseStage, 1);
});
