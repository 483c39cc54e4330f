/**
 * Conformance: BuildKit's parser tests (conformance/parser). One set per case table and per
 * test directory; iterates over whatever cases are present.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDockerfile } from '../../src/parser/parse.js';
import { dumpAst } from '../../src/parser/dump.js';
import { DirectiveParser, parseDirective } from '../../src/parser/directives.js';
import { chompHeredocContent, heredocsFromLine, parseHeredoc } from '../../src/parser/heredoc.js';
import { parseJsonArray, parseNameVal, parseWords } from '../../src/parser/line-parsers.js';
import { DockerfileError } from '../../src/errors.js';
import type { DockerfileAst } from '../../src/parser/ast.js';
import { check as run, diff, newResult, type Checker, type SetResult } from './types.js';

type Case = Record<string, unknown> & { id: string };

function heredocsOf(ast: DockerfileAst): unknown[] {
  return ast.instructions.map((n) =>
    n.heredocs.length === 0
      ? null
      : n.heredocs.map((h) => ({ name: h.name, file_descriptor: h.fileDescriptor, expand: h.expand, chomp: h.chomp, content: h.content })),
  );
}

function expectError(fn: () => unknown, message?: string): string | undefined {
  try {
    fn();
  } catch (err) {
    if (message !== undefined && !(err instanceof Error && err.message === message)) return `expected error ${JSON.stringify(message)}, got ${String(err)}`;
    return undefined;
  }
  return 'expected an error, got none';
}

function parseOk(text: string): DockerfileAst {
  return parseDockerfile(text);
}

/** Per-table checks: returns a message on mismatch. */
const TABLES: Record<string, (c: Case, dir: string) => string | undefined> = {
  directives: (c) => {
    const e = c['expected'] as Record<string, unknown>;
    const input = c['input'] as string;
    if (c['op'] === 'DirectiveParser.ParseAll') {
      const got = new DirectiveParser().parseAll(input).map((d) => [d.name, d.value]);
      return diff(got, e['directives']);
    }
    const key = c['op'] === 'DetectSyntax' ? 'syntax' : (c['key'] as string);
    const d = parseDirective(key, input);
    const got: Record<string, unknown> = { ok: d !== undefined, ref: d?.ref ?? '', cmdline: d?.cmdline ?? '', line: d ? [d.line, d.line] : null };
    for (const k of Object.keys(e)) {
      const m = diff(got[k], e[k]);
      if (m) return `${k}: ${m}`;
    }
    return undefined;
  },
  heredoc_chomp: (c) => diff(chompHeredocContent(c['input'] as string), c['expected']),
  heredoc_extract: (c) => {
    const ast = parseOk(c['dockerfile'] as string);
    const h = diff(heredocsOf(ast), c['expected_children_heredocs']);
    if (h) return h;
    return c['expected_dump'] === undefined ? undefined : diff(dumpAst(ast), c['expected_dump']);
  },
  heredoc_json_form: (c) => diff(heredocsOf(parseOk(c['dockerfile'] as string)), c['expected_children_heredocs']),
  heredoc_parse: (c) => {
    if (c['expected_error']) return expectError(() => parseHeredoc(c['input'] as string));
    const h = parseHeredoc(c['input'] as string);
    const e = c['expected'] as Record<string, unknown> | null;
    if (e === null) return h === undefined ? undefined : `expected no heredoc, got ${JSON.stringify(h)}`;
    if (!h) return 'expected a heredoc, got none';
    const got: Record<string, unknown> = { name: h.name, file_descriptor: h.fileDescriptor, expand: h.expand, chomp: h.chomp };
    for (const k of Object.keys(e)) {
      const m = diff(got[k], e[k]);
      if (m) return `${k}: ${m}`;
    }
    return undefined;
  },
  heredocs_from_line: (c) => diff(heredocsFromLine(c['input'] as string).map((h) => h.name), c['expected_names']),
  json_arrays: (c) => {
    if (c['expected_error'] !== undefined) return expectError(() => parseJsonArray(c['input'] as string), c['expected_error'] as string);
    return diff(parseJsonArray(c['input'] as string), c['expected']);
  },
  line_numbers: (c, dir) => {
    const file = c['dockerfile_file'] as string | undefined;
    const text = file && existsSync(join(dir, file)) ? readFileSync(join(dir, file), 'utf8') : (c['dockerfile'] as string);
    const ast = parseOk(text);
    const e = c['expected'] as { root_start_line: number; root_end_line: number; children: number[][] };
    return diff(
      { root_start_line: ast.startLine, root_end_line: ast.endLine, children: ast.instructions.map((n) => [n.startLine, n.endLine]) },
      { root_start_line: e.root_start_line, root_end_line: e.root_end_line, children: e.children },
    );
  },
  name_val: (c) => diff(parseNameVal(c['input'] as string, c['key'] as string, '\0'), c['expected_values']),
  parse_words: (c) => diff(parseWords(c['input'] as string, '\\'), c['expected']),
  scanner_error: (c) => {
    let text = c['dockerfile_template'] as string;
    for (const [k, v] of Object.entries(c)) {
      if (v && typeof v === 'object' && 'repeat' in v && 'count' in v) {
        const r = v as { repeat: string; count: number };
        text = text.replace(`{${k}}`, r.repeat.repeat(r.count));
      }
    }
    return expectError(() => parseDockerfile(text), c['expected_error'] as string);
  },
  warnings: (c) => {
    const ast = parseOk(c['dockerfile'] as string);
    const shorts = ast.warnings.map((w) => w.short);
    const count = diff(shorts.length, c['expected_warning_count']);
    if (count) return `warning count: ${count}`;
    const contains = c['expected_contains'] as string[][] | undefined;
    for (const [i, subs] of (contains ?? []).entries()) {
      for (const s of subs) if (!shorts[i]?.includes(s)) return `warning ${i} does not contain ${JSON.stringify(s)}: ${JSON.stringify(shorts[i])}`;
    }
    if (c['expected_warnings_short_exact'] !== undefined) {
      const m = diff(shorts, c['expected_warnings_short_exact']);
      if (m) return m;
    }
    return c['expected_dump'] === undefined ? undefined : diff(dumpAst(ast), c['expected_dump']);
  },
};

function caseDirs(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort() : [];
}

export const check: Checker = async (root) => {
  const dir = join(root, 'conformance', 'parser');
  if (!existsSync(dir)) return [];
  const results: SetResult[] = [];

  const files = join(dir, 'testfiles');
  if (existsSync(files)) {
    const r = newResult('parser/testfiles');
    for (const name of caseDirs(files)) {
      run(r, name, () => {
        const got = dumpAst(parseDockerfile(readFileSync(join(files, name, 'Dockerfile'), 'utf8')));
        // Upstream normalises CRLF in `result` on Windows only; the files here are LF.
        const want = readFileSync(join(files, name, 'result'), 'utf8');
        return got === want ? undefined : `dump differs: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
      });
    }
    results.push(r);
  }

  const negative = join(dir, 'testfiles-negative');
  if (existsSync(negative)) {
    const r = newResult('parser/testfiles-negative');
    for (const name of caseDirs(negative)) {
      run(r, name, () => {
        try {
          parseDockerfile(readFileSync(join(negative, name, 'Dockerfile'), 'utf8'));
        } catch (err) {
          if (err instanceof DockerfileError && err.range.start.line >= 0) return undefined;
          return `threw something other than a DockerfileError: ${String(err)}`;
        }
        return 'parsed without error';
      });
    }
    results.push(r);
  }

  const cases = join(dir, 'cases');
  if (existsSync(cases)) {
    for (const file of readdirSync(cases).filter((f) => f.endsWith('.json')).sort()) {
      const table = file.slice(0, -5);
      const r = newResult(`parser/${table}`);
      const fn = TABLES[table];
      const data = JSON.parse(readFileSync(join(cases, file), 'utf8')) as { cases: Case[] };
      for (const c of data.cases) {
        if (!fn) {
          r.skipped++;
          continue;
        }
        run(r, c.id, () => fn(c, dir));
      }
      if (!fn) r.skipReasons.push(`no checker for table ${table}`);
      results.push(r);
    }
  }
  return results;
};
