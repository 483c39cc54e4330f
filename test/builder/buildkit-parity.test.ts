/**
 * Config and history details where kiln once differed from BuildKit, found by the differential fuzzer
 * (`npm run fuzz:build`). The expected values were read off dockerd 20.10's BuildKit building the same
 * Dockerfile from the same busybox base (`docker save`, then the image config).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sandbox, type Built, type Sandbox } from './helpers.js';

let sb: Sandbox;
let b: Built;
before(async () => {
  sb = await sandbox();
  const ctx = await sb.context({
    Dockerfile: [
      'FROM busybox AS b',
      'RUN mkdir -p /w/d1',
      'FROM busybox',
      'ARG P="80 81/udp"',
      'EXPOSE $B $P 90',
      'WORKDIR /w',
      'WORKDIR /',
      'WORKDIR /etc',
      'COPY --from=b --chown=1:2 /w/ rel/',
      'COPY --chmod=644 keep/ /etc/$UNSET/',
      'ONBUILD RUN echo later',
      'CMD []',
      'ENTRYPOINT []',
      'USER root',
      '',
    ].join('\n'),
    'keep/k': 'k',
  });
  b = await sb.build({ context: ctx });
});
after(() => sb.cleanup());

test('EXPOSE expands into words: an unset variable is no port, "80 81/udp" is two', () => {
  assert.deepEqual(Object.keys(b.image.config.config.ExposedPorts ?? {}).sort(), ['80/tcp', '81/udp', '90/tcp']);
});

test('empty lists and strings are left out of the config (Go omitempty): CMD [] and ENTRYPOINT [] leave none', () => {
  const cfg = b.image.config.config as Record<string, unknown>;
  assert.ok(!('Cmd' in cfg), 'no Cmd');
  assert.ok(!('Entrypoint' in cfg), 'no Entrypoint');
  assert.equal(cfg['User'], 'root');
  assert.equal(cfg['WorkingDir'], '/etc');
  assert.deepEqual(cfg['OnBuild'], ['RUN echo later']);
});

test('history: every WORKDIR but / has a layer, ONBUILD has no entry, COPY shows --chown/--chmod (not --from) and the destination as written', () => {
  const own = (b.image.config.history ?? []).slice(1).map((h) => [h.created_by, h.empty_layer === true]);
  assert.deepEqual(own, [
    ['ARG P=80 81/udp', true],
    ['EXPOSE map[80/tcp:{} 81/udp:{} 90/tcp:{}]', true],
    ['WORKDIR /w', false],
    ['WORKDIR /', true],
    ['WORKDIR /etc', false],
    // The modern frontend's dispatchCopy writes --chown and --chmod (dockerd 20.10's left them out: deliberate, README).
    ['COPY --chown=1:2 /w/ rel/ # buildkit', false],
    ['COPY --chmod=644 keep/ /etc// # buildkit', false],
    ['CMD []', true],
    ['ENTRYPOINT []', true],
    ['USER root', true],
  ]);
  assert.equal(b.image.config.rootfs.diff_ids.length, 5);
  // WORKDIR /etc, which exists: the empty layer (a tar of two zero blocks), as BuildKit's.
  assert.equal(b.image.config.rootfs.diff_ids[2], 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef');
});

test('FROM scratch: WorkingDir is /, and a RUN leaves the mount points the runtime made (/dev /etc /proc /sys, 0755)', async () => {
  const ctx = await sb.context({
    Dockerfile: 'FROM busybox AS full\nFROM scratch\nCOPY --from=full /bin /bin\nRUN --mount=type=tmpfs,target=/x/y true\n',
  });
  const s = await sb.build({ context: ctx });
  assert.equal(s.image.config.config.WorkingDir, '/');
  const { lstat, readdir } = await import('node:fs/promises');
  const path = await import('node:path');
  assert.deepEqual((await readdir(s.fs)).sort(), ['bin', 'dev', 'etc', 'proc', 'sys', 'x']);
  for (const d of ['dev', 'etc', 'proc', 'sys', 'x']) {
    const st = await lstat(path.join(s.fs, d));
    assert.ok(st.isDirectory(), d);
    assert.equal(st.mode & 0o7777, 0o755, d);
  }
  // The mount point itself is removed, as BuildKit's stub cleaner (v0.10 on) does; dockerd 20.10's BuildKit
  // left /x/y too (a deliberate difference, README).
  assert.deepEqual(await readdir(path.join(s.fs, 'x')), []);
});

test('a wildcard that matches nothing copies nothing (an empty layer, no destination made); a missing directory before it fails', async () => {
  const ctx = await sb.context({
    Dockerfile: 'FROM busybox AS s0\nCOPY *.txt rel/\nFROM busybox\nCOPY --from=s0 /nothere* /x/\nCOPY --from=s0 /etc/nomatch* /y/\n',
    'keep.md': 'k',
  });
  const s = await sb.build({ context: ctx });
  const empty = 'sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef';
  assert.deepEqual(s.image.config.rootfs.diff_ids.slice(1), [empty, empty]);
  const { readdir } = await import('node:fs/promises');
  const names = await readdir(s.fs);
  assert.ok(!names.includes('x') && !names.includes('y') && !names.includes('rel'));

  for (const df of ['FROM busybox\nCOPY missingdir/*.txt /x/\n', 'FROM busybox AS s\nFROM busybox\nCOPY --from=s /missingdir/* /x/\n']) {
    await assert.rejects(sb.build({ context: await sb.context({ Dockerfile: df }) }), /not found/);
  }
});

test('history of RUN with ARGs, ARG, SHELL, HEALTHCHECK and WORKDIR, as the BuildKit frontend writes them', async () => {
  // RUN: every ARG in scope once, in order of first declaration, with its value in the step environment (an
  // ARG after an ENV of the same name wins, a later ENV wins over the ARG, an ARG without a value is `A=`).
  // dockerd 20.10 agrees except where noted (deliberate differences, README).
  const ctx = await sb.context({
    Dockerfile: [
      'ARG G=global',
      'FROM busybox AS p',
      'ARG E1',
      'ENV U=1000',
      'ARG U=nobody',
      'ARG U=nobody',
      'ARG G',
      'SHELL ["/bin/sh", "-x", "-c"]',
      'HEALTHCHECK --interval=90s --timeout=1500ms CMD true',
      'WORKDIR /w/d1/../d3',
      'WORKDIR sub/../s2',
      'RUN true',
      'ENV G=env',
      'RUN true',
      '',
    ].join('\n'),
  });
  const s = await sb.build({ context: ctx });
  const own = (s.image.config.history ?? []).slice(1).map((h) => h.created_by);
  assert.deepEqual(own, [
    'ARG E1',
    'ENV U=1000',
    'ARG U=nobody',
    'ARG U=nobody',
    // 20.10 writes `ARG G` for a value from the global ARG; the modern dispatchArg writes the value.
    'ARG G=global',
    'SHELL [/bin/sh -x -c]',
    // Go's %+v of HealthcheckConfig (20.10: %q of an older struct).
    'HEALTHCHECK {Test:[CMD-SHELL true] Interval:1m30s Timeout:1.5s StartPeriod:0s StartInterval:0s Retries:0}',
    // An absolute WORKDIR is kept as written; a relative one is joined and cleaned.
    'WORKDIR /w/d1/../d3',
    'WORKDIR /w/d3/s2',
    // 20.10 lists U twice; the modern runCommandString once.
    'RUN |3 E1= U=nobody G=global /bin/sh -x -c true # buildkit',
    'ENV G=env',
    'RUN |3 E1= U=nobody G=env /bin/sh -x -c true # buildkit',
  ]);
  assert.equal(s.image.config.config.WorkingDir, '/w/d3/s2');

  // A stage based on another: the modern frontend's dispatchState.init takes the base stage's ARGs along, so its
  // RUN lists them (dockerd 20.10 wrote `RUN /bin/sh -c true # buildkit` here: deliberate, README).
  const child = await sb.build({ context: await sb.context({ Dockerfile: 'FROM busybox AS p\nARG A=1\nFROM p\nARG B\nRUN true\n' }) });
  const last = (child.image.config.history ?? []).at(-1)?.created_by;
  assert.equal(last, 'RUN |2 A=1 B= /bin/sh -c true # buildkit');
});

test('WORKDIR under USER makes its missing directories owned by USER (BuildKit file-op owner rules); a RUN after WORKDIR /w/d1/../d3 has /w/d1 too', async () => {
  // Read off dockerd 20.10's BuildKit building this Dockerfile (`ls -lnd` in a RUN at the end): a numeric user is
  // uid and gid, a name takes its passwd ids, an unknown name stays 0:0, an unknown group name keeps the gid; runc
  // makes the working directory as written, so `..` leaves /w/d1 behind.
  const ctx = await sb.context({
    Dockerfile: [
      'FROM busybox',
      'USER 1000',
      'WORKDIR /a/b',
      'USER nobody',
      'WORKDIR /n',
      'USER nosuch',
      'WORKDIR /x/y',
      'USER 5:daemon',
      'WORKDIR /g',
      'USER root',
      'WORKDIR /w/d1/../d3',
      'RUN true',
      '',
    ].join('\n'),
  });
  const s = await sb.build({ context: ctx });
  const { lstat } = await import('node:fs/promises');
  const path = await import('node:path');
  const owners: Record<string, string> = {};
  for (const d of ['a', 'a/b', 'n', 'x', 'x/y', 'g', 'w', 'w/d1', 'w/d3']) {
    const st = await lstat(path.join(s.fs, d));
    assert.ok(st.isDirectory(), d);
    owners[d] = `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`;
  }
  assert.deepEqual(owners, {
    'a': '1000:1000 755',
    'a/b': '1000:1000 755',
    'n': '65534:65534 755',
    'x': '0:0 755',
    'x/y': '0:0 755',
    'g': '5:5 755',
    'w': '0:0 755',
    'w/d1': '0:0 755',
    'w/d3': '0:0 755',
  });
  assert.equal(s.image.config.config.WorkingDir, '/w/d1/../d3');
});
