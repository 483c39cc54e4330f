/**
 * The bundled CLI's `import()` works when start.cjs runs it from its V8 code cache. Node 20 drops a vm.Script's
 * dynamic-import callback when the script's code comes from a cache, so an `import()` inside the bundle failed
 * with "A dynamic import callback was not specified" in every run after the first cached build (a fresh store's
 * busybox base needs execa, which the bundle loads with `import()`). scripts/bundle.mjs routes those imports
 * through start.cjs.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = mkdtempSync(path.join(tmpdir(), 'kiln-bundle-imports-'));
const cleanup: string[] = [work];

after(() => {
  for (const p of cleanup) rmSync(p, { recursive: true, force: true });
});

test('an import() in the bundle works in a run that start.cjs serves from its code cache', async () => {
  // `bundleCli` is what `npm run build` runs on dist/src/cli/main.js.
  const { bundleCli } = (await import(path.join(repo, 'scripts', 'bundle.mjs'))) as { bundleCli: (entry: string, outdir: string) => Promise<void> };
  const entry = path.join(work, 'entry.mjs');
  // A CLI whose `build` imports a module the bundle leaves external, as kiln imports execa and node:fs/promises.
  writeFileSync(entry, "import('node:path').then((p) => { process.stdout.write(p.basename('/a/imported') + '\\n'); });\n");
  const outdir = path.join(work, 'dist', 'cli');
  await bundleCli(entry, outdir);

  const runtimeDir = path.join(work, 'xdg');
  const env = { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
  const st = statSync(path.join(outdir, 'cli.cjs'));
  // Where start.cjs keeps the cache (root: /run/kiln, else $XDG_RUNTIME_DIR/kiln), named as it names it.
  const cacheDir = process.getuid?.() === 0 ? '/run/kiln' : path.join(runtimeDir, 'kiln');
  const cacheFile = path.join(cacheDir, `cli-${st.size}-${Math.trunc(st.mtimeMs)}-${process.version}-${process.arch}.v8cache`);
  cleanup.push(cacheFile);

  const first = spawnSync(process.execPath, [path.join(outdir, 'start.cjs'), 'build'], { encoding: 'utf8', env });
  assert.equal(first.status, 0, first.stderr);
  assert.equal(first.stdout, 'imported\n');
  assert.ok(existsSync(cacheFile), 'the first successful build wrote the code cache');

  const cached = spawnSync(process.execPath, [path.join(outdir, 'start.cjs'), 'build'], { encoding: 'utf8', env });
  assert.equal(cached.status, 0, cached.stderr);
  assert.equal(cached.stdout, 'imported\n');
  assert.equal(cached.stderr, '', 'no warning either');
});
