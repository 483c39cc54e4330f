import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fixturesDir, sandbox, type Built, type Sandbox } from './helpers.js';

let sb: Sandbox;
let built: Built;
before(async () => {
  sb = await sandbox();
  built = await sb.build({
    context: path.join(fixturesDir, 'config'),
    buildArgs: { OVERRIDDEN: 'from-cli', UNDECLARED: 'x', LOCAL: 'cli-local' },
    tags: ['parent:1'],
  });
});
after(() => sb.cleanup());

test('ARG in a stage inherits the global value and build args override defaults', () => {
  const env = built.image.config.config.Env ?? [];
  assert.ok(env.includes('FROM_ARG=global-default-cli-local'), env.join(','));
});

// As dockerd 20.10's BuildKit builds this fixture (and modern dispatchArg does, with d.state.AddEnv): an ARG
// declared after an ENV of the same name, with a value (here the build arg), sets the variable for later words
// and RUN; the config keeps the ENV's value.
test('an ARG declared after an ENV of the same name wins for later words and RUN, not in the config', () => {
  const env = built.image.config.config.Env ?? [];
  assert.ok(env.includes('SEEN=from-cli'), env.join(','));
  assert.ok(env.includes('OVERRIDDEN=env-wins'));
});

test('RUN sees declared ARGs but not undeclared build args, and runs as USER in WORKDIR', async () => {
  assert.equal((await built.read('tmp/args')).trim(), 'global-default cli-local from-cli');
  assert.equal((await built.read('tmp/uid')).trim(), '65534');
  assert.equal((await built.read('tmp/pwd')).trim(), '/app/sub');
});

test('an unconsumed build arg is reported as a warning', () => {
  assert.ok(built.result.warnings.some((w) => w.includes('[UNDECLARED]')), built.result.warnings.join('\n'));
});

test('config instructions land in the image config', () => {
  const c = built.image.config.config;
  assert.deepEqual(c.Labels, { 'com.example.one': '1', 'com.example.two': 'cli-local' });
  assert.deepEqual(c.ExposedPorts, { '80/tcp': {}, '443/udp': {} });
  assert.deepEqual(c.Volumes, { '/data': {}, '/cache': {} });
  assert.equal(c.StopSignal, 'SIGTERM');
  assert.deepEqual(c.Healthcheck, { Test: ['CMD', 'true'], Interval: 5e9, Timeout: 2e9, Retries: 3 });
  assert.deepEqual(c.OnBuild, ['RUN echo triggered > /tmp/onbuild.txt']);
  assert.equal(c.WorkingDir, '/app/sub');
  assert.equal(c.User, 'nobody');
  assert.deepEqual(c.Shell, ['/bin/sh', '-ec']);
});

test('shell-form CMD uses the SHELL, and ENTRYPOINT after CMD in the same stage keeps it', () => {
  const c = built.image.config.config;
  assert.deepEqual(c.Cmd, ['/bin/sh', '-ec', 'echo hi']);
  assert.deepEqual(c.Entrypoint, ['/bin/echo']);
});

test('history marks config-only steps as empty layers and names RUN with its args', () => {
  const h = (built.image.config.history ?? []).filter((e) => e.comment === 'buildkit.dockerfile.v0');
  const run = h.find((e) => e.created_by?.startsWith('RUN '));
  assert.ok(run && !run.empty_layer);
  // Every ARG in scope, once (dockerd 20.10 lists OVERRIDDEN twice, `|4`; the modern runCommandString once), with
  // the value in the step's environment: OVERRIDDEN's ARG came after its ENV.
  assert.match(run.created_by ?? '', /^RUN \|3 GLOBAL=global-default LOCAL=cli-local OVERRIDDEN=from-cli \/bin\/sh -c id -u/);
  const user = h.find((e) => e.created_by === 'USER nobody');
  assert.equal(user?.empty_layer, true);
  assert.equal(h.filter((e) => !e.empty_layer).length, built.image.manifest.layers.length - 1);
});

test('an image used as a base runs its ONBUILD triggers and drops them', async () => {
  const child = await sb.build({
    context: await sb.context({}),
    dockerfileText: 'FROM parent:1\nRUN cat /tmp/onbuild.txt > /tmp/seen\n',
  });
  assert.equal((await child.read('tmp/seen')).trim(), 'triggered');
  assert.equal(child.image.config.config.OnBuild ?? null, null);
});

test('global ARGs are not visible in a stage until declared; predefined platform ARGs are when declared', async () => {
  const b = await sb.build({
    context: await sb.context({}),
    dockerfileText: 'ARG G=global\nFROM busybox:latest\nRUN echo "[$G][$TARGETARCH]" > /before\nARG G\nARG TARGETARCH\nRUN echo "[$G][$TARGETARCH]" > /after\n',
  });
  assert.equal(await b.read('before'), '[][]\n');
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  assert.equal(await b.read('after'), `[global][${arch}]\n`);
});

test('SHELL changes how shell-form RUN is run', async () => {
  const b = await sb.build({
    context: await sb.context({}),
    dockerfileText: 'FROM busybox:latest\nSHELL ["/bin/sh", "-c", "echo \\"$0\\" > /via-shell"]\nRUN marker text\n',
  });
  assert.equal(await b.read('via-shell'), 'marker text\n');
});

test('ENTRYPOINT in a child stage drops the CMD it inherited, unless CMD is set again', async () => {
  const b = await sb.build({
    context: await sb.context({}),
    dockerfileText: 'FROM busybox:latest AS p\nCMD ["inherited"]\nFROM p AS c1\nENTRYPOINT ["/bin/echo"]\nFROM p\nENTRYPOINT ["/bin/echo"]\nCMD ["mine"]\n',
    target: 'c1',
  });
  assert.equal(b.image.config.config.Cmd ?? null, null);
  const c = await sb.build({
    context: await sb.context({}),
    dockerfileText: 'FROM busybox:latest AS p\nCMD ["inherited"]\nFROM p\nENTRYPOINT ["/bin/echo"]\nCMD ["mine"]\n',
  });
  assert.deepEqual(c.image.config.config.Cmd, ['mine']);
});
