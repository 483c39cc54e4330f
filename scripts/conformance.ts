/**
 * `npm run conformance -- DIR`: runs every conformance set found under DIR (laid out like ../shared)
 * and prints one line per set ending in `N passed, N failed`. Exits 1 if any case failed or no set was found.
 * `--verbose` prints every failure instead of the first ten per set.
 */
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import type { Checker, SetResult } from '../test/conformance/types.js';

const args = process.argv.slice(2);
const verbose = args.includes('--verbose');
const dir = resolve(args.find((a) => !a.startsWith('--')) ?? '../shared');

if (!existsSync(dir)) {
  console.error(`conformance: ${dir} does not exist`);
  process.exit(1);
}

// Each module checks the sets of one area; adding an area means adding a module here.
const modules = ['parser', 'shell', 'dockerignore', 'instructions', 'corpus'];
const results: SetResult[] = [];
for (const name of modules) {
  const path = new URL(`../test/conformance/${name}.ts`, import.meta.url);
  if (!existsSync(path)) {
    console.error(`conformance: checker ${name} is missing`);
    process.exitCode = 1;
    continue;
  }
  const mod = (await import(path.href)) as { check: Checker };
  results.push(...(await mod.check(dir)));
}

let failed = 0;
for (const r of results) {
  failed += r.failed;
  const skipped = r.skipped ? ` (${r.skipped} skipped: ${r.skipReasons.join('; ')})` : '';
  console.log(`${r.name}: ${r.passed} passed, ${r.failed} failed${skipped}`);
  for (const f of verbose ? r.failures : r.failures.slice(0, 10)) console.log(`    ✗ ${f.length > 600 ? `${f.slice(0, 600)}…` : f}`);
  if (!verbose && r.failures.length > 10) console.log(`    … ${r.failures.length - 10} more (--verbose)`);
}
if (results.length === 0) {
  console.error(`conformance: no conformance sets found under ${dir}`);
  process.exit(1);
}
if (failed > 0) process.exitCode = 1;
