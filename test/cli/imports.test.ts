/**
 * The CLI stands on the public API: a file under src/cli/ imports only the package root (src/index.ts), node
 * built-ins and other files of src/cli/. Whatever the CLI can do, a program importing the package can do.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cliDir = path.join(repo, 'src', 'cli');

/** Every module specifier a TypeScript source names: static imports and re-exports (type-only too), and import(). */
function specifiers(source: string): string[] {
  const out: string[] = [];
  // `import … from '…'`, `import '…'`, `export {…}|* from '…'`, at a line start (clauses may span lines).
  const statements = /^\s*(?:import\s+(?:[^;'"()]*?\bfrom\s*)?|export\s+(?:type\s+)?(?:\*|\{)[^;'"]*?\bfrom\s*)(['"])([^'"]+)\1/gm;
  for (const m of source.matchAll(statements)) out.push(m[2]!);
  // import('…') and typeof import('…'), anywhere.
  for (const m of source.matchAll(/\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g)) out.push(m[2]!);
  return out;
}

/** Why `spec`, imported by `file`, is not allowed; undefined when it is. */
function violation(file: string, spec: string): string | undefined {
  if (spec.startsWith('node:')) return undefined;
  if (!spec.startsWith('.')) return `${spec} (a package, or a built-in without node:)`;
  const target = path.resolve(path.dirname(file), spec);
  if (target === path.join(repo, 'src', 'index.js')) return undefined;
  if (path.dirname(target) === cliDir || target.startsWith(`${cliDir}${path.sep}`)) return undefined;
  return `${spec} (${path.relative(repo, target)}: not the package root nor src/cli/)`;
}

function violations(file: string, source: string): string[] {
  return specifiers(source)
    .map((s) => violation(file, s))
    .filter((v): v is string => v !== undefined)
    .map((v) => `${path.relative(repo, file)}: ${v}`);
}

test('the import scan finds each kind of import and tells allowed from not', () => {
  const file = path.join(cliDir, 'x.ts');
  const source = [
    "import { build } from '../index.js';",
    "import type { BuildEvent } from '../builder/options.js';",
    "import { readFile } from 'node:fs/promises';",
    "import { UsageError } from './args.js';",
    'import {',
    '  LayerStore,',
    "} from '../store/layer-store.js';",
    "export { x } from '../errors.js';",
    "import 'execa';",
    "  const m = await import('../registry/pull.js');",
    "type T = typeof import('./specs.js');",
    "export function f(a: string): boolean { return a === 'not-a-module'; }",
  ].join('\n');
  assert.deepEqual(specifiers(source), [
    '../index.js',
    '../builder/options.js',
    'node:fs/promises',
    './args.js',
    '../store/layer-store.js',
    '../errors.js',
    'execa',
    '../registry/pull.js',
    './specs.js',
  ]);
  assert.deepEqual(
    violations(file, source).map((v) => v.split(': ')[1]!.split(' ')[0]),
    ['../builder/options.js', '../store/layer-store.js', '../errors.js', 'execa', '../registry/pull.js'],
  );
});

test('src/cli/ imports only the package root, node built-ins and src/cli/', () => {
  const files = readdirSync(cliDir, { recursive: true, encoding: 'utf8' })
    .filter((n) => n.endsWith('.ts'))
    .map((n) => path.join(cliDir, n));
  // The CLI lives here: an empty or moved directory must not pass by having nothing to scan.
  assert.ok(files.includes(path.join(cliDir, 'main.ts')), 'src/cli/main.ts exists');
  const found = files.flatMap((f) => violations(f, readFileSync(f, 'utf8')));
  assert.deepEqual(found, []);
  // Nothing else of src/ is the CLI: the old single-file CLI and its helpers are gone from src/.
  assert.deepEqual(readdirSync(path.join(repo, 'src')).filter((n) => /^cli[-.]/.test(n)), []);
});
