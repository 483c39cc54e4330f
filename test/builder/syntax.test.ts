import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from '../../src/builder/build.js';
import { DockerfileError } from '../../src/errors.js';

test('# syntax= naming the docker/dockerfile frontend is accepted; any other frontend fails at its line', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-syntax-'));
  try {
    const common = { context: dir, root: path.join(dir, 'store'), sourceDateEpoch: 0 };
    for (const ref of ['docker/dockerfile:1', 'docker/dockerfile:1.7-labs', 'docker.io/docker/dockerfile-upstream:master']) {
      const r = await build({ ...common, dockerfileText: `# syntax=${ref}\nFROM scratch\nLABEL a=b\n` });
      assert.match(r.manifestDigest, /^sha256:[0-9a-f]{64}$/);
    }
    await assert.rejects(
      build({ ...common, dockerfileText: '# syntax=example.com/other-frontend:2\nFROM scratch\n' }),
      (err: unknown) => {
        assert.ok(err instanceof DockerfileError);
        assert.equal(err.range.start.line, 1);
        assert.match(err.message, /unsupported frontend "example\.com\/other-frontend:2"/);
        return true;
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('COPY --from an image that is nowhere to be found fails at the COPY line', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-syntax-'));
  try {
    await assert.rejects(
      build({ context: dir, root: path.join(dir, 'store'), dockerfileText: 'FROM scratch\nENV a=b\nCOPY --from=no-such-image f /f\n' }),
      (err: unknown) => {
        assert.ok(err instanceof DockerfileError);
        assert.equal(err.range.start.line, 3);
        assert.match(err.message, /no-such-image/);
        return true;
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('FROM --platform for the host builds, for another platform fails at its line instead of being ignored', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-syntax-'));
  try {
    const common = { context: dir, root: path.join(dir, 'store'), sourceDateEpoch: 0 };
    const r = await build({ ...common, dockerfileText: 'FROM --platform=$BUILDPLATFORM scratch AS a\nLABEL a=b\nFROM --platform=$TARGETPLATFORM scratch\nLABEL b=c\n' });
    assert.match(r.manifestDigest, /^sha256:/);
    const other = process.arch === 'arm64' ? 'linux/amd64' : 'linux/arm64';
    await assert.rejects(build({ ...common, dockerfileText: `FROM scratch\nLABEL x=y\nFROM --platform=${other} scratch\n` }), (err: unknown) => {
      assert.ok(err instanceof DockerfileError);
      assert.equal(err.range.start.line, 3);
      assert.match(err.message, /host platform/);
      return true;
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
