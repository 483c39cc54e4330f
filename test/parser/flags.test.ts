import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BFlags, isTrue } from '../../src/parser/flags.js';

test('a string flag written without = is missing its value', () => {
  const bf = new BFlags(['--from']);
  bf.addString('from');
  assert.throws(() => bf.parse(), { message: 'missing a value on flag: --from' });
});

test('a boolean flag accepts a bare name, true and false in any case, and rejects other words', () => {
  const cases: [string, boolean][] = [['--link', true], ['--link=TRUE', true], ['--link=False', false]];
  for (const [arg, want] of cases) {
    const bf = new BFlags([arg]);
    const link = bf.addBool('link');
    bf.parse();
    assert.equal(isTrue(link), want, arg);
  }
  const bad = new BFlags(['--link=yes']);
  bad.addBool('link');
  assert.throws(() => bad.parse(), { message: 'expecting boolean value for flag --link, not: yes' });
  const empty = new BFlags(['--link=']);
  empty.addBool('link');
  assert.throws(() => empty.parse(), { message: 'missing a value on flag: --link' });
});

test('an unknown flag is an error that suggests the closest declared flag', () => {
  const bf = new BFlags(['--mont=type=tmpfs,target=/t']);
  bf.addStrings('mount');
  bf.addString('network');
  assert.throws(() => bf.parse(), { message: 'unknown flag: --mont (did you mean mount?)' });
  const far = new BFlags(['--zzzzzzzz']);
  far.addStrings('mount');
  assert.throws(() => far.parse(), { message: 'unknown flag: --zzzzzzzz' });
});

test('a bare -- ends the flags, so later words are not parsed', () => {
  const bf = new BFlags(['--from=a', '--', '--bogus']);
  const from = bf.addString('from');
  bf.parse();
  assert.equal(from.value, 'a');
  assert.deepEqual(bf.used(), ['from']);
});

test('a repeatable flag collects every value while a plain flag may appear only once', () => {
  const bf = new BFlags(['--exclude=a', '--exclude=*.md']);
  const exclude = bf.addStrings('exclude');
  bf.parse();
  assert.deepEqual(exclude.values, ['a', '*.md']);
  const dup = new BFlags(['--from=a', '--from=b']);
  dup.addString('from');
  assert.throws(() => dup.parse(), { message: 'duplicate flag specified: --from' });
});

test('flags left out keep their defaults and are not reported as used', () => {
  const bf = new BFlags(['--chmod=755']);
  const chown = bf.addString('chown', 'root');
  bf.addString('chmod');
  bf.parse();
  assert.equal(chown.value, 'root');
  assert.equal(bf.isUsed('chown'), false);
  assert.equal(bf.isUsed('chmod'), true);
});

test('declaring the same flag twice is a programming error', () => {
  const bf = new BFlags([]);
  bf.addString('from');
  assert.throws(() => bf.addBool('from'), { message: 'Duplicate flag defined: from' });
});
