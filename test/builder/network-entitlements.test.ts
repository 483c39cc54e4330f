// RUN's network modes (the sandboxed network by default), the entitlements that --network=host and
// --security=insecure need (as BuildKit's `--allow`), and the proxy build args Docker predefines.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { BuildError, DockerfileError } from '../../src/errors.js';
import { sandbox, type Sandbox } from './helpers.js';

let sb: Sandbox;
let ctx: string;
before(async () => {
  sb = await sandbox();
  ctx = await sb.context({});
});
after(() => sb.cleanup());

const interfaces = (devText: string): string[] =>
  devText
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0]?.trim() ?? '')
    .filter((n) => n !== '')
    .sort();

test('a RUN without --network gets a network of its own with an interface besides loopback; --network none only loopback', async () => {
  const dockerfileText = 'FROM busybox:latest\nRUN cat /proc/net/dev > /dev-default\nRUN --network=none cat /proc/net/dev > /dev-none\n';
  const b = await sb.build({ context: ctx, dockerfileText });
  const def = interfaces(await b.read('dev-default'));
  assert.ok(def.includes('lo') && def.length >= 2, `interfaces: ${def.join(',')}`);
  assert.deepEqual(interfaces(await b.read('dev-none')), ['lo']);
  // The build-wide --network none applies to steps without a flag.
  const none = await sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\nRUN cat /proc/net/dev > /dev-default\n', network: 'none' });
  assert.deepEqual(interfaces(await none.read('dev-default')), ['lo']);
});

test('RUN --network=host is refused at its line without the network.host entitlement, even under --network none', async () => {
  const dockerfileText = 'FROM busybox:latest\nRUN echo one\nRUN --network=host cat /proc/net/dev > /dev-host\n';
  for (const network of [undefined, 'none', 'default'] as const) {
    await assert.rejects(sb.build({ context: ctx, dockerfileText, ...(network === undefined ? {} : { network }) }), (err: unknown) => {
      assert.ok(err instanceof DockerfileError, String(err));
      assert.equal(err.range.start.line, 3);
      assert.match(err.message, /network\.host entitlement.*--allow network\.host/);
      return true;
    });
  }
  const granted = await sb.build({ context: ctx, dockerfileText, allow: ['network.host'] });
  assert.ok(interfaces(await granted.read('dev-host')).includes('lo'));
  // Choosing the host network for the whole build is the caller's own grant (buildx adds network.host for --network host).
  await sb.build({ context: ctx, dockerfileText, network: 'host' });
});

test('RUN --security=insecure needs the security.insecure entitlement and then runs without a seccomp filter', async () => {
  const dockerfileText = 'FROM busybox:latest\nRUN --security=insecure grep ^Seccomp: /proc/self/status > /insecure\nRUN grep ^Seccomp: /proc/self/status > /sandboxed\n';
  await assert.rejects(sb.build({ context: ctx, dockerfileText }), (err: unknown) => {
    assert.ok(err instanceof DockerfileError, String(err));
    assert.equal(err.range.start.line, 2);
    assert.match(err.message, /security\.insecure entitlement/);
    return true;
  });
  const b = await sb.build({ context: ctx, dockerfileText, allow: ['security.insecure'], network: 'none' });
  assert.match(await b.read('insecure'), /^Seccomp:\s+0$/m);
  assert.match(await b.read('sandboxed'), /^Seccomp:\s+2$/m);
});

test('RUN --security=insecure gets the devices BuildKit\'s insecure mode adds, usable; a sandboxed RUN cannot open them', { skip: !existsSync('/dev/loop-control') && 'no loop-control on this host' }, async () => {
  const probe = 'for d in /dev/loop-control /dev/loop0 /dev/fuse; do if [ -e $d ] && { true < $d; } 2>/dev/null; then echo "$d open"; else echo "$d no"; fi; done';
  const dockerfileText = `FROM busybox:latest\nRUN --security=insecure sh -c '${probe}' > /insecure\nRUN sh -c '${probe}' > /sandboxed\n`;
  const b = await sb.build({ context: ctx, dockerfileText, allow: ['security.insecure'], network: 'none' });
  const expectOpen = ['/dev/loop-control', '/dev/loop0', ...(existsSync('/dev/fuse') ? ['/dev/fuse'] : [])];
  for (const d of expectOpen) assert.match(await b.read('insecure'), new RegExp(`^${d} open$`, 'm'));
  for (const d of ['/dev/loop-control', '/dev/loop0', '/dev/fuse']) assert.match(await b.read('sandboxed'), new RegExp(`^${d} no$`, 'm'));
});

test('an unknown entitlement is refused', async () => {
  await assert.rejects(sb.build({ context: ctx, dockerfileText: 'FROM busybox:latest\n', allow: ['device' as 'network.host'] }), (err: unknown) => {
    assert.ok(err instanceof BuildError, String(err));
    assert.match(err.message, /invalid entitlement: "device"/);
    return true;
  });
});

test('proxy build args reach RUN without an ARG line, stay out of the cache key, history and config, and raise no warning', async () => {
  const dockerfileText = 'FROM busybox:latest\nRUN echo "$HTTP_PROXY|$https_proxy|$NO_PROXY|$ALL_PROXY|$FTP_PROXY" > /proxies\nENV ftp_proxy=from-env\nRUN echo "$ftp_proxy" > /env-wins\n';
  const buildArgs = { HTTP_PROXY: 'http://proxy.invalid:3128', https_proxy: 'http://secret-user:pw@proxy.invalid:3129', NO_PROXY: 'localhost', ALL_PROXY: 'socks5://proxy.invalid', ftp_proxy: 'ftp-arg' };
  const b = await sb.build({ context: ctx, dockerfileText, buildArgs, network: 'none' });
  assert.equal(await b.read('proxies'), 'http://proxy.invalid:3128|http://secret-user:pw@proxy.invalid:3129|localhost|socks5://proxy.invalid|\n');
  // An ENV of the same name wins over the predefined arg, as in BuildKit (the proxy values are only defaults).
  assert.equal(await b.read('env-wins'), 'from-env\n');
  const config = JSON.stringify(b.image.config);
  assert.ok(!config.includes('proxy.invalid'), `a proxy value is in the config or history: ${config}`);
  assert.deepEqual(b.result.warnings.filter((w) => /not consumed/.test(w)), []);
  // Other proxy values: every step comes from the cache.
  const again = await sb.build({ context: ctx, dockerfileText, buildArgs: { ...buildArgs, HTTP_PROXY: 'http://other.invalid:1' }, network: 'none' });
  assert.ok(again.result.steps.every((s) => s.cached || !s.step.text.startsWith('RUN')), 'a RUN step reran for another proxy value');
});

// The sandbox networks of a build are pooled as BuildKit's CNI provider pools its namespaces: a step that ends gives
// its namespace back for the next one, unless the step was privileged (it could have changed the namespace).
test('RUN steps of one build reuse a sandbox network, not one a privileged step used, and leave no namespace mounted', async () => {
  const nsOf = 'readlink /proc/self/ns/net';
  const dockerfileText = [
    'FROM busybox:latest',
    `RUN ${nsOf} > /ns1 && cat /proc/net/dev > /dev1`,
    `RUN ${nsOf} > /ns2 && cat /proc/net/dev > /dev2`,
    `RUN --security=insecure ${nsOf} > /ns3 && ip link set lo mtu 1280`,
    `RUN ${nsOf} > /ns4 && cat /sys/class/net/lo/mtu > /mtu4`,
    '',
  ].join('\n');
  const b = await sb.build({ context: ctx, dockerfileText, allow: ['security.insecure'] });
  const [ns1, ns2, ns3, ns4] = await Promise.all(['ns1', 'ns2', 'ns3', 'ns4'].map((f) => b.read(f)));
  assert.match(ns1 ?? '', /^net:\[\d+\]\n$/);
  assert.equal(ns2, ns1, 'the second step got the first step namespace back');
  assert.deepEqual(interfaces(await b.read('dev2')), interfaces(await b.read('dev1')));
  // The privileged step changed its loopback's MTU; no later step may see that namespace.
  assert.notEqual(ns4, ns3);
  assert.notEqual((await b.read('mtu4')).trim(), '1280');
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  assert.doesNotMatch(mounts, /netns-\d+ /, 'every pooled namespace is unmounted once the build is done');
});

test('a RUN that fails gives its network back, and the pool is torn down when the build fails', async () => {
  const dockerfileText = 'FROM busybox:latest\nRUN readlink /proc/self/ns/net > /ns1\nRUN exit 3\n';
  await assert.rejects(sb.build({ context: ctx, dockerfileText }), /exit code: 3/);
  assert.doesNotMatch(await readFile('/proc/self/mountinfo', 'utf8'), /netns-\d+ /);
});
