import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ShellLex, ShellWordError, envFromList } from '../../src/parser/shell-words.js';

const env = envFromList(['HOME=/root', 'EMPTY=', 'SPACED=a  b', 'FILE=archive.tar.gz', 'URL=http://example.com/x']);
const bs = new ShellLex('\\');
const bt = new ShellLex('`');

test('the backslash lexer expands plain, braced and defaulted variables', () => {
  assert.equal(bs.processWord('$HOME/bin:${HOME}:${UNSET:-def}:${EMPTY:-d}:${EMPTY-d}', env), '/root/bin:/root:def:d:');
  assert.equal(bs.processWord('${HOME:+set}${UNSET:+set}', env), 'set');
});

test('single quotes are literal and double quotes only expand variables', () => {
  assert.equal(bs.processWord(`'$HOME \\n'`, env), '$HOME \\n');
  assert.equal(bs.processWord('"$HOME \\$HOME \\n"', env), '/root $HOME \\n');
});

test('the backtick escape token escapes with ` and leaves backslashes alone', () => {
  assert.equal(bt.processWord('C:\\path\\`$HOME', env), 'C:\\path\\$HOME');
  assert.equal(bt.processWord('"a`"b"', env), 'a"b');
  assert.equal(bs.processWord('a`b', env), 'a`b');
});

test('processWords splits unquoted expansions but keeps quoted ones whole', () => {
  assert.deepEqual(bs.processWords('x $SPACED "$SPACED" y\\ z', env), ['x', 'a', 'b', 'a  b', 'y z']);
  assert.deepEqual(bs.processWords('  ""  ', env), []);
});

test('prefix and suffix trimming take the shortest or the longest glob match', () => {
  assert.equal(bs.processWord('${FILE#*.}|${FILE##*.}|${FILE%.*}|${FILE%%.*}', env), 'tar.gz|gz|archive.tar|archive');
  assert.equal(bs.processWord('${FILE#nomatch}', env), 'archive.tar.gz');
});

test('replacement substitutes the first or every longest match', () => {
  assert.equal(bs.processWord('${URL/\\//_}', env), 'http:_/example.com/x');
  assert.equal(bs.processWord('${URL//\\//_}', env), 'http:__example.com_x');
  assert.equal(bs.processWord('${URL/e*e/E}', env), 'http://E.com/x');
});

test('matched and unmatched names are reported for lint', () => {
  const r = bs.processWordWithMatches('${HOME} $EMPTY ${NOPE:-x} $1', env);
  assert.deepEqual([...r.matched].sort(), ['EMPTY', 'HOME']);
  assert.deepEqual([...r.unmatched].sort(), ['1', 'NOPE']);
});

test('skipUnsetEnv keeps references to unset variables for a later pass', () => {
  assert.equal(bs.processWord('$A ${B} ${C:-d} $HOME', env, { skipUnsetEnv: true }), '$A ${B} ${C:-d} /root');
});

test('rawQuotes and rawEscapes keep the quote and escape characters', () => {
  assert.equal(bs.processWord(`"a" 'b' \\c`, env, { rawQuotes: true, rawEscapes: true }), `"a" 'b' \\c`);
});

test('errors carry BuildKit wording with the input quoted', () => {
  assert.throws(() => bs.processWord("it's", env), {
    name: 'ShellWordError',
    message: `failed to process "it's": unexpected end of statement while looking for matching single-quote`,
  });
  assert.throws(() => bs.processWord('${A', env), { message: /syntax error: missing '}'$/ });
  assert.throws(() => bs.processWord('${}', env), { message: /syntax error: bad substitution$/ });
  assert.throws(() => bs.processWord('${A:=x}', env), { message: /unsupported modifier \(:=\) in substitution$/ });
  assert.throws(() => bs.processWord('${NOPE?must be set}', env), { message: /: NOPE: must be set$/ });
  assert.throws(() => bs.processWord('${EMPTY:?}', env), { message: /: EMPTY: is not allowed to be empty$/ });
  assert.throws(() => bs.processWord('${FILE#\\x}', env), { message: /invalid pattern \(\\x\) in substitution: invalid escape '\\x'$/ });
});

test('hostile input completes (no backtracking blowup, no stack overflow)', () => {
  const long = 'a'.repeat(5000);
  const e = new Map([['V', long]]);
  assert.equal(bs.processWord(`\${V%%${'*a'.repeat(30)}b}`, e), long);
  assert.equal(bs.processWord(`\${V//${'a*'.repeat(30)}b/x}`, e), long);
  assert.throws(() => bs.processWord('${A:-'.repeat(20000), env), ShellWordError);
  assert.equal(bs.processWord('"'.repeat(20000), env), '');
});

test('random input either expands or fails with a ShellWordError', () => {
  const alphabet = fc.constantFrom('$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', '"', "'", '*', 'a', 'H', ' ', '1', '@', '\n');
  fc.assert(
    fc.property(fc.array(alphabet, { maxLength: 40 }).map((a) => a.join('')), fc.boolean(), (input, backtick) => {
      const lex = backtick ? bt : bs;
      try {
        const r = lex.processWordWithMatches(input, env);
        return typeof r.result === 'string' && r.words.every((w) => w.length > 0);
      } catch (err) {
        return err instanceof ShellWordError;
      }
    }),
    { numRuns: 2000 },
  );
});
