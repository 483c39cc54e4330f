// Go's filepath.Match, kiln's one glob engine (COPY source wildcards, .dockerignore pattern checks). The table is
// Go's own (src/path/filepath/match_test.go, matchTests, golang/go 14c40f9), so the expectations are Go's answers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BadPatternError, filepathMatch, segmentMatcher } from '../../src/parser/filepath-match.js';

const BAD = 'bad';
const MATCH_TESTS: ReadonlyArray<readonly [pattern: string, name: string, want: boolean | typeof BAD]> = [
  ['abc', 'abc', true],
  ['*', 'abc', true],
  ['*c', 'abc', true],
  ['a*', 'a', true],
  ['a*', 'abc', true],
  ['a*', 'ab/c', false],
  ['a*/b', 'abc/b', true],
  ['a*/b', 'a/c/b', false],
  ['a*b*c*d*e*/f', 'axbxcxdxe/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxe/xxx/f', false],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/fff', false],
  ['a*b?c*x', 'abxbbxdbxebxczzx', true],
  ['a*b?c*x', 'abxbbxdbxebxczzy', false],
  ['ab[c]', 'abc', true],
  ['ab[b-d]', 'abc', true],
  ['ab[e-g]', 'abc', false],
  ['ab[^c]', 'abc', false],
  ['ab[^b-d]', 'abc', false],
  ['ab[^e-g]', 'abc', true],
  ['a\\*b', 'a*b', true],
  ['a\\*b', 'ab', false],
  ['a?b', 'a☺b', true],
  ['a[^a]b', 'a☺b', true],
  ['a???b', 'a☺b', false],
  ['a[^a][^a][^a]b', 'a☺b', false],
  ['[a-ζ]*', 'α', true],
  ['*[a-ζ]', 'A', false],
  ['a?b', 'a/b', false],
  ['a*b', 'a/b', false],
  ['[\\]a]', ']', true],
  ['[\\-]', '-', true],
  ['[x\\-]', 'x', true],
  ['[x\\-]', '-', true],
  ['[x\\-]', 'z', false],
  ['[\\-x]', 'x', true],
  ['[\\-x]', '-', true],
  ['[\\-x]', 'a', false],
  ['[]a]', ']', BAD],
  ['[-]', '-', BAD],
  ['[x-]', 'x', BAD],
  ['[x-]', '-', BAD],
  ['[x-]', 'z', BAD],
  ['[-x]', 'x', BAD],
  ['[-x]', '-', BAD],
  ['[-x]', 'a', BAD],
  ['\\', 'a', BAD],
  ['[a-b-c]', 'a', BAD],
  ['[', 'a', BAD],
  ['[^', 'a', BAD],
  ['[^bc', 'a', BAD],
  ['a[', 'a', BAD],
  ['a[', 'ab', BAD],
  ['a[', 'x', BAD],
  ['a/b[', 'x', BAD],
  ['*x', 'xxx', true],
];

test("filepathMatch answers Go's match table", () => {
  for (const [pattern, name, want] of MATCH_TESTS) {
    if (want === BAD) assert.throws(() => filepathMatch(pattern, name), BadPatternError, `${pattern} ${name}`);
    else assert.equal(filepathMatch(pattern, name), want, `${pattern} ${name}`);
  }
});

test('a COPY wildcard segment with a malformed pattern matches nothing, as BuildKit ignores the error', () => {
  assert.equal(segmentMatcher('a[')('a['), false);
  assert.equal(segmentMatcher('*.txt')('b.txt'), true);
  assert.equal(segmentMatcher('[^a]*')('abc'), false);
});
