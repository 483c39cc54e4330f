// The shape of src/ as rules (issue 16): no file cycles, imports that run one way between the parts, an OCI leaf
// that imports nothing of the project, and no module-level mutable state outside memoised constants and lazily
// loaded module handles. Rules are over folders and globs, not over named files, so that they hold while files move.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** A source file of the graph by its path from the repository root (`src/builder/build.ts`). */
type Rel = string;

interface Module {
  readonly rel: Rel;
  readonly source: ts.SourceFile;
  /** Every specifier it imports or re-exports, statically, dynamically (`import()`) or as a type (`typeof import()`). */
  readonly specifiers: readonly string[];
  /** The project files among them, resolved. */
  readonly imports: readonly Rel[];
}

/** Imports a module makes, found by TypeScript's own pre-processor (comments and strings cannot fool it). */
function loadModules(): Map<Rel, Module> {
  // grammar/ is part of the graph: the parser imports the generated grammar, which imports grammar/lexer.ts.
  const files = [...sourceFiles(path.join(ROOT, 'src')), ...sourceFiles(path.join(ROOT, 'grammar'))];
  const known = new Set(files.map((f) => path.relative(ROOT, f)));
  const modules = new Map<Rel, Module>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const rel = path.relative(ROOT, file);
    const specifiers = ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
    const imports: Rel[] = [];
    for (const spec of specifiers) {
      if (!spec.startsWith('.')) continue;
      const target = path.relative(ROOT, path.resolve(path.dirname(file), spec)).replace(/\.js$/, '.ts');
      if (known.has(target)) imports.push(target);
      else if (!known.has(`${target}.ts`)) assert.fail(`${rel} imports ${spec}, which is not a source file`);
      else imports.push(`${target}.ts`);
    }
    modules.set(rel, { rel, source: ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false), specifiers, imports });
  }
  return modules;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let index = 0;
  const indexOf = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    indexOf.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!indexOf.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indexOf.get(w)!));
    }
    if (low.get(v) === indexOf.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!indexOf.has(v)) visit(v);
  return out;
}

/**
 * The part of kiln a file belongs to: its folder under src/ (`builder`, `runtime`, `oci` …); the CLI (`src/cli*.ts`
 * or `src/cli/`), the public API (`src/index.ts`, `src/api/`), `grammar` for grammar/, and `shared` for the few
 * helpers at the top of src/ that everyone may use (errors, untrusted JSON, the buffer pool).
 */
function partOf(rel: Rel): string {
  if (rel.startsWith('grammar/')) return 'grammar';
  const parts = rel.split('/').slice(1);
  if (parts.length === 1) {
    const name = parts[0]!;
    if (/^cli(?:[-.]|$)/.test(name)) return 'cli';
    if (name === 'index.ts') return 'api';
    return 'shared';
  }
  return parts[0]!;
}

/**
 * The import direction, CLI → API → builder → runtime/outputs/sources/registry → image/store → OCI leaf, as the parts each
 * part must not import. A part not listed here may import what the folders below it allow.
 */
const FORBIDDEN: Readonly<Record<string, readonly string[]>> = {
  store: ['cli', 'api', 'builder', 'runtime', 'registry', 'outputs', 'sources'],
  image: ['cli', 'api', 'builder', 'runtime', 'registry', 'outputs', 'sources'],
  parser: ['cli', 'api', 'builder', 'store', 'runtime', 'registry', 'image', 'outputs', 'net', 'sources'],
  grammar: ['cli', 'api', 'builder', 'store', 'runtime', 'registry', 'image', 'outputs', 'net', 'sources'],
  native: ['cli', 'api', 'builder', 'store', 'runtime', 'registry', 'image', 'outputs', 'parser', 'net', 'sources'],
  net: ['cli', 'api', 'builder', 'runtime', 'registry', 'outputs', 'parser', 'sources'],
  shared: ['cli', 'api', 'builder', 'store', 'runtime', 'registry', 'image', 'outputs', 'parser', 'net', 'native', 'sources'],
  runtime: ['cli', 'api', 'builder', 'outputs', 'registry', 'sources'],
  registry: ['cli', 'api', 'builder', 'runtime', 'outputs', 'sources'],
  outputs: ['cli', 'api', 'builder', 'runtime', 'sources'],
  sources: ['cli', 'api', 'builder', 'runtime', 'outputs'],
  builder: ['cli', 'api'],
  api: ['cli'],
};

/**
 * Module-level mutable state that is allowed, as `part:name` (so an entry survives a file moving inside its part),
 * each with its reason. Everything else that is host
 * state (a probe result, a latch, a set that grows) belongs to a `Host` (src/runtime/host.ts) passed down. A `let`
 * typed `typeof import(…)` (a lazily loaded module handle) and a `const` Map/Set no code ever changes are allowed
 * by rule and need no entry.
 */
const ALLOWED: Readonly<Record<string, string>> = {
  'native:loaded': 'the native addon handle, loaded once on first use (a lazily loaded module)',
  'builder:hasherPromise': 'xxhash-wasm being loaded (a lazily loaded module handle)',
  'builder:hasherReady': 'the loaded xxhash-wasm instance (a lazily loaded module handle)',
  'builder:fingerprint': "the identity of kiln's own parser sources: a constant of the installation, memoised",
  'store:selfToken': "this process' pid and start time: a constant of the process, memoised",
  'grammar:cache': 'the moo lexer of each escape token: a pure function of the token, memoised (parses are synchronous)',
};

const MUTABLE_COLLECTIONS = new Set(['Map', 'Set', 'WeakMap', 'WeakSet']);

interface StateFinding {
  readonly rel: Rel;
  readonly name: string;
  readonly line: number;
  readonly what: string;
}

/** Top-level `let`/`var` and top-level `const X = new Map/Set(…)` that some code changes. */
function moduleState(modules: ReadonlyMap<Rel, Module>): StateFinding[] {
  const texts = [...modules.values()].map((m) => m.source.text);
  const mutated = (name: string): boolean => {
    const re = new RegExp(`\\b${name}\\s*\\.\\s*(?:add|set|delete|clear)\\s*\\(`);
    return texts.some((t) => re.test(t));
  };
  const out: StateFinding[] = [];
  for (const m of modules.values()) {
    for (const st of m.source.statements) {
      if (!ts.isVariableStatement(st)) continue;
      if (st.modifiers?.some((m) => m.kind === ts.SyntaxKind.DeclareKeyword)) continue; // an ambient declaration
      const isConst = (st.declarationList.flags & ts.NodeFlags.Const) !== 0;
      for (const d of st.declarationList.declarations) {
        if (!ts.isIdentifier(d.name)) continue;
        const name = d.name.text;
        const line = m.source.getLineAndCharacterOfPosition(d.getStart(m.source)).line + 1;
        if (!isConst) {
          const lazyModule = d.type !== undefined && ts.isUnionTypeNode(d.type)
            ? d.type.types.some((t) => ts.isImportTypeNode(t) && t.isTypeOf)
            : d.type !== undefined && ts.isImportTypeNode(d.type) && d.type.isTypeOf;
          if (!lazyModule) out.push({ rel: m.rel, name, line, what: 'module-level let' });
          continue;
        }
        const init = d.initializer;
        if (init !== undefined && ts.isNewExpression(init) && ts.isIdentifier(init.expression) && MUTABLE_COLLECTIONS.has(init.expression.text) && mutated(name)) {
          out.push({ rel: m.rel, name, line, what: `module-level ${init.expression.text} that code changes` });
        }
      }
    }
  }
  return out;
}

const modules = loadModules();

test('the cycle finder reports a cycle and a self-import, and nothing in a tree', () => {
  const graph = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a']],
    ['d', ['d']],
    ['e', ['a', 'f']],
    ['f', []],
  ]);
  assert.deepEqual(cycles(graph), [['a', 'b', 'c'], ['d']]);
  assert.deepEqual(cycles(new Map([['x', ['y']], ['y', []]])), []);
});

test('src/ has no file cycles (static, dynamic and type imports all count)', () => {
  const graph = new Map([...modules.values()].map((m) => [m.rel, m.imports] as const));
  assert.ok(graph.size > 50, `only ${graph.size} source files found`);
  assert.deepEqual(cycles(graph), []);
});

test('src/oci/ imports nothing of the project and no package, only node: built-ins', () => {
  const oci = [...modules.values()].filter((m) => partOf(m.rel) === 'oci');
  assert.ok(oci.length > 0, 'src/oci/ holds no module');
  const bad = oci.flatMap((m) =>
    m.specifiers.filter((s) => !s.startsWith('node:') && !(s.startsWith('.') && path.join(path.dirname(m.rel), s).startsWith('src/oci/'))).map((s) => `${m.rel} → ${s}`),
  );
  assert.deepEqual(bad, []);
});

test('imports run one way: CLI → API → builder → runtime/outputs/sources/registry → image/store → OCI leaf', () => {
  const bad: string[] = [];
  for (const m of modules.values()) {
    const from = partOf(m.rel);
    const forbidden = FORBIDDEN[from] ?? [];
    for (const target of m.imports) {
      const to = partOf(target);
      if (to !== from && (forbidden.includes(to) || forbidden.includes('*'))) bad.push(`${m.rel} (${from}) → ${target} (${to})`);
    }
  }
  assert.deepEqual(bad, []);
});

test('no module-level mutable state outside the allow-list of memoised constants and lazily loaded modules', () => {
  const found = moduleState(modules);
  assert.deepEqual(
    found.filter((f) => ALLOWED[`${partOf(f.rel)}:${f.name}`] === undefined).map((f) => `${f.rel}:${f.line}: ${f.what} ${f.name}`),
    [],
  );
  // An entry whose variable is gone goes too, so the list stays the true list of exceptions.
  const stale = Object.keys(ALLOWED).filter((key) => !found.some((f) => `${partOf(f.rel)}:${f.name}` === key));
  assert.deepEqual(stale, [], 'allow-list entries that match no module-level variable any more');
});
