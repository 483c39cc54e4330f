// COPY's native small-file copy (the addon's copyFiles, on two threadpool threads) against the file-by-file copy
// without the addon (KILN_NATIVE=0, in a child process): the same tree, byte for byte and stat for stat. Also the
// addon call's own answers (fallback cases, errors) and spreadSubdirs' flag.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { COPY_FALLBACK, COPY_META, nativeSys, type NativeSys } from '../../src/native/sys.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const sys = nativeSys();
const needsAddon = { skip: sys === undefined ? 'the native addon is not built (or KILN_NATIVE=0)' : false };

let work: string;
let src: string;
before(() => {
  work = mkdtempSync(path.join(tmpdir(), 'kiln-copy-native-'));
  src = path.join(work, 'src');
  // Enough files for the native path, of every size class: empty, small, the 64 KiB edge, one above it (copied
  // the ordinary way); modes with set-id and sticky bits; other owners; a symlink; nested directories.
  for (let i = 0; i < 150; i++) {
    const dir = path.join(src, `d${i % 7}`, i % 2 === 0 ? 'inner' : '');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `f${i}`);
    writeFileSync(file, i % 30 === 0 ? '' : `${i};`.repeat(1 + ((i * 397) % 3000)));
    chmodSync(file, [0o644, 0o600, 0o755, 0o4755, 0o2711, 0o1777][i % 6]!);
    if (i % 11 === 0) chownSync(file, 1000 + i, 2000 + i);
    utimesSync(file, new Date(1_600_000_000_123 + i * 1001), new Date(1_500_000_000_456 + i * 7777));
  }
  writeFileSync(path.join(src, 'edge'), Buffer.alloc(64 * 1024, 'e'));
  writeFileSync(path.join(src, 'big'), Buffer.alloc(64 * 1024 + 1, 'b'));
  symlinkSync('d1/f1', path.join(src, 'link'));
});
after(() => rmSync(work, { recursive: true, force: true }));

/** Copies `src` to `rootfs` at /dst/ with copyIntoRootfs, in a child process (with or without the addon). */
function copyInChild(rootfs: string, extra: string, env: Record<string, string>): void {
  const code = `import { copyIntoRootfs } from ${JSON.stringify(path.join(repoRoot, 'src/runtime/handlers/copy.ts'))};
    import { lstatSync, readdirSync } from 'node:fs';
    import path from 'node:path';
    const entry = (abs, rel) => {
      const stats = lstatSync(abs);
      return { abs, rel, stats, type: stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'symlink' : 'file' };
    };
    const list = async (dir) => {
      const out = [];
      const walk = (abs, rel) => {
        for (const name of readdirSync(abs).sort()) {
          const e = entry(path.join(abs, name), rel + '/' + name);
          out.push(e);
          if (e.type === 'dir') walk(e.abs, e.rel);
        }
      };
      walk(dir.abs, dir.rel);
      return out;
    };
    await copyIntoRootfs(${JSON.stringify(rootfs)}, { sources: [entry(${JSON.stringify(src)}, 'src')], list, dest: '/dst/', keepOwner: false ${extra} });`;
  execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: repoRoot, env: { ...process.env, ...env } });
}

/** Every entry below `root`: its type, mode, owner, size, mtime (ms), and content or link target. */
function describeTree(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const st = lstatSync(p);
      const what = st.isSymbolicLink() ? `-> ${readlinkSync(p)}` : st.isFile() ? readFileSync(p).toString('base64') : 'dir';
      out.push(`${path.relative(root, p)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.isDirectory() ? '' : Math.round(st.mtimeMs)} ${what}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

for (const [name, extra] of [
  ['as docker copies them (root, modes kept)', ''],
  ['with --chown and --chmod', ', owner: { uid: 1234, gid: 5678 }, mode: 0o640'],
] as const) {
  test(`the native batch copy gives the same tree as the copy without the addon, ${name}`, needsAddon, () => {
    const withAddon = path.join(work, `with-${name.length}`);
    const without = path.join(work, `without-${name.length}`);
    mkdirSync(withAddon);
    mkdirSync(without);
    copyInChild(withAddon, extra, {});
    copyInChild(without, extra, { KILN_NATIVE: '0' });
    const a = describeTree(withAddon);
    assert.ok(a.length > 150, `copied ${a.length} entries`);
    assert.deepEqual(a, describeTree(without));
  });
}

test('a target that already exists is replaced by the copy, not written through', needsAddon, () => {
  const rootfs = path.join(work, 'existing');
  mkdirSync(path.join(rootfs, 'dst', 'd1'), { recursive: true });
  writeFileSync(path.join(rootfs, 'dst', 'd1', 'f1'), 'old content that is longer than the new one\n');
  copyInChild(rootfs, '', {});
  assert.equal(readFileSync(path.join(rootfs, 'dst', 'd1', 'f1'), 'utf8'), readFileSync(path.join(src, 'd1', 'f1'), 'utf8'));
});

/** One copyFiles call. */
function copyFiles(native: NativeSys, files: Array<{ from: string; to: string; size: number; mode?: number; mtimeMs?: number }>): Promise<Int32Array> {
  const meta = new Float64Array(COPY_META * files.length);
  files.forEach((f, i) => meta.set([f.size, f.mode ?? 0o644, 0, 0, 1_000_000_000_000, f.mtimeMs ?? 1_234_567_890_123], COPY_META * i));
  const got = new Int32Array(files.length);
  return new Promise((resolve) => native.copyFiles(files.map((f) => f.from), files.map((f) => f.to), meta, got, () => resolve(got)));
}

test('copyFiles leaves to the caller what is not as listed, and reports errors as -errno', needsAddon, async () => {
  const dir = path.join(work, 'unit');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'five'), '12345');
  writeFileSync(path.join(dir, 'taken'), 'x');
  symlinkSync('five', path.join(dir, 'link'));
  const got = await copyFiles(sys!, [
    { from: path.join(dir, 'five'), to: path.join(dir, 'copy'), size: 5, mode: 0o4750, mtimeMs: 1_234_567_890_123 },
    { from: path.join(dir, 'five'), to: path.join(dir, 'grew'), size: 4 }, // the file is now longer
    { from: path.join(dir, 'five'), to: path.join(dir, 'shrank'), size: 6 },
    { from: path.join(dir, 'link'), to: path.join(dir, 'via-link'), size: 5 }, // now a symlink
    { from: path.join(dir, 'five'), to: path.join(dir, 'taken'), size: 5 }, // the target exists
    { from: path.join(dir, 'missing'), to: path.join(dir, 'm'), size: 1 },
    { from: path.join(dir, 'five'), to: path.join(dir, 'no-such-dir', 'x'), size: 5 },
  ]);
  assert.deepEqual([...got], [0, COPY_FALLBACK, COPY_FALLBACK, COPY_FALLBACK, COPY_FALLBACK, -2, -2]);
  const st = lstatSync(path.join(dir, 'copy'));
  assert.equal(readFileSync(path.join(dir, 'copy'), 'utf8'), '12345');
  assert.equal(st.mode & 0o7777, 0o4750);
  assert.equal(st.mtimeMs, 1_234_567_890_123);
  for (const absent of ['grew', 'shrank', 'via-link', 'm']) assert.throws(() => lstatSync(path.join(dir, absent)), { code: 'ENOENT' });
  assert.equal(readFileSync(path.join(dir, 'taken'), 'utf8'), 'x');
});

test('spreadSubdirs sets the ext4 top-directory flag where the filesystem has one', needsAddon, () => {
  const dir = path.join(work, 'spread');
  mkdirSync(dir);
  const fsType = execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim();
  const err = sys!.spreadSubdirs(dir);
  if (fsType === 'ext2/ext3') {
    assert.equal(err, 0);
    const attrs = execFileSync('lsattr', ['-d', dir], { encoding: 'utf8' }).split(' ')[0]!;
    assert.match(attrs, /T/);
    assert.equal(sys!.spreadSubdirs(dir), 0, 'setting it again is fine');
  } else {
    assert.notEqual(err, 0, `${fsType} has no such flag`);
  }
  assert.equal(sys!.spreadSubdirs(path.join(work, 'nope')), 2);
});
