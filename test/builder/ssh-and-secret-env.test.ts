// RUN --mount=type=ssh against a real ssh-agent started here (the step runs the host's own ssh-add through kiln's
// agent proxy), and secret mounts with env=.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let agentSocket: string;
let agentPid: number | undefined;
let fingerprint: string;
let keyFile: string;
let ctx: string;

before(async () => {
  sb = await sandbox();
  const agentDir = await sb.tempDir('agent');
  agentSocket = path.join(agentDir, 'agent.sock');
  const started = execFileSync('ssh-agent', ['-s', '-a', agentSocket], { encoding: 'utf8' });
  agentPid = Number(/SSH_AGENT_PID=(\d+)/.exec(started)?.[1]);
  keyFile = path.join(agentDir, 'id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kiln-test-key', '-f', keyFile]);
  execFileSync('ssh-add', ['-q', keyFile], { env: { ...process.env, SSH_AUTH_SOCK: agentSocket }, stdio: 'ignore' });
  fingerprint = execFileSync('ssh-keygen', ['-lf', `${keyFile}.pub`], { encoding: 'utf8' }).split(' ')[1]!;
  // The host's ssh-add with its loader and libraries, so the busybox step can run it (bind-mounted from the context).
  ctx = await sb.tempDir('ctx');
  const tools = path.join(ctx, 'tools');
  mkdirSync(tools);
  const ssh = execFileSync('which', ['ssh-add'], { encoding: 'utf8' }).trim();
  copyFileSync(ssh, path.join(tools, 'ssh-add'));
  for (const line of execFileSync('ldd', [ssh], { encoding: 'utf8' }).split('\n')) {
    const lib = /(\/\S+) \(0x/.exec(line)?.[1];
    if (lib) copyFileSync(realpathSync(lib), path.join(tools, path.basename(lib)));
  }
  writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox:latest\n');
});

after(async () => {
  if (agentPid) process.kill(agentPid);
  await sb.cleanup();
});

const loader = '/tools/ld-linux-x86-64.so.2 --library-path /tools /tools/ssh-add';

test('RUN --mount=type=ssh reaches the agent given with --ssh, at the default socket with SSH_AUTH_SOCK set', async () => {
  const b = await sb.build({
    context: ctx,
    ssh: [
      { id: 'default', socket: agentSocket },
      { id: 'other', socket: agentSocket },
    ],
    dockerfileText: `FROM busybox:latest
RUN --mount=type=ssh --mount=type=bind,source=tools,target=/tools \\
    ${loader} -l > /keys && echo "$SSH_AUTH_SOCK" > /sock-env && stat -c '%a %u %g %F' "$SSH_AUTH_SOCK" > /sock-stat
RUN --mount=type=ssh,id=other,target=/run/other.sock,mode=0640,uid=7,gid=8,required \\
    stat -c '%a %u %g %F' /run/other.sock > /other-stat && echo "$SSH_AUTH_SOCK" > /other-env
`,
  });
  assert.match(await b.read('keys'), new RegExp(`${fingerprint.replace(/[+/]/g, '\\$&')} kiln-test-key \\(ED25519\\)`));
  assert.equal(await b.read('sock-env'), '/run/buildkit/ssh_agent.0\n');
  assert.equal(await b.read('sock-stat'), '600 0 0 socket\n');
  assert.equal(await b.read('other-stat'), '640 7 8 socket\n');
  assert.equal(await b.read('other-env'), '/run/other.sock\n');
  // No socket stub stays in the image, and no variable in the config; the directories the runtime made for the
  // sockets stay, empty, as BuildKit leaves a mount point's parents.
  assert.ok(!existsSync(path.join(b.fs, 'run', 'other.sock')));
  assert.deepEqual(readdirSync(path.join(b.fs, 'run', 'buildkit')), []);
  assert.ok(!(b.image.config.config.Env ?? []).some((e) => e.startsWith('SSH_AUTH_SOCK=')));
});

test('an ssh mount without an agent is skipped, or fails the step when required', async () => {
  const b = await sb.build({
    context: ctx,
    dockerfileText: `FROM busybox:latest\nRUN --mount=type=ssh sh -c 'test ! -e "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK"' > /skipped\n`,
  });
  assert.equal(await b.read('skipped'), '/run/buildkit/ssh_agent.0\n');
  await assert.rejects(
    sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nRUN --mount=type=ssh,id=deploy,required true\n' }),
    /no SSH agent for id "deploy": pass one with --ssh deploy=SOCKET/,
  );
});

test('a key file where an agent socket is expected fails with a message that says what to do', async () => {
  await assert.rejects(
    sb.build({ context: ctx, ssh: [{ id: 'default', socket: keyFile }], dockerfileText: 'FROM busybox:latest\nRUN --mount=type=ssh true\n' }),
    /is not a socket: kiln forwards SSH agents, not key files/,
  );
});

test('a secret with env= is in the step environment only; with a target it is also a file', async () => {
  const secretFile = path.join(await sb.tempDir('secret'), 'tok');
  writeFileSync(secretFile, 'hunter3');
  process.env.KILN_TEST_SECRET_FROM_ENV = 'from-the-environment';
  const b = await sb.build({
    context: ctx,
    secrets: [
      { id: 'tok', src: secretFile },
      { id: 'TOKEN2', env: 'KILN_TEST_SECRET_FROM_ENV' },
    ],
    dockerfileText: `FROM busybox:latest
ENV TOKEN=from-the-image
RUN --mount=type=secret,id=tok,env=TOKEN sh -c 'test ! -e /run/secrets/tok && echo -n "$TOKEN" | md5sum | cut -c1-32 > /a'
RUN --mount=type=secret,id=tok,env=TOKEN,target=/etc/tok sh -c 'test "$TOKEN" = "$(cat /etc/tok)" && echo -n "$TOKEN" | md5sum | cut -c1-32 > /b'
RUN --mount=type=secret,id=TOKEN2,env=TOKEN2 sh -c 'echo -n "$TOKEN2" | md5sum | cut -c1-32 > /c'
RUN echo "$TOKEN" > /after
`,
  });
  // The Dockerfile never spells the values out, so finding them anywhere below means they leaked.
  const md5 = (v: string): string => `${createHash('md5').update(v).digest('hex')}\n`;
  assert.equal(await b.read('a'), md5('hunter3'));
  assert.equal(await b.read('b'), md5('hunter3'));
  assert.equal(await b.read('c'), md5('from-the-environment'));
  assert.equal(await b.read('after'), 'from-the-image\n');
  assert.ok((b.image.config.config.Env ?? []).includes('TOKEN=from-the-image'));
  const files = (await readdir(b.fs, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
  assert.ok(files.some((f) => f.name === 'busybox') && files.some((f) => f.name === 'after'), 'the whole filesystem is searched');
  for (const f of files) assert.ok(!(await readFile(path.join(f.parentPath, f.name))).includes('hunter3'), `the secret is in ${f.name}`);
  assert.ok(!JSON.stringify(b.image.config).includes('hunter3'), 'the secret is in the config or history');
});

// BuildKit's dispatchSecret: `source` names the secret (before `id`), the default file is /run/secrets/<base name of
// the id>, and uid/gid/mode set the file's owner and bits (0:0 and 0400 otherwise).
test('a secret mount named by source=, and the owner and mode of its file', async () => {
  const secretFile = path.join(await sb.tempDir('secret-src'), 'tok');
  writeFileSync(secretFile, 'sesame');
  const b = await sb.build({
    context: ctx,
    secrets: [{ id: 'tok', src: secretFile }],
    dockerfileText: `FROM busybox:latest
RUN --mount=type=secret,source=tok cat /run/secrets/tok | wc -c > /len
RUN --mount=type=secret,src=tok,target=/etc/t stat -c '%u:%g %a' /etc/t > /default-owner
RUN --mount=type=secret,id=tok,uid=1000,gid=1001,mode=0440 stat -c '%u:%g %a' /run/secrets/tok > /owner
USER 1000
RUN --mount=type=secret,id=tok,uid=1000 cat /run/secrets/tok | wc -c > /tmp/user-len
`,
  });
  assert.equal((await b.read('len')).trim(), '6');
  assert.equal(await b.read('default-owner'), '0:0 400\n');
  assert.equal(await b.read('owner'), '1000:1001 440\n');
  assert.equal((await b.read('tmp/user-len')).trim(), '6');
});
