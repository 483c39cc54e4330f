import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BuildContext } from '../../src/builder/context.js';

interface Sandbox {
  readonly dir: string;
  readonly ctx: string;
  readonly cache: string;
}

function sandbox(): Sandbox {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-context-cache-'));
  const ctx = path.join(dir, 'ctx');
  mkdirSync(path.join(ctx, 'src', 'sub'), { recursive: true });
  writeFileSync(path.join(ctx, 'src', 'a.txt'), 'alpha\n');
  writeFileSync(path.join(ctx, 'src', 'sub', 'b.txt'), 'beta\n');
  symlinkSync('a.txt', path.join(ctx, 'src', 'link'));
  return { dir, ctx, cache: path.join(dir, 'cache') };
}

/** The digest of `src/` as a new build process sees it: a fresh BuildContext over the same cache, saved after. */
async function digestOf(sb: Sandbox): Promise<string> {
  const c = await BuildContext.open(sb.ctx, undefined, sb.cache);
  const digest = await c.digestSources(await c.resolveSource('src'));
  await c.save();
  return digest;
}

/** The digest computed with no cache at all. */
async function uncachedDigestOf(sb: Sandbox): Promise<string> {
  const c = await BuildContext.open(sb.ctx, undefined, undefined);
  return c.digestSources(await c.resolveSource('src'));
}

test('a rebuild over unchanged files gets the same source digest without consulting the per-file cache', async () => {
  const sb = sandbox();
  try {
    const first = await digestOf(sb);
    assert.equal(first, await uncachedDigestOf(sb));
    // Poison the per-file records (same stats, wrong content digests): a rebuild that read them would differ.
    const perFile = readdirSync(sb.cache).find((f) => f.startsWith('context-') && !f.endsWith('.trees.json'));
    assert.ok(perFile);
    // The journal: a header line, then JSON lines of `rel → [size, mtimeMs, ctimeMs, ino, xxhash, sha256]`.
    const [header, ...lines] = readFileSync(path.join(sb.cache, perFile), 'utf8').split('\n').filter(Boolean);
    const records = Object.assign({}, ...lines.map((l) => JSON.parse(l) as Record<string, unknown[]>)) as Record<string, unknown[]>;
    assert.ok(Object.keys(records).length >= 2);
    for (const r of Object.values(records)) r[5] = '0'.repeat(64);
    writeFileSync(path.join(sb.cache, perFile), `${header}\n${JSON.stringify(records)}\n`);
    assert.equal(await digestOf(sb), first);
  } finally {
    rmSync(sb.dir, { recursive: true, force: true });
  }
});

test('with the caches in place, a changed file, mode, symlink target or new file still changes the source digest', async () => {
  const sb = sandbox();
  try {
    const seen = new Set<string>([await digestOf(sb)]);
    const changes: Array<[string, () => void]> = [
      ['content of the same size', () => writeFileSync(path.join(sb.ctx, 'src', 'sub', 'b.txt'), 'BETA\n')],
      ['permission bits', () => chmodSync(path.join(sb.ctx, 'src', 'a.txt'), 0o600)],
      ['symlink target', () => {
        unlinkSync(path.join(sb.ctx, 'src', 'link'));
        symlinkSync('sub/b.txt', path.join(sb.ctx, 'src', 'link'));
      }],
      ['a new file', () => writeFileSync(path.join(sb.ctx, 'src', 'c.txt'), '')],
    ];
    for (const [what, change] of changes) {
      change();
      const digest = await digestOf(sb);
      assert.ok(!seen.has(digest), `${what}: the digest changed`);
      assert.equal(digest, await uncachedDigestOf(sb), `${what}: the cached digest equals an uncached one`);
      seen.add(digest);
    }
  } finally {
    rmSync(sb.dir, { recursive: true, force: true });
  }
});
