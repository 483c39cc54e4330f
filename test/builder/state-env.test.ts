/**
 * The environment RUN gets and words expand with is BuildKit's LLB state env, not the config's Env: ARG values
 * set it as ENV does (the later one wins), a stage based on another inherits it, and WORKDIR makes its
 * directories as the stage's USER. Found by the differential fuzzer (seeds 20235, 20192, 20220); the expected
 * values are what dockerd 20.10's BuildKit produced for the same Dockerfiles from the same busybox base, and what
 * the modern dockerfile2llb does (dispatchArg adds ARG values with `d.state.AddEnv`; a stage's state starts as its
 * base stage's `d.base.state` with the config's Env added on top; WORKDIR's mkdir runs `WithUser`).
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

test('an ARG after an ENV of the same name wins for RUN and later words, but not in the config', async () => {
  const ctx = await sb.context({
    Dockerfile: ['FROM busybox', 'ENV A=x', 'ARG A=y', 'RUN echo "A=$A" > /out', 'ENV B=$A', 'ENV C=$A-env', ''].join('\n'),
  });
  const b = await sb.build({ context: ctx });
  assert.equal(await b.read('/out'), 'A=y\n');
  assert.deepEqual(b.image.config.config.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=x', 'B=y', 'C=y-env']);
});

test("a stage based on another inherits its ARG values, under the config's Env", async () => {
  const ctx = await sb.context({
    Dockerfile: ['FROM busybox AS a', 'ENV A=1', 'ARG A=9', 'ARG Q=7', 'FROM a', 'RUN echo "A=$A Q=$Q" > /out', 'ENV Z=${Q}z', ''].join('\n'),
  });
  const b = await sb.build({ context: ctx });
  assert.equal(await b.read('/out'), 'A=1 Q=7\n');
  assert.deepEqual(b.image.config.config.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1', 'Z=7z']);
});

test('a changed ARG value of the parent stage reruns the child stage’s RUN (it is in the RUN’s environment)', async () => {
  const ctx = await sb.context({ Dockerfile: ['FROM busybox AS a', 'ARG Q', 'FROM a', 'RUN echo "Q=$Q" > /out', ''].join('\n') });
  assert.equal(await (await sb.build({ context: ctx, buildArgs: { Q: '1' } })).read('/out'), 'Q=1\n');
  assert.equal(await (await sb.build({ context: ctx, buildArgs: { Q: '2' } })).read('/out'), 'Q=2\n');
});

test('WORKDIR makes the directories it creates as the stage’s USER (a numeric user without group: gid = uid)', async () => {
  const ctx = await sb.context({
    Dockerfile: ['FROM busybox', 'USER 65534:65534', 'WORKDIR /app/sub', 'USER 1000', 'WORKDIR rel', 'USER nobody', 'WORKDIR /etc/byname', 'USER root', 'WORKDIR /app', ''].join('\n'),
  });
  const b = await sb.build({ context: ctx });
  const owner = async (p: string): Promise<string> => {
    const st = await lstat(path.join(b.fs, p));
    return `${st.uid}:${st.gid}`;
  };
  assert.equal(await owner('app'), '65534:65534');
  assert.equal(await owner('app/sub'), '65534:65534');
  assert.equal(await owner('app/sub/rel'), '1000:1000');
  // /etc exists already: only the new directory gets the user (nobody's primary group in busybox is 65534).
  assert.equal(await owner('etc'), '0:0');
  assert.equal(await owner('etc/byname'), '65534:65534');
});
