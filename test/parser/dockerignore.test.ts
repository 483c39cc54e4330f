import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IgnorePatternError, PatternMatcher, ignoreFileFor, legacyMatches, matchBothWays, patternToRegexpSource, readIgnoreFile, type MatchInfo } from '../../src/parser/dockerignore.js';

test('the reader drops comments, blanks and a BOM and cleans each pattern', () => {
  const text = '\ufeff# comment\r\n  node_modules/  \r\n\n !  ./docs/../README.md\n/abs/path\n # not a comment\n!\n';
  assert.deepEqual(readIgnoreFile(text), ['node_modules', '!README.md', 'abs/path', '# not a comment', '!']);
});

test('a later exception re-includes a path that an earlier pattern excluded', () => {
  const pm = PatternMatcher.compile(['docs', '!docs/README.md', '*.log']);
  assert.equal(pm.matchesOrParentMatches('docs/guide.md'), true);
  assert.equal(pm.matchesOrParentMatches('docs/README.md'), false);
  assert.equal(pm.matchesOrParentMatches('app/build.log'), false, '* does not cross a slash');
  assert.equal(pm.matchesOrParentMatches('build.log'), true);
});

test('** spans any number of directories, including none', () => {
  const pm = PatternMatcher.compile(['**/cache/*.tmp']);
  assert.equal(pm.matchesOrParentMatches('cache/a.tmp'), true);
  assert.equal(pm.matchesOrParentMatches('x/y/cache/a.tmp'), true);
  assert.equal(pm.matchesOrParentMatches('x/y/cache/sub/a.tmp'), false);
});

test('a top-down walk passing parent results agrees with matching each path alone', () => {
  const pm = PatternMatcher.compile(['src/**', '!src/keep', '**/*.o', 'tmp']);
  const paths = ['src', 'src/keep', 'src/keep/a.c', 'src/keep/a.o', 'lib', 'lib/x.o', 'tmp', 'tmp/y'];
  const infos = new Map<string, MatchInfo>();
  for (const p of paths) {
    const parent = p.includes('/') ? infos.get(p.slice(0, p.lastIndexOf('/'))) : undefined;
    const r = pm.matchesUsingParentResults(p, parent);
    infos.set(p, r.info);
    assert.equal(r.matched, pm.matchesOrParentMatches(p), p);
  }
});

test('malformed patterns fail with the upstream messages', () => {
  assert.throws(() => PatternMatcher.compile(['!']), { name: 'IgnorePatternError', message: 'illegal exclusion pattern: "!"' });
  assert.throws(() => PatternMatcher.compile(['a[']), { message: 'syntax error in pattern' });
  // Accepted by the syntax check, rejected when its class (range l-O) is compiled at match time.
  const pm = PatternMatcher.compile(['[Local-Only]/']);
  assert.throws(() => pm.matchesOrParentMatches('x'), IgnorePatternError);
  assert.throws(() => pm.matchesOrParentMatches('x'), IgnorePatternError);
});

test('the legacy matcher only checks the parent directory at the pattern depth', () => {
  assert.equal(legacyMatches('a/b/c', ['a/b']), true);
  assert.equal(legacyMatches('.', ['*']), false);
  assert.equal(PatternMatcher.compile(['b']).matchesOrParentMatches('a/b/c'), false);
});

test('matching paths against many stars does not backtrack exponentially', () => {
  const pm = PatternMatcher.compile([`${'a*'.repeat(40)}b`, '!**/keep']);
  const path = 'a'.repeat(200);
  for (let i = 0; i < 100; i++) assert.equal(pm.matchesOrParentMatches(`${path}${i}`), false);
});

test('the Dockerfile-specific ignore file is looked up before the context one', () => {
  assert.deepEqual(ignoreFileFor('/src/build/app.Dockerfile', '/src'), ['/src/build/app.Dockerfile.dockerignore', '/src/.dockerignore']);
});

test('an excluded directory is walked only when an exception could re-include something below it', () => {
  // The answer must never be false when a path below the directory is re-included (checked against the matcher
  // itself), and is false for directories no exception can reach, so a walk skips them as moby's walkers do.
  const cases: Array<[string[], string, boolean, string?]> = [
    [['**', '!src/**'], 'src', true, 'src/main.c'],
    [['**', '!src/**'], 'node_modules', false],
    [['**', '!src/**'], 'src/lib', true, 'src/lib/x.c'],
    [['docs', '!docs/README.md'], 'docs', true, 'docs/README.md'],
    [['build*', '!build-out/keep/**'], 'build-tmp', false],
    [['build*', '!build-out/keep/**'], 'build-out', true, 'build-out/keep/k'],
    [['*', '!app/**/*.js'], 'app', true, 'app/a/b/c.js'],
    [['*', '!**/*.go'], 'vendor', true, 'vendor/x/y.go'],
    [['*', '!a/b'], 'a/b/c', true, 'a/b/c/d'],
    [['*'], 'anything', false],
  ];
  for (const [patterns, dir, want, below] of cases) {
    const pm = PatternMatcher.compile(patterns);
    assert.equal(pm.mayReincludeBelow(dir), want, `${patterns.join(' ')} below ${dir}`);
    if (below !== undefined) assert.equal(pm.matchesOrParentMatches(below), false, `${below} is re-included`);
  }
});

test('the native RegExp fast path answers as the RE2-exact NFA on random patterns and paths', () => {
  // A fixed-seed generator (xorshift) over the characters that matter: wildcards, separators, characters Go's
  // syntax escapes, a newline and astral characters (which `?` must match as one code point).
  let seed = 0x2545f491;
  const rand = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const patternAtoms = ['a', 'b', '.', '*', '**', '?', '/', '+', '(', ')', '|', '{', '}', '$', '^', '-', 'é', '😀'];
  const pathAtoms = ['a', 'b', '.', '/', '+', '(', ')', '|', '{', '}', '$', '^', '-', 'é', '😀', '\n', '\r'];
  let compared = 0;
  for (let i = 0; i < 3000; i++) {
    let pattern = '';
    for (let k = 1 + rand(6); k > 0; k--) pattern += patternAtoms[rand(patternAtoms.length)];
    let type: string;
    try {
      type = patternToRegexpSource(pattern).type;
    } catch {
      continue;
    }
    if (type !== 'regexp') continue;
    for (let j = 0; j < 5; j++) {
      let p = '';
      for (let k = rand(8); k > 0; k--) p += pathAtoms[rand(pathAtoms.length)];
      let both: { nfa: boolean; native: boolean | undefined };
      try {
        both = matchBothWays(pattern, p);
      } catch {
        continue; // a source the NFA rejects is not compared
      }
      if (both.native === undefined) continue;
      compared++;
      assert.equal(both.native, both.nfa, `pattern ${JSON.stringify(pattern)} path ${JSON.stringify(p)}`);
    }
  }
  assert.ok(compared > 1000, `only ${compared} comparisons`);
});
