/**
 * The directories WORKDIR makes belong to USER. Expected owners are what dockerd 20.10's BuildKit built for the same
 * Dockerfile (its WORKDIR is a mkdir with llb.WithUser): every directory it creates, parents included, gets the user;
 * a number without a group is the gid too; a name is looked up in the image; an existing directory is left as it is.
 */
import assert from 'node:assert/strict';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

test('WORKDIR makes its missing directories owned by USER, and a RUN as that user can write there', async () => {
  const b = await sb.build({
    context: await sb.context({}),
    dockerfileText: 'FROM busybox:latest\nUSER 65534:65534\nWORKDIR /w/d1\nRUN echo hi > f\nUSER 7\nWORKDIR /u/v\nUSER nobody\nWORKDIR /n\nWORKDIR /etc/x\n',
  });
  const owner = async (p: string): Promise<string> => {
    const st = await lstat(path.join(b.fs, p));
    return `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`;
  };
  assert.equal(await owner('w'), '65534:65534 755');
  assert.equal(await owner('w/d1'), '65534:65534 755');
  assert.equal(await b.read('w/d1/f'), 'hi\n');
  assert.equal(await owner('u'), '7:7 755');
  assert.equal(await owner('u/v'), '7:7 755');
  assert.equal(await owner('n'), '65534:65534 755');
  assert.equal(await owner('etc'), '0:0 755');
  assert.equal(await owner('etc/x'), '65534:65534 755');
});

// Fuzz seed 40723, checked on dockerd 20.10's BuildKit: WORKDIR makes the cleaned /w/d3 for USER; the RUN's runtime
// then makes the working directory as written (`/w/d1/../d3`), so a missing /w/d1 appears root's, and the step
// (as nobody) cannot write into it.
test('a working directory with `..` under a USER: the detour directory the runtime makes is root’s', async () => {
  const ctx = await sb.context({
    Dockerfile: ['FROM busybox', 'USER 65534:65534', 'WORKDIR /w/d1/../d3', 'RUN mkdir -p /w/d1 && echo hello > /w/d1/n2 ; true', ''].join('\n'),
  });
  const b = await sb.build({ context: ctx });
  const owner = async (p: string): Promise<string> => {
    const st = await lstat(path.join(b.fs, p));
    return `${st.uid}:${st.gid}`;
  };
  assert.equal(await owner('w'), '65534:65534');
  assert.equal(await owner('w/d3'), '65534:65534');
  assert.equal(await owner('w/d1'), '0:0');
  await assert.rejects(lstat(path.join(b.fs, 'w/d1/n2')));
});
