/**
 * Conformance checker for BuildKit's shell-word lexer (`conformance/shell`): one SetResult per
 * table under `cases/`. The Go-internal helper tables are mapped onto kiln's equivalents:
 * `reverse_pattern` onto reverseGlobPattern/reverseCodePoints, `shell_pattern_to_regex` onto
 * compileGlob + findGlob (validity must agree, and the glob must find the same match as the
 * expected Go regexp on inputs derived from the pattern).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ShellLex,
  ShellWordError,
  compileGlob,
  envFromList,
  findGlob,
  reverseCodePoints,
  reverseGlobPattern,
} from '../../src/parser/shell-words.js';
import { check as runCase, diff, newResult, type Checker, type SetResult } from './types.js';

interface Table<C> {
  readonly env?: readonly string[];
  readonly cases: readonly C[];
}
interface BaseCase {
  readonly id: string;
  readonly input: string;
  readonly expected?: unknown;
  readonly expected_error?: boolean;
}

function load<C>(dir: string, name: string): Table<C> | undefined {
  const file = join(dir, `${name}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Table<C>) : undefined;
}

/** Runs `fn`; an expected error must be a ShellWordError, anything else thrown is a failure. */
function outcome<T>(fn: () => T): { value: T } | { error: ShellWordError } {
  try {
    return { value: fn() };
  } catch (err) {
    if (err instanceof ShellWordError) return { error: err };
    throw err;
  }
}

function expectValue<T>(c: BaseCase, fn: () => T, expected: unknown, errorContains?: string): string | undefined {
  const r = outcome(fn);
  if (c.expected_error || errorContains !== undefined) {
    if ('value' in r) return `expected an error, got ${JSON.stringify(r.value)}`;
    if (errorContains !== undefined && !r.error.message.includes(errorContains)) {
      return `error ${JSON.stringify(r.error.message)} does not contain ${JSON.stringify(errorContains)}`;
    }
    return undefined;
  }
  if ('error' in r) return `unexpected error: ${r.error.message}`;
  return diff(r.value, expected);
}

const lex = new ShellLex('\\');

/** Converts the Go regexp source of the table to a JS RegExp with Go's meaning of `.` (anything but \n). */
function goRegexToJs(source: string): RegExp {
  let out = '';
  for (let i = 0; i < source.length; i++) {
    const c = source[i] ?? '';
    if (c === '\\') {
      out += c + (source[i + 1] ?? '');
      i++;
    } else if (c === '.') out += '[^\\n]';
    else out += c;
  }
  return new RegExp(out, 'u');
}

/** Inputs derived from a glob: its literal text with each wildcard replaced by a few fillers, framed by a few affixes. */
function derivedInputs(pattern: string): string[] {
  const parts: string[][] = [['']];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] ?? '';
    let options: string[];
    if (c === '\\') {
      const n = pattern[++i] ?? '';
      options = [n];
    } else if (c === '*') options = ['', 'x', '*y*', '\n'];
    else if (c === '?') options = ['q', '?', ''];
    else options = [c];
    parts.push(options);
  }
  let texts = [''];
  for (const options of parts) {
    const next: string[] = [];
    for (const t of texts) for (const o of options) next.push(t + o);
    texts = next.slice(0, 256);
  }
  const out = new Set<string>();
  for (const t of texts) for (const [a, b] of [['', ''], ['z', ''], ['', 'z'], ['(', ')'], ['\n', '']]) out.add(`${a}${t}${b}`);
  return [...out];
}

export const check: Checker = async (root) => {
  const dir = join(root, 'conformance', 'shell', 'cases');
  const results: SetResult[] = [];
  if (!existsSync(dir)) return results;

  const env = load<BaseCase & { platform: string }>(dir, 'envVarTest');
  if (env) {
    const r = newResult('shell/envVarTest');
    const vars = envFromList(env.env ?? []);
    for (const c of env.cases) {
      if (c.platform === 'W') {
        r.skipped++;
        if (!r.skipReasons.includes('Windows-only')) r.skipReasons.push('Windows-only');
        continue;
      }
      runCase(r, c.id, () => expectValue(c, () => lex.processWord(c.input, vars), c.expected));
    }
    results.push(r);
  }

  const words = load<BaseCase & { env: string[] }>(dir, 'wordsTest');
  if (words) {
    const r = newResult('shell/wordsTest');
    for (const c of words.cases) runCase(r, c.id, () => expectValue(c, () => lex.processWords(c.input, envFromList(c.env)), c.expected));
    results.push(r);
  }

  const getEnv = load<{ id: string; env: string[]; name: string; expected: string }>(dir, 'get_env');
  if (getEnv) {
    const r = newResult('shell/get_env');
    for (const c of getEnv.cases) runCase(r, c.id, () => diff(envFromList(c.env).get(c.name) ?? '', c.expected));
    results.push(r);
  }

  const mandatory = load<BaseCase & { env: string[]; expected_error_contains?: string }>(dir, 'mandatory_env_vars');
  if (mandatory) {
    const r = newResult('shell/mandatory_env_vars');
    for (const c of mandatory.cases) {
      runCase(r, c.id, () => expectValue(c, () => lex.processWord(c.input, envFromList(c.env)), c.expected, c.expected_error_contains));
    }
    results.push(r);
  }

  const platform = load<BaseCase & { env: Record<string, string> }>(dir, 'process_word_platform');
  if (platform) {
    const r = newResult('shell/process_word_platform');
    for (const c of platform.cases) {
      runCase(r, c.id, () => expectValue(c, () => lex.processWordWithMatches(c.input, new Map(Object.entries(c.env))).result, c.expected));
    }
    results.push(r);
  }

  const withMatches = load<BaseCase & { env: Record<string, string>; expected_matched?: string[]; expected_unmatched?: string[] }>(
    dir,
    'process_word_with_matches',
  );
  if (withMatches) {
    const r = newResult('shell/process_word_with_matches');
    for (const c of withMatches.cases) {
      runCase(r, c.id, () =>
        expectValue(
          c,
          () => {
            const w = lex.processWordWithMatches(c.input, new Map(Object.entries(c.env)));
            return { result: w.result, matched: [...w.matched].sort(), unmatched: [...w.unmatched].sort() };
          },
          { result: c.expected, matched: c.expected_matched, unmatched: c.expected_unmatched },
        ),
      );
    }
    results.push(r);
  }

  const reverse = load<BaseCase & { op: string }>(dir, 'reverse_pattern');
  if (reverse) {
    const r = newResult('shell/reverse_pattern');
    for (const c of reverse.cases) {
      runCase(r, c.id, () => {
        if (c.op === 'reversePattern') return diff(reverseGlobPattern(c.input), c.expected);
        if (c.op === 'reverseString') return diff(reverseCodePoints(c.input), c.expected);
        return `unknown op ${c.op}`;
      });
    }
    results.push(r);
  }

  const toRegex = load<{ id: string; pattern: string; greedy: boolean; anchored: boolean; expected_go_regexp?: string; expected_error?: boolean }>(
    dir,
    'shell_pattern_to_regex',
  );
  if (toRegex) {
    const r = newResult('shell/shell_pattern_to_regex');
    for (const c of toRegex.cases) {
      runCase(r, c.id, () => {
        const compiled = outcome(() => compileGlob(c.pattern));
        if (c.expected_error) return 'value' in compiled ? 'expected the pattern to be rejected' : undefined;
        if ('error' in compiled) return `rejected: ${compiled.error.message}`;
        const re = goRegexToJs(c.expected_go_regexp ?? '');
        for (const input of derivedInputs(c.pattern)) {
          const m = re.exec(input);
          const want = m ? [m.index, m.index + m[0].length] : undefined;
          const got = findGlob(compiled.value, input, 0, c.anchored, c.greedy);
          const problem = diff(got, want);
          if (problem) return `on ${JSON.stringify(input)}: ${problem}`;
        }
        return undefined;
      });
    }
    results.push(r);
  }
  return results;
};
