// The Host: what kiln learns about the machine lives in an object the build is given (or makes), not in module
// variables, so builds in one process share it exactly when their caller says so.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createHost } from '../../src/runtime/host.js';
import { sandbox, type Sandbox } from '../builder/helpers.js';

let sb: Sandbox;
before(async () => {
  sb = await sandbox();
});
after(() => sb.cleanup());

test('a build records its runtime probe and overlay capabilities in the host it is given, and a second build reuses them', async () => {
  const host = createHost();
  const context = await sb.context({ Dockerfile: 'FROM busybox\nRUN echo one > /one\n' });
  await sb.build({ context, host, noCache: true });
  assert.equal(host.runtimeProbes.size, 1, 'the RUN step asked the host which runtime works');
  const probe = [...host.runtimeProbes.values()][0];
  const capabilities = host.overlay;
  await sb.build({ context, host, noCache: true });
  assert.equal(host.runtimeProbes.size, 1);
  assert.equal([...host.runtimeProbes.values()][0], probe, 'the second build used the first one’s verdict');
  assert.equal(host.overlay, capabilities);
});

test('builds given different hosts share nothing', async () => {
  const a = createHost();
  const b = createHost();
  const context = await sb.context({ Dockerfile: 'FROM busybox\nRUN echo two > /two\n' });
  await sb.build({ context, host: a, noCache: true });
  assert.equal(a.runtimeProbes.size, 1);
  assert.equal(b.runtimeProbes.size, 0);
});
