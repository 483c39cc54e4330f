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
 *
 * The bundle's `import()` of what stays external (npm packages, node built-ins) calls `__kilnImport`, which
 * start.cjs hands it: start.cjs runs the bundle as a vm.Script with a V8 code cache, and Node 20 loses such a
 * script's dynamic-import callback when its code comes from the cache (every `import()` then fails with "A dynamic
 * import callback was not specified"). Run directly (`node dist/cli/cli.cjs`), it is the native `import()`.
 */
import { build } from 'esbuild';
import { realpathSync } from 'node:fs';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Bundles `entry` into `outdir`/cli.cjs and puts start.cjs beside it. */
export async function bundleCli(entry, outdir) {
  await rm(outdir, { recursive: true, force: true });
  const outfile = path.join(outdir, 'cli.cjs');
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    outfile,
    define: { 'import.meta.url': '__kilnModuleUrl' },
    // (esbuild puts the entry's `#!/usr/bin/env node` line above the banner.)
    banner: {
      js: [
        "const __kilnModuleUrl = require('node:url').pathToFileURL(__filename).href;",
        'const __kilnImport = typeof module.kilnImport === "function" ? module.kilnImport : (specifier) => import(specifier);',
      ].join('\n'),
    },
    logLevel: 'warning',
  });
  // What stays external is imported by name (esbuild prints each as `import("name")`).
  const text = await readFile(outfile, 'utf8');
  await writeFile(outfile, text.replace(/\bimport\((["'])([^"'.][^"']*)\1\)/g, '__kilnImport($1$2$1)'), { mode: 0o755 });
  // bin/kiln's entry: runs cli.cjs with a V8 code cache (see scripts/cli-start.cjs).
  await copyFile(path.join(repo, 'scripts', 'cli-start.cjs'), path.join(outdir, 'start.cjs'));
}

// Run as a script (`node scripts/bundle.mjs`, npm run build), not imported (the test of the bundle's imports).
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await bundleCli(path.join(repo, 'dist', 'src', 'cli', 'main.js'), path.join(repo, 'dist', 'cli'));
}
