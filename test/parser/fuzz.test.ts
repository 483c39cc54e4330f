import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseDockerfile } from '../../src/parser/parse.js';
import { dumpAst } from '../../src/parser/dump.js';
import { DockerfileError } from '../../src/errors.js';

function parsesOrFailsCleanly(text: string): void {
  try {
    const ast = parseDockerfile(text);
    assert.equal(typeof dumpAst(ast), 'string');
  } catch (err) {
    assert.ok(err instanceof DockerfileError, `threw ${String(err)}`);
    assert.ok(err.range.start.line >= 0 && err.range.end.offset >= err.range.start.offset);
  }
}

const piece = fc.constantFrom(
  'FROM alpine', 'RUN echo hi', 'RUN a \\', 'RUN a `', '# comment', '#', '', '   ', '\t', 'EOF', '<<EOF', 'RUN <<EOF cat',
  'COPY <<-A <<B /d', 'A', '\tA', 'B', 'ENV A', 'ENV A=1 B', 'LABEL "x y"=z', 'CMD ["a", 1]', 'CMD ["a"', 'ONBUILD RUN <<EOF',
  'HEALTHCHECK --interval=5s CMD ["x"]', '# escape=`', '# escape=\\', '# syntax=x', '\\', '`', 'RUN --mount="a b" x', '\r', '\ufeff',
  'ARG X="unterminated', 'RUN <<"EOF', 'RUN <<\'E\'F',
);

test('arbitrary strings either parse or throw a DockerfileError with a range', () => {
  fc.assert(fc.property(fc.string({ maxLength: 200, unit: 'binary' }), parsesOrFailsCleanly), { numRuns: 400 });
});

test('Dockerfile-like inputs either parse or throw a DockerfileError with a range', () => {
  const doc = fc.array(fc.oneof(piece, fc.string({ maxLength: 20 })), { maxLength: 30 }).map((lines) => lines.join('\n'));
  const eol = fc.constantFrom('\n', '\r\n');
  fc.assert(fc.property(doc, eol, (text, nl) => parsesOrFailsCleanly(text.replaceAll('\n', nl))), { numRuns: 600 });
});
