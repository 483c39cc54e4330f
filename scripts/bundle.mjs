#!/usr/bin/env node
/**
 * Bundles the compiled CLI (dist/src/cli/main.js, from `tsc -p tsconfig.build.json`) into ONE CommonJS file,
 * dist/cli/cli.cjs, which bin/kiln starts.
 *
 * Why: start-up is part of every cached rebuild. Node's ESM loader pays per module (resolve, stat, read,
 * compile, link), and an ESM entry loads the ESM loader itself (~5-9 ms for an empty module here). The two dozen
 * modules of a cached build as a few ESM chunks were ~10 ms faster than unbundled (steps10 cached rebuild, median
 * of 30: 204 → 194 ms); as one CJS file, ~12-16 ms faster again (30 runs each: 151 → 135 and 135 → 123 ms).
 * Modules the sources import lazily (the runtime, the snapshotter, the registry client) stay lazy: esbuild
 * initializes them on the first `import()`, and V8 compiles their functions only when they run. npm packages stay
 * external (execa is ESM-only and always loaded with `import()`). `import.meta.url` is the bundle's own URL, so
 * paths relative to a module (package.json, build/native, grammar/) resolve from dist/cli/ as from the ESM chunks
 * before. The library entry (dist/src/index.js) is not bundled: importers have their own bundlers.
 */
import { build } from 'esbuild';
import { copyFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(repo, 'dist', 'cli');
await rm(outdir, { recursive: true, force: true });
await build({
  entryPoints: [path.join(repo, 'dist', 'src', 'cli', 'main.js')],
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  outfile: path.join(outdir, 'cli.cjs'),
  define: { 'import.meta.url': '__kilnModuleUrl' },
  // (esbuild puts the entry's `#!/usr/bin/env node` line above the banner.)
  banner: { js: "const __kilnModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});
// bin/kiln's entry: runs cli.cjs with a V8 code cache (see scripts/cli-start.cjs).
await copyFile(path.join(repo, 'scripts', 'cli-start.cjs'), path.join(outdir, 'start.cjs'));
