/** What the progress shows for a FROM step: the base as docker shows it, build args expanded, not the line as written. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

test('FROM ${BASE} AS name shows the expanded, fully named image; a stage base shows its name', async () => {
  const ctx = await sb.context({
    Dockerfile: 'ARG BASE=busybox\nFROM ${BASE} AS first\nRUN echo > /a\nFROM first\nRUN echo > /b\n',
  });
  const b = await sb.build({ context: ctx });
  const starts = b.events.flatMap((e) => (e.type === 'step-start' ? [e.step] : []));
  const froms = starts.filter((s) => s.text.startsWith('FROM'));
  assert.deepEqual(
    froms.map((s) => [s.stage, s.text, s.line]),
    [
      ['first', 'FROM docker.io/library/busybox:latest', 2],
      ['stage-1', 'FROM first', 4],
    ],
  );
});
