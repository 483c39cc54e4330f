import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(repo, 'src', 'cli', 'main.ts');

function kiln(args: string[], env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: repo, encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('images, inspect, run, rmi and prune work on what kiln build stored', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-store-cli-'));
  const env = { KILN_ROOT: path.join(dir, 'store') };
  try {
    writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nRUN echo built > /built.txt\nENV WHO=kiln\nCMD ["sh", "-c", "cat /built.txt; echo by $WHO"]\n');
    const b = kiln(['build', '-q', '-t', 'cli-test:1', dir], env);
    assert.equal(b.status, 0, b.stderr);
    const digest = b.stdout.trim();
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);

    const images = kiln(['images'], env);
    assert.equal(images.status, 0, images.stderr);
    assert.match(images.stdout, new RegExp(`cli-test:1\\s+${digest.slice(7, 19)}`));
    assert.match(images.stdout, /busybox:latest/);

    const inspect = kiln(['inspect', 'cli-test:1'], env);
    assert.equal(inspect.status, 0, inspect.stderr);
    const doc = JSON.parse(inspect.stdout) as { manifestDigest: string; config: { config: { Env: string[]; Cmd: string[] } } };
    assert.equal(doc.manifestDigest, digest);
    assert.ok(doc.config.config.Env.includes('WHO=kiln'));

    const run = kiln(['run', 'cli-test:1'], env);
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, 'built\nby kiln\n');
    const other = kiln(['run', 'cli-test:1', 'sh', '-c', 'exit 7'], env);
    assert.equal(other.status, 7, 'the container exit code becomes the CLI exit code');

    const rmi = kiln(['rmi', 'cli-test:1'], env);
    assert.equal(rmi.status, 0, rmi.stderr);
    assert.doesNotMatch(kiln(['images'], env).stdout, /cli-test/);
    assert.equal(kiln(['rmi', 'cli-test:1'], env).status, 1, 'removing a tag twice fails');
    assert.equal(kiln(['inspect', 'cli-test:1'], env).status, 1);

    const parseCache = path.join(env.KILN_ROOT, 'cache', 'parse');
    assert.ok(readdirSync(parseCache).length > 0, 'the build stored its parsed Dockerfile');
    const prune = kiln(['prune'], env);
    assert.equal(prune.status, 0, prune.stderr);
    assert.match(prune.stdout, /^removed [1-9]\d* blobs/);
    assert.ok(!existsSync(parseCache), 'prune removes the parse cache');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
