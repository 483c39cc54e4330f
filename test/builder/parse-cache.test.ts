import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseWithCache } from '../../src/builder/parse-cache.js';
import { parse } from '../../src/parser/index.js';
import { DockerfileError } from '../../src/errors.js';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const shared = process.env.KILN_SHARED ?? path.resolve(repoRoot, '..', 'shared');

function direct(text: string, file: string): object {
  const df = parse(text, { file });
  return { instructions: df.instructions, directives: df.directives, escapeToken: df.escapeToken, warnings: df.warnings };
}

const corpus = path.join(shared, 'corpus', 'real-world');
// Like the conformance sets (scripts/run-tests.mjs): skipped without ../shared, except in CI, which has it.
const noCorpus = !existsSync(corpus) && process.env['CI'] !== 'true' ? `no corpus at ${corpus} (set KILN_SHARED)` : false;

test('a Dockerfile read back from the parse cache equals a fresh parse, for every real-world Dockerfile that parses', { skip: noCorpus }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-parse-cache-'));
  try {
    const files = readdirSync(corpus).filter((f) => f.endsWith('.Dockerfile'));
    assert.ok(files.length > 50, `corpus at ${corpus}`);
    let parsed = 0;
    for (const name of files) {
      const text = readFileSync(path.join(corpus, name), 'utf8');
      let expected: object;
      try {
        expected = direct(text, name);
      } catch {
        continue; // a file the parser rejects is covered by the next test
      }
      parsed++;
      assert.deepEqual(await parseWithCache(text, name, dir), expected, `${name} (first parse)`);
      assert.deepEqual(await parseWithCache(text, name, dir), expected, `${name} (from the cache)`);
    }
    // Every successful parse was stored: the cache is not silently bypassed.
    assert.equal(readdirSync(dir).filter((f) => f.endsWith('.json')).length, parsed);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a second parse of the same text and file name reads the stored entry instead of parsing', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-parse-cache-'));
  try {
    const text = 'FROM busybox\nRUN echo one\n';
    await parseWithCache(text, 'Dockerfile', dir);
    const [entry] = readdirSync(dir);
    assert.ok(entry);
    // Alter the stored entry: the next call must return what is stored, proving the parser was not run.
    const stored = JSON.parse(readFileSync(path.join(dir, entry), 'utf8')) as { instructions: Array<{ source: string }> };
    stored.instructions[1]!.source = 'RUN echo altered';
    writeFileSync(path.join(dir, entry), JSON.stringify(stored));
    const again = await parseWithCache(text, 'Dockerfile', dir);
    assert.equal(again.instructions[1]?.source, 'RUN echo altered');
    // Another file name is another entry (names appear in ranges and errors).
    const other = await parseWithCache(text, 'other.Dockerfile', dir);
    assert.equal(other.instructions[1]?.source, 'RUN echo one');
    assert.equal(readdirSync(dir).length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a Dockerfile with a syntax error throws the parser error every time and stores nothing', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-parse-cache-'));
  try {
    const text = 'FROM busybox\nCPOY a b\n';
    for (let i = 0; i < 2; i++) {
      await assert.rejects(parseWithCache(text, 'Dockerfile', dir), (err: unknown) => {
        assert.ok(err instanceof DockerfileError);
        assert.equal(err.range.start.line, 2);
        return true;
      });
    }
    assert.deepEqual(readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile()), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
