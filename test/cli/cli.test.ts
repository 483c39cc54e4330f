import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'src', 'cli', 'main.ts');

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

test('build -o DIR, -o - and --metadata-file: stdout names the manifest the archive holds, or carries the image itself', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-cli-out-'));
  try {
    const env = { ...process.env, KILN_ROOT: path.join(dir, 'store') };
    const ctx = path.join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox:latest\nRUN echo out > /made\n');
    const run = (args: string[]): ReturnType<typeof spawnSync> =>
      spawnSync(process.execPath, ['--import', 'tsx', cli, 'build', '--progress', 'plain', ...args], { cwd: root, env, maxBuffer: 64 * 1024 * 1024 });
    const oci = path.join(dir, 'image.tar');
    const meta = path.join(dir, 'meta.json');
    const r = run(['-o', path.join(dir, 'fs'), '-o', `type=oci,dest=${oci},name=cli/app:2`, '--metadata-file', meta, ctx]);
    assert.equal(r.status, 0, String(r.stderr));
    assert.equal(readFileSync(path.join(dir, 'fs', 'made'), 'utf8'), 'out\n');
    const index = JSON.parse(String(spawnSync('tar', ['-xOf', oci, 'index.json']).stdout)) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
    const digest = index.manifests[0]!.digest;
    assert.equal(String(r.stdout).trim(), digest);
    assert.equal(index.manifests[0]!.annotations['io.containerd.image.name'], 'docker.io/cli/app:2');
    const doc = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, unknown>;
    assert.equal(doc['containerimage.digest'], digest);
    assert.equal(doc['image.name'], 'docker.io/cli/app:2');
    assert.match(String(doc['containerimage.config.digest']), /^sha256:[0-9a-f]{64}$/);
    // The progress names the archive's manifest too.
    assert.match(String(r.stderr), new RegExp(`exported oci .*image\\.tar: manifest ${digest}`));

    // -o -: the filesystem as a tar on stdout, and no digest mixed into it.
    const t = run(['-o', '-', ctx]);
    assert.equal(t.status, 0, String(t.stderr));
    const listed = spawnSync('tar', ['-t'], { input: t.stdout as Buffer });
    assert.ok(String(listed.stdout).split('\n').includes('made'));

    const bad = run(['-o', `type=oci,dest=${oci},nmae=x`, ctx]);
    assert.equal(bad.status, 2);
    assert.match(String(bad.stderr), /unknown attribute "nmae"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
