/**
 * A cache of parsed Dockerfiles, for start-up time. Every `kiln build` is a new process, and on a fully
 * cached rebuild loading the parser (the nearley runtime, the moo lexer, the grammar: CommonJS modules
 * loaded from ESM) costs more than the rest of the build's in-process work. A rebuild of an unchanged
 * Dockerfile reads the parse result back instead and never loads the parser.
 *
 * An entry is keyed by the Dockerfile text, its file name (it appears in ranges and errors) and a
 * fingerprint of the parser's own code (name, size and mtime of each source file in `src/parser/`
 * and `grammar/`), so an edited or rebuilt parser never reads a stale entry.
 * Only successful parses whose result survives a JSON round trip unchanged are stored; errors always
 * come from a real parse.
 */
import { sha256Hex } from '../oci/digest.js';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import type { Directive, ParseWarning } from '../parser/ast.js';
import type { Instruction } from '../parser/instructions.js';

/** The parts of a parsed Dockerfile the builder uses (the parser's `Dockerfile` without the line-level AST). */
export interface ParsedDockerfile {
  readonly instructions: readonly Instruction[];
  readonly directives: readonly Directive[];
  readonly escapeToken: '\\' | '`';
  readonly warnings: readonly ParseWarning[];
}

/** Bump when the entry format changes. */
const FORMAT = 'kiln-parse-cache-1';

// Module state allowed (test/architecture.test.ts): a memoised constant, the identity of kiln's own parser sources.
let fingerprint: string | null | undefined;

/**
 * Name, size and mtime of every source file of the parser and the grammar (`.js` when compiled, `.ts`
 * under tsx, the `.ne` grammar), and of the files next to this module: in the bundled CLI (dist/cli, see
 * scripts/bundle.mjs) the parser is compiled into those chunks. Computed once per process. nearley and moo
 * are left out: they are pinned by the lockfile, and resolving them costs more than the rest of the fingerprint.
 * Null when none of these files are found: then nothing can tell a stale entry, so the cache is not used.
 */
function parserFingerprint(): string | null {
  if (fingerprint !== undefined) return fingerprint;
  const parts: string[] = [FORMAT];
  let found = 0;
  for (const rel of ['../parser/', '../../grammar/', './']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    let names: string[];
    try {
      names = readdirSync(dir).filter((n) => /\.(?:c?js|ts|ne)$/.test(n) && !n.endsWith('.d.ts')).sort();
    } catch {
      names = [];
    }
    parts.push(`${rel}:${names.length}`);
    found += names.length;
    for (const name of names) {
      const st = statSync(path.join(dir, name), { throwIfNoEntry: false });
      parts.push(`${name}:${st?.size}:${st?.mtimeMs}`);
    }
  }
  fingerprint = found > 0 ? sha256Hex(parts.join('\n')) : null;
  return fingerprint;
}

/**
 * Parses Dockerfile text, reading the result from `cacheDir` when this text was parsed before by the
 * same parser code, and storing it there otherwise.
 * @throws DockerfileError as the parser's `parse()` does (parse errors are never cached)
 */
export async function parseWithCache(text: string, file: string, cacheDir: string): Promise<ParsedDockerfile> {
  const parser = parserFingerprint();
  if (parser === null) return parseDirect(text, file);
  const key = sha256Hex(parser, '\0', file, '\0', text);
  const entry = path.join(cacheDir, `${key}.json`);
  try {
    const cached = JSON.parse(readFileSync(entry, 'utf8')) as ParsedDockerfile & { key?: string };
    if (cached.key === key) {
      return { instructions: cached.instructions, directives: cached.directives, escapeToken: cached.escapeToken, warnings: cached.warnings };
    }
  } catch {
    // No entry (or an unreadable one): parse.
  }
  const result = await parseDirect(text, file);
  const json = JSON.stringify({ key, ...result });
  const back = JSON.parse(json) as Partial<ParsedDockerfile & { key: string }>;
  delete back.key;
  // Only results that JSON reproduces exactly (no undefined members, no class instances) are cached.
  if (isDeepStrictEqual(back, result)) {
    try {
      await mkdir(cacheDir, { recursive: true });
      const tmp = `${entry}.${process.pid}.${Date.now()}.tmp`;
      await writeFile(tmp, json);
      await rename(tmp, entry);
    } catch {
      // A cache that cannot be written only costs the next build a parse.
    }
  }
  return result;
}

/** Loads the parser (only now: loading it is what the cache saves) and parses. */
async function parseDirect(text: string, file: string): Promise<ParsedDockerfile> {
  const { parse } = await import('../parser/index.js');
  const df = parse(text, { file });
  return { instructions: df.instructions, directives: df.directives, escapeToken: df.escapeToken, warnings: df.warnings };
}

/** The parse cache's directory in a store. */
export function parseCacheDir(storeRoot: string): string {
  return path.join(storeRoot, 'cache', 'parse');
}

/** Removes every parse cache entry of a store (`kiln prune`): they are only a cache. */
export async function clearParseCache(storeRoot: string): Promise<void> {
  await rm(parseCacheDir(storeRoot), { recursive: true, force: true });
}
