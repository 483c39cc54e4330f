import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const root = path.resolve(import.meta.dirname, '..', '..');
const cli = path.join(root, 'src', 'cli', 'main.ts');

/** `kiln build -q` in its own process (the runtime and the addon are chosen per process), resolving to stdout. */
function build(context: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'build', '-q', '-t', 'same:1', context], {
      cwd: root,
      env: { ...process.env, SOURCE_DATE_EPOCH: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`kiln build exited ${String(code)}: ${err}`))));
  });
}

test('one Dockerfile gives one image digest whichever runtime and syscall path built it', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-same-digest-'));
  try {
    const context = path.join(dir, 'ctx');
    await mkdir(path.join(context, 'sub'), { recursive: true });
    await writeFile(path.join(context, 'sub', 'a.txt'), 'a\n');
    await writeFile(path.join(context, 'sub', 'é.txt'), 'b\n');
    // A RUN that writes, deletes (a whiteout), makes a symlink and an opaque directory.
    await writeFile(
      path.join(context, 'Dockerfile'),
      'FROM busybox\nCOPY sub/ /data/\nRUN mkdir -p /x && echo hi > /x/f && rm /data/a.txt && ln -s /x/f /x/l && rm -r /usr && mkdir /usr && echo new > /usr/only\n',
    );
    // Separate stores: nothing is shared between the builds but the base image's recipe.
    const variants: Array<[string, Record<string, string>]> = [
      ['crun + addon', { KILN_RUNTIME: 'crun' }],
      ['runc + addon', { KILN_RUNTIME: 'runc' }],
      ['crun, no addon', { KILN_RUNTIME: 'crun', KILN_NATIVE: '0' }],
    ];
    const digests = new Map<string, string>();
    for (const [name, env] of variants) {
      digests.set(name, await build(context, { ...env, KILN_ROOT: path.join(dir, name.replace(/\W+/g, '-')) }));
    }
    const all = [...digests.values()];
    assert.match(all[0] ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(new Set(all).size, 1, JSON.stringify(Object.fromEntries(digests)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
