import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import nearley from 'nearley';
import grammar, { flatten, type FileParse } from '../../grammar/dockerfile.generated.js';
import { DockerfileTokenSource } from '../../grammar/lexer.js';
import { parseDockerfile } from '../../src/parser/parse.js';
import { dumpAst } from '../../src/parser/dump.js';
import { goQuote } from '../../src/parser/go-strings.js';
import { DockerfileError, formatError } from '../../src/errors.js';
import { parseLine, parseWords } from '../../src/parser/line-parsers.js';

const fixtures = resolve(import.meta.dirname, '..', 'fixtures');
const update = process.env['UPDATE_FIXTURES'] === '1';

function dirs(path: string): string[] {
  return existsSync(path) ? readdirSync(path, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort() : [];
}

/** nearley's parses of a whole text with the grammar's `file` rule (fake heredoc detection). */
function parseWhole(text: string, escapeToken: '\\' | '`'): FileParse[] {
  const lexer = new DockerfileTokenSource({
    escapeToken,
    directivesEnd: 0,
    directiveLines: 0,
    onLogicalLine: (line) => ({ node: null, heredocs: line.includes('<<EOF') && !line.includes('[') ? [{ name: 'EOF', chomp: false }] : [] }),
  });
  const parser = new nearley.Parser(nearley.Grammar.fromCompiled(grammar), { lexer });
  parser.feed(text);
  return parser.results as FileParse[];
}

/** Counts nearley's parses of a text (must be exactly one: the grammar is unambiguous). */
function parseCount(text: string, escapeToken: '\\' | '`'): number {
  return parseWhole(text, escapeToken).length;
}

for (const name of dirs(join(fixtures, 'parser'))) {
  test(`fixture ${name} parses to its expected AST with exactly one parse`, () => {
    const dir = join(fixtures, 'parser', name);
    const text = readFileSync(join(dir, 'Dockerfile'), 'utf8');
    const ast = parseDockerfile(text);
    const actual = { dump: dumpAst(ast), ast };
    const expectedPath = join(dir, 'expected.json');
    if (update || !existsSync(expectedPath)) writeFileSync(expectedPath, `${JSON.stringify(actual, null, 2)}\n`);
    assert.deepEqual(JSON.parse(JSON.stringify(actual)), JSON.parse(readFileSync(expectedPath, 'utf8')));
    const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
    assert.equal(parseCount(body, ast.escapeToken), 1);
  });
}

for (const name of dirs(join(fixtures, 'parser-errors'))) {
  test(`fixture ${name} fails with its expected formatted error`, () => {
    const dir = join(fixtures, 'parser-errors', name);
    const text = readFileSync(join(dir, 'Dockerfile'), 'utf8');
    let err: unknown;
    try {
      parseDockerfile(text);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof DockerfileError, `expected a DockerfileError, got ${String(err)}`);
    const formatted = `${formatError(err, text)}\n`;
    const expectedPath = join(dir, 'expected.txt');
    if (update || !existsSync(expectedPath)) writeFileSync(expectedPath, formatted);
    assert.equal(formatted, readFileSync(expectedPath, 'utf8'));
  });
}

test('CRLF line ends parse exactly like LF line ends', () => {
  const lf = 'FROM a\nRUN x \\\n  y\n# c\nENV K=v\n';
  assert.equal(dumpAst(parseDockerfile(lf.replaceAll('\n', '\r\n'))), dumpAst(parseDockerfile(lf)));
});

test('a backtick escape directive makes backtick, not backslash, continue lines', () => {
  const ast = parseDockerfile('# escape=`\nFROM a\nRUN dir c:\\ `\n  /b\n');
  assert.equal(ast.escapeToken, '`');
  assert.equal(ast.instructions[1]!.args[0]!.value, 'dir c:\\   /b');
  assert.equal(ast.directives[0]!.name, 'escape');
});

test('instruction ranges cover continuation lines and heredoc bodies', () => {
  const ast = parseDockerfile('FROM a\nRUN <<EOF\nhi\nEOF\n');
  const run = ast.instructions[1]!;
  assert.deepEqual([run.startLine, run.endLine], [2, 4]);
  assert.deepEqual(run.range.start, { offset: 7, line: 2, column: 1 });
  assert.deepEqual(run.range.end, { offset: 23, line: 4, column: 4 });
});

test('a parse error names the file given in the options', () => {
  assert.throws(() => parseDockerfile('ENV X\n', { file: 'app.Dockerfile' }), (err: unknown) => {
    assert.ok(err instanceof DockerfileError);
    assert.equal(err.file, 'app.Dockerfile');
    assert.equal(err.message, 'ENV must have two arguments');
    assert.equal(err.range.start.line, 1);
    return true;
  });
});

test('an empty continuation line yields a warning at the end of the instruction', () => {
  const ast = parseDockerfile('FROM a\nRUN a \\\n\n  b\n');
  assert.equal(ast.warnings.length, 1);
  assert.equal(ast.warnings[0]!.short, 'Empty continuation line found in: RUN a   b');
  assert.equal(ast.warnings[0]!.range.start.line, 4);
});

test('goQuote escapes like Go strconv.Quote', () => {
  assert.equal(goQuote('echo "a\tb" é \u0001'), '"echo \\"a\\tb\\" é \\x01"');
  assert.equal(goQuote('\u00a0\u200b\u{1f600}\u{e0001}'), '"\\u00a0\\u200b\u{1f600}\\U000e0001"');
});

test('builder flags are taken off the front of every instruction, quotes removed', () => {
  const n = parseLine('RUN --mount="type=cache,target=/x" --network=none -- echo hi', '\\');
  assert.deepEqual(n.flags, ['--mount=type=cache,target=/x', '--network=none']);
  assert.deepEqual(n.values, ['echo hi']);
});

test('a line longer than 65535 bytes is rejected after the lines before it parse', () => {
  const text = `FROM a\nLABEL x=${'é'.repeat(40000)}\n`;
  assert.throws(() => parseDockerfile(text), /dockerfile line greater than max allowed size of 65535/);
});

test('a grammar parse of coarse tokens stays single for mixed input', () => {
  assert.equal(parseCount('# c\n\nFROM a\nRUN x \\\n# c\n\n y\nRUN <<EOF\nz\nEOF\nCMD ["a"]\n', '\\'), 1);
});

test('parsing one unit at a time finds the instructions a whole-file parse with the file rule finds', () => {
  const text = '# escape=\\\n# c\n\nFROM a AS b\nRUN x \\\n# c\n\n y\nRUN <<EOF\nz\nEOF\n  \n# d\nCMD ["a"]\nENV K=v';
  const ast = parseDockerfile(text);
  const body = text.slice(text.indexOf('\n') + 1);
  const [whole] = parseWhole(body, '\\');
  assert.ok(whole);
  const items = flatten(whole.items).filter((i) => i?.kind === 'instruction');
  // The whole-file parse ran without the directive block, so its lines are one lower.
  assert.deepEqual(items.map((i) => (i?.kind === 'instruction' ? i.line.line + 1 : 0)), ast.instructions.map((n) => n.startLine));
  assert.deepEqual(ast.instructions.map((n) => n.keyword), ['FROM', 'RUN', 'RUN', 'CMD', 'ENV']);
  assert.deepEqual(ast.instructions[3]!.comments, ['d']);
});

test('a file of many thousand instructions parses completely, in order', () => {
  const lines = Array.from({ length: 20000 }, (_, i) => `RUN echo ${i}`);
  const ast = parseDockerfile(`FROM a\n${lines.join('\n')}\n`);
  assert.equal(ast.instructions.length, 20001);
  assert.equal(ast.instructions[20000]!.args[0]!.value, 'echo 19999');
  assert.equal(ast.endLine, 20001);
});

test('ARG/ENV words keep their quotes and escapes, and a trailing escape token is dropped', () => {
  assert.deepEqual(parseWords('a "b c"  d\\ e', '\\'), ['a', '"b c"', 'd\\ e']);
  assert.deepEqual(parseWords("k='x y'z \"\" w\\", '\\'), ["k='x y'z", '""', 'w']);
  assert.deepEqual(parseWords('"unterminated \\', '\\'), ['"unterminated ']);
  assert.deepEqual(parseWords('é\u{1f600} `x` `', '`'), ['é\u{1f600}', '`x` ']);
});
