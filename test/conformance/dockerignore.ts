/**
 * Conformance checker for `.dockerignore` reading and matching (`conformance/dockerignore`):
 * one SetResult per table under `cases/`. `compile.json` (upstream's internal pattern → regexp
 * translation) is checked against patternToRegexpSource, which kiln's matcher runs on.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  IgnorePatternError,
  PatternMatcher,
  legacyMatches,
  patternToRegexpSource,
  readIgnoreFile,
  type MatchInfo,
} from '../../src/parser/dockerignore.js';
import { check as runCase, diff, newResult, type Checker, type SetResult } from './types.js';

interface Table<C> {
  readonly cases: readonly C[];
}

function load<C>(dir: string, name: string): Table<C> | undefined {
  const file = join(dir, `${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Table<C>) : undefined;
}

/** Runs `fn`, expecting either a value or an IgnorePatternError with exactly `error`. */
function expect<T>(fn: () => T, expected: T, error: string | undefined): string | undefined {
  let value: T;
  try {
    value = fn();
  } catch (err) {
    if (!(err instanceof IgnorePatternError)) throw err;
    if (error === undefined) return `unexpected error: ${err.message}`;
    return diff(err.message, error);
  }
  if (error !== undefined) return `expected error ${JSON.stringify(error)}, got ${JSON.stringify(value)}`;
  return diff(value, expected);
}

/** Go's filepath.Dir split into its components, for the top-down walk. */
function parentDirs(path: string): string[] {
  const slash = path.lastIndexOf('/');
  if (slash < 0) return [];
  const parent = path.slice(0, slash + 1);
  // filepath.Dir cleans; the paths in the table are already clean apart from trailing slashes.
  const clean = parent.length > 1 ? parent.replace(/\/+$/, '') : parent;
  return clean === '' ? [] : clean.split('/');
}

export const check: Checker = async (root) => {
  const dir = join(root, 'conformance', 'dockerignore', 'cases');
  const results: SetResult[] = [];
  if (!existsSync(dir)) return results;

  const compile = load<{ id: string; pattern: string; match_type: string; regexp_slash: string; regexp_backslash: string }>(dir, 'compile');
  if (compile) {
    const r = newResult('dockerignore/compile');
    for (const c of compile.cases) {
      runCase(r, c.id, () => {
        const slash = patternToRegexpSource(c.pattern, '/');
        const back = patternToRegexpSource(c.pattern.replaceAll('/', '\\'), '\\');
        return diff([slash.type, slash.source, back.source], [c.match_type, c.regexp_slash, c.regexp_backslash]);
      });
    }
    results.push(r);
  }

  const legacy = load<{ id: string; patterns: string[]; path: string; expected: boolean; expected_error?: string }>(dir, 'legacy_matches');
  if (legacy) {
    const r = newResult('dockerignore/legacy_matches');
    for (const c of legacy.cases) runCase(r, c.id, () => expect(() => legacyMatches(c.path, c.patterns), c.expected, c.expected_error));
    results.push(r);
  }

  const malformed = load<{ id: string; patterns: string[]; path: string; expected_new_ok: boolean; expected_error: string; repeat: number }>(
    dir,
    'malformed_repeat',
  );
  if (malformed) {
    const r = newResult('dockerignore/malformed_repeat');
    for (const c of malformed.cases) {
      runCase(r, c.id, () => {
        const pm = PatternMatcher.compile(c.patterns);
        for (let i = 0; i < c.repeat; i++) {
          const problem = expect(() => pm.matchesOrParentMatches(c.path), false, c.expected_error);
          if (problem) return `call ${i + 1}: ${problem}`;
        }
        return undefined;
      });
    }
    results.push(r);
  }

  const matches = load<{ id: string; patterns: string[]; path: string; expected: boolean }>(dir, 'matches');
  if (matches) {
    const r = newResult('dockerignore/matches');
    for (const c of matches.cases) {
      runCase(r, c.id, () => {
        const pm = PatternMatcher.compile(c.patterns);
        const direct = pm.matchesOrParentMatches(c.path);
        // A top-down walk: each parent directory first, passing its result down.
        let info: MatchInfo | undefined;
        const dirs = parentDirs(c.path);
        for (let i = 1; i <= dirs.length; i++) info = pm.matchesUsingParentResults(dirs.slice(0, i).join('/'), info).info;
        const walked = pm.matchesUsingParentResults(c.path, info).matched;
        const noInfo = pm.matchesUsingParentResults(c.path).matched;
        return diff({ direct, walked, noInfo }, { direct: c.expected, walked: c.expected, noInfo: c.expected });
      });
    }
    results.push(r);
  }

  const fresh = load<{ id: string; patterns: string[]; expected: { pattern_count?: number; exclusions?: boolean; error?: string } }>(
    dir,
    'new_patterns',
  );
  if (fresh) {
    const r = newResult('dockerignore/new_patterns');
    for (const c of fresh.cases) {
      runCase(r, c.id, () => {
        const { error, ...props } = c.expected;
        return expect(
          () => {
            const pm = PatternMatcher.compile(c.patterns);
            const got: { pattern_count?: number; exclusions?: boolean } = {};
            if (props.pattern_count !== undefined) got.pattern_count = pm.patterns.length;
            if (props.exclusions !== undefined) got.exclusions = pm.hasExclusions;
            return got;
          },
          props,
          error,
        );
      });
    }
    results.push(r);
  }

  for (const name of ['readall', 'readall_oracle_generated']) {
    const table = load<{ id: string; content: string | null; expected: string[] }>(dir, name);
    if (!table) continue;
    const r = newResult(`dockerignore/${name}`);
    for (const c of table.cases) runCase(r, c.id, () => diff(readIgnoreFile(c.content ?? ''), c.expected));
    results.push(r);
  }
  return results;
};
