import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'src', 'cli.ts');

function kiln(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root, encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('kiln parse --format dump prints BuildKit\'s AST dump on stdout', () => {
  const r = kiln(['parse', '--format', 'dump', '-'], 'FROM busybox AS base\nRUN --mount=type=cache,target=/c echo "hi"\nENV A=1 B="x y"\nONBUILD RUN make\n');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stdout,
    '(from "busybox" "AS" "base")\n(run ["--mount=type=cache,target=/c"] "echo \\"hi\\"")\n(env "A" "1" "=" "B" "\\"x y\\"" "=")\n(onbuild (run "make"))\n',
  );
});

test('kiln parse --format json prints typed instructions with their source lines', () => {
  const r = kiln(['parse', '-'], 'FROM scratch\nCOPY --chmod=755 a /b/\n');
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { instructions: Array<{ kind: string; startLine: number; chmod?: string; dest?: string }> };
  assert.deepEqual(
    doc.instructions.map((i) => [i.kind, i.startLine]),
    [['from', 1], ['copy', 2]],
  );
  assert.equal(doc.instructions[1]?.chmod, '755');
  assert.equal(doc.instructions[1]?.dest, '/b/');
});

test('a Dockerfile error exits 1 and names the file, line and column with a caret', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-cli-'));
  try {
    const file = path.join(dir, 'Dockerfile');
    writeFileSync(file, 'FROM scratch\nCPOY a b\n');
    const r = kiln(['parse', file]);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2:1: error: unknown instruction: CPOY \\(did you mean COPY\\?\\)`));
    assert.match(r.stderr, /\n {4}2 \| CPOY a b\n {6}\| \^/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('usage errors exit 2 and print the usage', () => {
  const r = kiln(['build', '--no-such-flag', '.']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /usage: kiln/);
  const r2 = kiln(['frobnicate']);
  assert.equal(r2.status, 2);
  assert.match(r2.stderr, /unknown command: frobnicate/);
});

test('a missing Dockerfile fails the build with exit 1 and says which file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-cli-'));
  try {
    const r = kiln(['build', '--progress', 'plain', dir]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /failed to read dockerfile: .*Dockerfile: no such file or directory/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('build - reads the Dockerfile from stdin and has no build context, as docker build - does', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-cli-'));
  try {
    writeFileSync(path.join(dir, 'present.txt'), 'in the working directory, not in the context\n');
    // Run from the temp dir: tsx is named by its resolved URL, since `--import tsx` resolves from the cwd.
    const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'build', '--progress', 'plain', '-'], {
      cwd: dir,
      encoding: 'utf8',
      input: 'FROM scratch\nCOPY present.txt /\n',
      env: { ...process.env, KILN_ROOT: path.join(dir, 'store') },
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^Dockerfile:2:1: error: .*"\/present\.txt": not found/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('RUN --network=host fails at its line without --allow network.host; --allow grants it; a bad --allow or --network is a usage error', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-cli-'));
  try {
    const env = { ...process.env, KILN_ROOT: path.join(dir, 'store') };
    const run = (args: string[]) =>
      spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), cli, 'build', '--progress', 'plain', ...args, '-'], {
        cwd: dir,
        encoding: 'utf8',
        input: 'FROM busybox:latest\nRUN --network=host true\n',
        env,
      });
    const refused = run(['--network', 'none']);
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /^Dockerfile:2:1: error: RUN --network=host needs the network\.host entitlement: pass --allow network\.host/m);
    const granted = run(['--allow', 'network.host']);
    assert.equal(granted.status, 0, granted.stderr);
    assert.match(granted.stdout, /^sha256:[0-9a-f]{64}\n$/);
    assert.equal(run(['--allow', 'device']).status, 2);
    assert.equal(run(['--network', 'bridge']).status, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
