import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BuildContext } from '../../src/builder/context.js';
import { CopyReuse, type LinkRequest } from '../../src/store/file-reuse.js';
import type { LayerStoreApi } from '../../src/store/types.js';

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Every entry below `dir` as readdirSync + lstatSync see it, in the walk's order (JS string order, parents first). */
function referenceWalk(dir: string, rel: string, out: Array<{ rel: string; abs: string }> = []): Array<{ rel: string; abs: string }> {
  for (const name of readdirSync(path.join(dir, rel)).sort()) {
    const childRel = rel ? `${rel}/${name}` : name;
    const abs = path.join(dir, childRel);
    out.push({ rel: childRel, abs });
    if (lstatSync(abs).isDirectory()) referenceWalk(dir, childRel, out);
  }
  return out;
}

function statView(e: { stats: import('node:fs').Stats }): Record<string, unknown> {
  const s = e.stats;
  return {
    mode: s.mode, uid: s.uid, gid: s.gid, size: s.size, ino: s.ino, dev: s.dev, nlink: s.nlink,
    // A directory's atime moves when the reference walk reads it.
    mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, atime: s.isDirectory() ? 0 : s.atime.getTime(), mtime: s.mtime.getTime(),
    file: s.isFile(), dir: s.isDirectory(), link: s.isSymbolicLink(),
  };
}

test('the walk lists the same entries, in the same order, with the same stat numbers as readdirSync and lstatSync', async () => {
  const dir = tempDir('kiln-context-scan-');
  try {
    const ctx = path.join(dir, 'ctx');
    // Names whose byte order differs from JavaScript's string order (U+FF21 sorts after U+1F600 in UTF-16 order).
    for (const sub of ['src/b', 'src/a/deep', 'src/\u{1F600}', 'src/\uFF21', 'skip/inner']) mkdirSync(path.join(ctx, sub), { recursive: true });
    for (const [i, f] of ['src/x.txt', 'src/a/deep/y', 'src/\u{1F600}/z', 'src/\uFF21/w', 'src/b/__proto__', 'skip/inner/n'].entries()) {
      writeFileSync(path.join(ctx, f), 'v'.repeat(i * 100));
    }
    symlinkSync('x.txt', path.join(ctx, 'src', 'link'));
    writeFileSync(path.join(ctx, '.dockerignore'), 'skip\n');
    const c = await BuildContext.open(ctx, undefined, undefined);
    const [top] = await c.resolveSource('.');
    assert.ok(top);
    const walked = await c.walk(top);
    const expected = referenceWalk(ctx, '').filter((e) => e.rel !== 'skip' && !e.rel.startsWith('skip/'));
    assert.deepEqual(walked.map((e) => e.rel), expected.map((e) => e.rel));
    for (let i = 0; i < walked.length; i++) {
      const e = walked[i]!;
      assert.equal(e.abs, expected[i]!.abs);
      assert.deepEqual(statView(e), statView({ stats: lstatSync(e.abs) }), e.rel);
    }
    assert.deepEqual(
      walked.filter((e) => e.type === 'symlink').map((e) => e.rel),
      ['src/link'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Sandbox with a `src/` tree, a cache dir, and helpers to digest it as a fresh build process would. */
function cacheSandbox(): { dir: string; ctx: string; cache: string; digest: () => Promise<string>; uncached: () => Promise<string>; perFile: () => string } {
  const dir = tempDir('kiln-context-journal-');
  const ctx = path.join(dir, 'ctx');
  const cache = path.join(dir, 'cache');
  mkdirSync(path.join(ctx, 'src', 'sub'), { recursive: true });
  writeFileSync(path.join(ctx, 'src', 'a.txt'), 'alpha\n');
  writeFileSync(path.join(ctx, 'src', 'sub', 'b.txt'), 'beta\n');
  writeFileSync(path.join(ctx, 'src', '__proto__'), 'proto\n');
  const digest = async (): Promise<string> => {
    const c = await BuildContext.open(ctx, undefined, cache);
    const d = await c.digestSources(await c.resolveSource('src'));
    await c.save();
    return d;
  };
  const uncached = async (): Promise<string> => {
    const c = await BuildContext.open(ctx, undefined, undefined);
    return c.digestSources(await c.resolveSource('src'));
  };
  const perFile = (): string => {
    const name = readdirSync(cache).find((f) => f.endsWith('.stats-v2'));
    assert.ok(name, 'the per-file cache exists');
    return path.join(cache, name);
  };
  return { dir, ctx, cache, digest, uncached, perFile };
}

test('a save after one changed file appends one journal line, and a later build reads it', async () => {
  const sb = cacheSandbox();
  try {
    assert.equal(await sb.digest(), await sb.uncached());
    const linesBefore = readFileSync(sb.perFile(), 'utf8').split('\n').filter(Boolean);
    writeFileSync(path.join(sb.ctx, 'src', 'sub', 'b.txt'), 'BETA\n');
    const changed = await sb.digest();
    assert.equal(changed, await sb.uncached());
    const linesAfter = readFileSync(sb.perFile(), 'utf8').split('\n').filter(Boolean);
    assert.deepEqual(linesAfter.slice(0, linesBefore.length), linesBefore, 'the earlier lines are kept as they were');
    assert.equal(linesAfter.length, linesBefore.length + 1);
    assert.deepEqual(Object.keys(JSON.parse(linesAfter.at(-1)!) as object), ['src/sub/b.txt']);
    // Later lines win: a journal line with a wrong digest for the current stat is what the next build uses.
    const record = (JSON.parse(linesAfter.at(-1)!) as Record<string, unknown[]>)['src/sub/b.txt']!;
    record[5] = createHash('sha256').update('not the content').digest('hex');
    appendFileSync(sb.perFile(), `${JSON.stringify({ 'src/sub/b.txt': record })}\n`);
    writeFileSync(path.join(sb.ctx, 'src', 'a.txt'), 'ALPHA\n'); // the tree cache misses, the per-file cache is read
    assert.notEqual(await sb.digest(), await sb.uncached());
  } finally {
    rmSync(sb.dir, { recursive: true, force: true });
  }
});

test('a torn journal line is skipped, and a per-file cache of another format is never read', async () => {
  const sb = cacheSandbox();
  try {
    await sb.digest();
    appendFileSync(sb.perFile(), '{"src/a.txt":[6,1,2,3,"","00'); // a crash mid-append
    writeFileSync(path.join(sb.ctx, 'src', 'a.txt'), 'other\n');
    assert.equal(await sb.digest(), await sb.uncached());
    writeFileSync(path.join(sb.ctx, 'src', 'a.txt'), 'third\n');
    assert.equal(await sb.digest(), await sb.uncached());

    // A v1 file (one JSON object of {s,m,c,i,x,h}) with wrong digests for the current stats, and no v2 file.
    const v1 = sb.perFile().replace(/\.stats-v2$/, '.json');
    const records: Record<string, object> = {};
    for (const rel of ['src/a.txt', 'src/sub/b.txt', 'src/__proto__']) {
      const st = lstatSync(path.join(sb.ctx, rel));
      records[rel] = { s: st.size, m: st.mtimeMs, c: st.ctimeMs, i: st.ino, x: '', h: '0'.repeat(64) };
    }
    rmSync(sb.perFile());
    rmSync(path.join(sb.cache, path.basename(v1).replace(/\.json$/, '.trees.json')));
    writeFileSync(v1, JSON.stringify(records));
    assert.equal(await sb.digest(), await sb.uncached());
    assert.equal(readdirSync(sb.cache).includes(path.basename(v1)), false, 'the v1 file is removed by the rewrite');
  } finally {
    rmSync(sb.dir, { recursive: true, force: true });
  }
});

test('a file named __proto__ is cached like any other: a change of its content changes the digest', async () => {
  const sb = cacheSandbox();
  try {
    const first = await sb.digest();
    writeFileSync(path.join(sb.ctx, 'src', '__proto__'), 'PROTO\n');
    const second = await sb.digest();
    assert.notEqual(second, first);
    assert.equal(second, await sb.uncached());
    writeFileSync(path.join(sb.ctx, 'src', 'sub', 'b.txt'), 'b2\n'); // per-file cache read back with __proto__ in it
    assert.equal(await sb.digest(), await sb.uncached());
  } finally {
    rmSync(sb.dir, { recursive: true, force: true });
  }
});

test('linking in a batch follows the per-file rules: metadata, one link per inode, renamed files, vanished files', async () => {
  const dir = tempDir('kiln-link-batch-');
  try {
    const root = path.join(dir, 'store');
    const hex = 'a'.repeat(64);
    const layerRoot = path.join(root, 'layers', hex, 'rootfs');
    mkdirSync(layerRoot, { recursive: true });
    const files: Record<string, string> = {};
    const put = (rel: string, content: string): string => {
      writeFileSync(path.join(layerRoot, rel), content);
      const digest = createHash('sha256').update(content).digest('hex');
      files[rel] = digest;
      return digest;
    };
    const same = put('same', 'same content');
    const dup = put('dup', 'duplicated');
    const gone = put('gone', 'will vanish');
    mkdirSync(path.join(root, 'copy-reuse'), { recursive: true });
    writeFileSync(path.join(root, 'layers', hex, 'copy-files.json'), JSON.stringify({ v: 1, files }));
    const identity = 'ctx\0COPY . /';
    const id = createHash('sha256').update(identity).digest('hex');
    writeFileSync(path.join(root, 'copy-reuse', `${id}.json`), JSON.stringify({ v: 1, diffId: `sha256:${hex}` }));
    rmSync(path.join(layerRoot, 'gone'));

    const out = path.join(dir, 'out');
    mkdirSync(out);
    const want = (rel: string, extra: Partial<LinkRequest['want']> = {}): LinkRequest['want'] => {
      const st = lstatSync(path.join(layerRoot, rel));
      return { size: st.size, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtimeMs: st.mtime.getTime(), ...extra };
    };
    const reuse = await CopyReuse.open({ root } as LayerStoreApi, identity);
    const requests: LinkRequest[] = [
      { rel: 'same', target: path.join(out, 'same'), sha256: same, want: want('same') },
      { rel: 'chmodded', target: path.join(out, 'chmodded'), sha256: same, want: want('same', { mode: 0o600 }) },
      { rel: 'copy1', target: path.join(out, 'copy1'), sha256: dup, want: want('dup') },
      { rel: 'copy2', target: path.join(out, 'copy2'), sha256: dup, want: want('dup') },
      { rel: 'gone', target: path.join(out, 'gone'), sha256: gone, want: { size: 11, mode: 0o644, uid: 0, gid: 0, mtimeMs: 0 } },
      { rel: 'new', target: path.join(out, 'new'), sha256: '0'.repeat(64), want: want('same') },
    ];
    const outcomes = await reuse.linkBatch(requests);
    assert.deepEqual(outcomes, ['linked', 'metadata-differs', 'linked', 'metadata-differs', 'failed', 'no-candidate']);
    assert.equal(lstatSync(path.join(out, 'same')).ino, lstatSync(path.join(layerRoot, 'same')).ino);
    assert.equal(lstatSync(path.join(out, 'copy1')).ino, lstatSync(path.join(layerRoot, 'dup')).ino);
    assert.deepEqual(readdirSync(out).sort(), ['copy1', 'same']);
    assert.equal(reuse.linked, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

