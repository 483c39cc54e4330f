/**
 * The builder's two extension points: instruction handlers registered by kind (src/builder/dispatch.ts) and RUN
 * mount modules registered by type (src/builder/mounts/). The `@ts-expect-error` lines are checked by
 * `tsc --noEmit -p .` (npm run typecheck), which fails when the error they expect goes away: a table that leaves
 * a kind or type out, or files a handler under another kind, must not compile. The tests check the same tables
 * at run time, where a cast could hide a gap from the compiler.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HANDLERS } from '../../src/builder/dispatch.js';
import { MOUNTS, type MountTable } from '../../src/builder/mounts/index.js';
import type { HandlerTable } from '../../src/builder/step-context.js';
import { INSTRUCTION_KINDS, MOUNT_TYPES, parseMount, type InstructionKind, type MountType, type RunMount } from '../../src/parser/instructions.js';

test('every instruction kind has a handler, and a table that leaves one out does not compile', () => {
  assert.deepEqual(Object.keys(HANDLERS).sort(), [...INSTRUCTION_KINDS].sort());
  for (const kind of INSTRUCTION_KINDS) assert.equal(typeof HANDLERS[kind], 'function', kind);
  const { run: _run, ...withoutRun } = HANDLERS;
  // @ts-expect-error RUN has no handler
  const incomplete: HandlerTable<InstructionKind> = withoutRun;
  assert.equal(Object.hasOwn(incomplete, 'run'), false);
  // @ts-expect-error ENV's handler filed under RUN
  const misfiled: HandlerTable<'run'> = { run: HANDLERS.env };
  assert.equal(misfiled.run, HANDLERS.env);
});

test('every mount type the parser knows has a module under its own type, and a table that leaves one out does not compile', () => {
  assert.deepEqual(Object.keys(MOUNTS).sort(), [...MOUNT_TYPES].sort());
  for (const type of MOUNT_TYPES) {
    assert.equal(MOUNTS[type].type, type);
    // The parser gives each type its own variant (target is given so every type is valid).
    assert.equal(parseMount(`type=${type},target=/t`).type, type);
  }
  // The parser's types and its variants are the same set.
  const sameTypes: [MountType] extends [RunMount['type']] ? ([RunMount['type']] extends [MountType] ? true : false) : false = true;
  assert.equal(sameTypes, true);
  const { ssh: _ssh, ...withoutSsh } = MOUNTS;
  // @ts-expect-error ssh has no module
  const incomplete: MountTable = withoutSsh;
  assert.equal(Object.hasOwn(incomplete, 'ssh'), false);
  // @ts-expect-error the cache module filed under tmpfs
  const misfiled: MountTable = { ...MOUNTS, tmpfs: MOUNTS.cache };
  assert.equal(misfiled.tmpfs.type, 'cache');
});

test('a parsed mount carries only the fields of its type', () => {
  // `id` and `env` are accepted for any type (as BuildKit accepts them) but mean something to some types only.
  assert.deepEqual(parseMount('type=tmpfs,target=/t,id=x,env=E,size=1k'), {
    type: 'tmpfs', spec: 'type=tmpfs,target=/t,id=x,env=E,size=1k', needsExpansion: false, target: '/t', readOnly: false, sizeLimit: 1024,
  });
  assert.deepEqual(parseMount('type=secret,id=npmrc,env=TOKEN,required'), {
    type: 'secret', spec: 'type=secret,id=npmrc,env=TOKEN,required', needsExpansion: false, required: true, id: 'npmrc', env: 'TOKEN',
  });
  const bind: RunMount = parseMount('source=x,target=/x,from=build');
  assert.deepEqual(bind, { type: 'bind', spec: 'source=x,target=/x,from=build', needsExpansion: false, target: '/x', readOnly: true, source: 'x', from: 'build' });
});
