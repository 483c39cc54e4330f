// The context digest of many small files, read in batches through the addon (BuildContext.digestSmallFilesBatched),
// against the same digest computed one file at a time without the addon (KILN_NATIVE=0, in a child process).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BuildContext } from '../../src/builder/context.js';
import { nativeSys } from '../../src/native/sys.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const needsAddon = { skip: nativeSys() === undefined ? 'the native addon is not built (or KILN_NATIVE=0)' : false };

let work: string;
let ctx: string;
before(() => {
  work = mkdtempSync(path.join(tmpdir(), 'kiln-digest-batches-'));
  ctx = path.join(work, 'ctx');
  // ~2.5 MiB of small files (several 1 MiB batches), empty ones, one at the 64 KiB limit of a batched file, one
  // above it (read alone), a symlink, and a directory reached through a symlink in the context.
  for (let i = 0; i < 600; i++) {
    const dir = path.join(ctx, 'src', `d${i % 9}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `f${i}`), i % 50 === 0 ? '' : `${i}:`.repeat(1 + ((i * 389) % 2400)));
  }
  writeFileSync(path.join(ctx, 'src', 'edge'), Buffer.alloc(64 * 1024 - 1, 'e'));
  writeFileSync(path.join(ctx, 'src', 'big'), Buffer.alloc(64 * 1024 + 5, 'b'));
  symlinkSync('d1/f1', path.join(ctx, 'src', 'link'));
  mkdirSync(path.join(ctx, 'real', 'inner'), { recursive: true });
  for (let i = 0; i < 40; i++) writeFileSync(path.join(ctx, 'real', 'inner', `g${i}`), `g${i}\n`.repeat(i + 1));
  symlinkSync('real', path.join(ctx, 'via-link'));
});
after(() => rmSync(work, { recursive: true, force: true }));

/** The digest of `source` in a fresh BuildContext without a cache, in this process. */
async function digest(source: string): Promise<string> {
  const c = await BuildContext.open(ctx, undefined, undefined);
  return c.digestSources(await c.resolveSource(source));
}

/** The same digest computed in a child process without the addon. */
function digestWithoutAddon(source: string): string {
  const code = `import { BuildContext } from ${JSON.stringify(path.join(repoRoot, 'src/builder/context.ts'))};
    const c = await BuildContext.open(${JSON.stringify(ctx)}, undefined, undefined);
    process.stdout.write(await c.digestSources(await c.resolveSource(${JSON.stringify(source)})));`;
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: { ...process.env, KILN_NATIVE: '0' },
  });
}

test('batched digests of many small files equal the file-by-file digests without the addon', needsAddon, async () => {
  assert.equal(await digest('src'), digestWithoutAddon('src'));
  assert.equal(await digest('via-link/inner'), digestWithoutAddon('via-link/inner'));
});

test('a file that grew after the walk fails the digest instead of being hashed short', needsAddon, async () => {
  const c = await BuildContext.open(ctx, undefined, undefined);
  const entries = await c.resolveSource('src');
  await c.walk(entries[0]!); // the walk (and the sizes it saw) is kept for the digest
  const file = path.join(ctx, 'src', 'd3', 'f3');
  writeFileSync(file, 'grown '.repeat(400));
  try {
    await assert.rejects(c.digestSources(entries), /src\/d3\/f3 changed while it was being read/);
  } finally {
    writeFileSync(file, '3:'.repeat(1 + ((3 * 389) % 2400)));
  }
});

test('a file removed after the walk fails the digest with ENOENT naming it', needsAddon, async () => {
  const c = await BuildContext.open(ctx, undefined, undefined);
  const entries = await c.resolveSource('src');
  await c.walk(entries[0]!);
  const file = path.join(ctx, 'src', 'd4', 'f4');
  unlinkSync(file);
  try {
    await assert.rejects(c.digestSources(entries), (err: Error & { code?: string }) => err.code === 'ENOENT' && err.message.includes(file));
  } finally {
    writeFileSync(file, '4:'.repeat(1 + ((4 * 389) % 2400)));
  }
});
