/**
 * WORKDIR right after a RUN: the RUN's layer may still be hashing, and WORKDIR then works over its upperdir
 * (as a COPY does) instead of waiting. What it sees there must be what BuildKit sees: a directory the RUN made
 * exists (WORKDIR adds BuildKit's empty layer), one the RUN deleted (a whiteout in the upperdir) does not.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

/** The diffID of the empty layer (a tar of only its end blocks), which BuildKit gives a WORKDIR of an existing directory. */
const EMPTY_LAYER = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';

test('WORKDIR after a RUN sees the directories the RUN made and deleted', async () => {
  const ctx = await sb.context({
    Dockerfile: [
      'FROM busybox',
      'RUN mkdir -p /made/deep /gone/sub && echo x > /gone/sub/f',
      'WORKDIR /made/deep',
      'RUN rm -rf /gone',
      'WORKDIR /gone/sub',
      'RUN pwd > /where && ls -ld /gone/sub | cut -c1-10 > /mode && ls -A /gone/sub | wc -l > /count',
      '',
    ].join('\n'),
  });
  const b = await sb.build({ context: ctx });
  assert.equal(await b.read('where'), '/gone/sub\n');
  assert.equal(await b.read('mode'), 'drwxr-xr-x\n');
  assert.equal((await b.read('count')).trim(), '0');
  const diffIds = b.image.config.rootfs.diff_ids;
  const base = diffIds.length - 5;
  // busybox's layer(s), then RUN, WORKDIR (existing: empty), RUN, WORKDIR (re-created: not empty), RUN.
  assert.equal(diffIds[base + 1], EMPTY_LAYER);
  assert.notEqual(diffIds[base + 3], EMPTY_LAYER);
});
