/**
 * Conformance checker for `conformance/instructions/cases/*.json`: BuildKit's instruction layer
 * (typed instructions, flags, mounts, devices, ports, heredocs, stage graph errors).
 * One SetResult per table, named `instructions/<table>`.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerfileError } from '../../src/errors.js';
import type { ArgNode, DockerfileAst, InstructionNode } from '../../src/parser/ast.js';
import { BFlags, isTrue, type Flag } from '../../src/parser/flags.js';
import {
  handleJsonArgs, parseDevice, parseOptInterval, toInstruction, toInstructions, type Instruction,
} from '../../src/parser/instructions.js';
import { parsePort, parsePorts } from '../../src/parser/ports.js';
import { resolveStages } from '../../src/builder/stages.js';
import { check as runCase, diff, newResult, type Checker, type SetResult } from './types.js';

type Json = Record<string, unknown>;
type ParseFn = (text: string, options?: { file?: string }) => DockerfileAst;

/** The parser is written in parallel; load it lazily so the other tables run without it. */
async function loadParser(): Promise<ParseFn | undefined> {
  try {
    const mod = (await import('../../src/parser/parse.js')) as { parseDockerfile?: ParseFn };
    return mod.parseDockerfile;
  } catch {
    return undefined;
  }
}

function errorOf(fn: () => unknown): Error | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

/** Compares a thrown error (or its absence) against the `expected_error*` fields of a case. */
function expectError(c: Json, err: Error | undefined): string | undefined {
  const exact = c['expected_error'];
  const contains = c['expected_error_contains'];
  const all = c['expected_error_contains_all'];
  const any = c['expected_error_any'] === true;
  if (exact === undefined && contains === undefined && all === undefined && !any) {
    return err === undefined ? undefined : `unexpected error: ${err.message}`;
  }
  if (err === undefined) return 'expected an error, got none';
  if (typeof exact === 'string' && err.message !== exact) return `expected error ${JSON.stringify(exact)}, got ${JSON.stringify(err.message)}`;
  if (typeof contains === 'string' && !err.message.includes(contains)) {
    return `expected error containing ${JSON.stringify(contains)}, got ${JSON.stringify(err.message)}`;
  }
  if (Array.isArray(all)) {
    const missing = all.filter((s) => typeof s === 'string' && !err.message.includes(s));
    if (missing.length > 0) return `error ${JSON.stringify(err.message)} lacks ${JSON.stringify(missing)}`;
  }
  return undefined;
}

const hasErrorExpectation = (c: Json): boolean =>
  ['expected_error', 'expected_error_contains', 'expected_error_contains_all', 'expected_error_any'].some((k) => c[k] !== undefined);

const zero = { offset: 0, line: 1, column: 1 };

/** A hand-built node as in BuildKit's unit tests: `value` is the keyword, `next_values` the Next chain. */
function nodeFromCase(node: Json): InstructionNode {
  const values = (node['next_values'] as string[] | undefined) ?? [];
  const args: ArgNode[] = values.map((value) => ({ value, children: [] }));
  return {
    keyword: String(node['value'] ?? ''), flags: (node['flags'] as string[] | undefined) ?? [], args,
    json: node['json'] === true, heredocs: [], original: String(node['original'] ?? ''),
    startLine: 1, endLine: 1, range: { start: zero, end: zero }, comments: [],
  };
}

function flagValue(f: Flag): unknown {
  if (f.type === 'bool') return isTrue(f);
  if (f.type === 'strings') return f.values;
  return f.value;
}

/** The lines an error (or a failing step) reports: one entry per line of its range. */
function rangeLines(range: { start: { line: number; column: number }; end: { line: number; column: number } }): number[] {
  const last = range.end.line > range.start.line && range.end.column === 1 ? range.end.line - 1 : range.end.line;
  const out: number[] = [];
  for (let l = range.start.line; l <= Math.max(range.start.line, last); l++) out.push(l);
  return out;
}

type Handler = (c: Json, parse: ParseFn | undefined, result: SetResult) => string | undefined;

function needParser(parse: ParseFn | undefined): ParseFn {
  if (parse === undefined) throw new Error('src/parser/parse.ts (parseDockerfile) is not available');
  return parse;
}

function firstInstruction(parse: ParseFn | undefined, text: string): Instruction {
  const ast = needParser(parse)(text, { file: 'Dockerfile' });
  const node = ast.instructions[0];
  if (node === undefined) throw new Error('the Dockerfile has no instruction');
  return toInstruction(node);
}

const handlers: Record<string, Handler> = {
  ast_node_cases: (c) => expectError(c, errorOf(() => toInstruction(nodeFromCase(c['node'] as Json)))),

  builder_flags: (c) => {
    const bf = new BFlags((c['args'] as string[] | undefined) ?? []);
    const declared = new Map<string, Flag>();
    for (const [type, name, def] of (c['declare'] as [string, string, unknown][] | undefined) ?? []) {
      if (type === 'string') declared.set(name, bf.addString(name, String(def ?? '')));
      else if (type === 'bool') declared.set(name, bf.addBool(name, def === true));
      else if (type === 'strings') declared.set(name, bf.addStrings(name));
      else return `unknown flag type ${type}`;
    }
    const expected = c['expected'] as Json;
    const err = errorOf(() => bf.parse());
    if (expected['ok'] === false) return err === undefined ? 'expected a parse error' : undefined;
    if (err !== undefined) return `unexpected error: ${err.message}`;
    const values = expected['values'] as Json | undefined;
    if (values !== undefined) {
      const got: Json = {};
      for (const k of Object.keys(values)) { const f = declared.get(k); got[k] = f === undefined ? undefined : flagValue(f); }
      const d = diff(got, values);
      if (d !== undefined) return `values: ${d}`;
    }
    const used = expected['used'] as Json | undefined;
    if (used !== undefined) {
      const got: Json = {};
      for (const k of Object.keys(used)) got[k] = bf.isUsed(k);
      const d = diff(got, used);
      if (d !== undefined) return `used: ${d}`;
    }
    if (expected['used_sorted'] !== undefined) {
      const d = diff([...bf.used()].sort(), expected['used_sorted']);
      if (d !== undefined) return `used_sorted: ${d}`;
    }
    return undefined;
  },

  comments_detection: (c, parse) => {
    const ast = needParser(parse)(String(c['dockerfile']), { file: 'Dockerfile' });
    const graph = resolveStages({ file: 'Dockerfile', instructions: toInstructions(ast, 'Dockerfile'), escapeToken: ast.escapeToken });
    const problems: string[] = [];
    for (const [path, want] of Object.entries(c['expected'] as Json)) {
      let got: unknown;
      let m: RegExpExecArray | null;
      if ((m = /^stages\[(\d+)\]\.DocComment$/.exec(path))) got = graph.stages[Number(m[1])]?.from.docComment;
      else if ((m = /^meta_args\[(\d+)\]\.Args\[(\d+)\]$/.exec(path))) {
        const a = graph.metaArgs[Number(m[1])]?.args[Number(m[2])];
        got = a && { Key: a.key, DocComment: a.docComment };
      } else if ((m = /^stages\[(\d+)\]\.Commands\[(\d+)\]\.Args\[(\d+)\]$/.exec(path))) {
        const ins = graph.stages[Number(m[1])]?.instructions[Number(m[2])];
        const a = ins?.kind === 'arg' ? ins.args[Number(m[3])] : undefined;
        got = a && { Key: a.key, DocComment: a.docComment };
      } else {
        problems.push(`unsupported path ${path}`);
        continue;
      }
      const d = diff(got, want);
      if (d !== undefined) problems.push(`${path}: ${d}`);
    }
    return problems.length > 0 ? problems.join('; ') : undefined;
  },

  copy_heredoc: (c, parse) => {
    let ins: Instruction | undefined;
    const err = errorOf(() => { ins = firstInstruction(parse, String(c['dockerfile'])); });
    if (hasErrorExpectation(c) || err !== undefined) return expectError(c, err);
    if (ins?.kind !== 'copy' && ins?.kind !== 'add') return `expected COPY, got ${ins?.kind}`;
    return diff(
      {
        dest: ins.dest,
        source_paths: ins.sources.length > 0 ? ins.sources : null,
        source_contents: ins.contents.length > 0 ? ins.contents.map((s) => ({ path: s.path, data: s.data, expand: s.expand })) : null,
      },
      c['expected'],
    );
  },

  dockerfile2llb_errors: (c, parse) => {
    const err = errorOf(() => {
      const ast = needParser(parse)(String(c['dockerfile']), { file: 'Dockerfile' });
      const instructions = toInstructions(ast, 'Dockerfile');
      const target = c['target'];
      resolveStages({ file: 'Dockerfile', instructions, escapeToken: ast.escapeToken }, typeof target === 'string' ? { target } : {});
    });
    return expectError(c, err);
  },

  expose_ports: (c) => {
    let got: string[] | undefined;
    const input = c['input'];
    const err = errorOf(() => {
      got = c['op'] === 'parsePorts' ? parsePorts(input as string[]) : parsePort(String(input));
    });
    if (hasErrorExpectation(c) || err !== undefined) return expectError(c, err);
    return diff(got, c['expected']);
  },

  handle_json_args: (c) => {
    const attrs = c['attributes'] as Json | null;
    return diff(handleJsonArgs(c['args'] as string[], attrs?.['json'] === true), c['expected']);
  },

  healthcheck_interval: (c) => expectError(c, errorOf(() => parseOptInterval('interval', String(c['value'])))),

  parse_errors: (c, parse) => {
    const p = needParser(parse);
    let ast: DockerfileAst;
    try {
      ast = p(String(c['dockerfile']), { file: 'Dockerfile' });
    } catch (err) {
      return `the parser must accept the Dockerfile, but: ${err instanceof Error ? err.message : String(err)}`;
    }
    const node = ast.instructions[0];
    if (node === undefined) return 'the Dockerfile has no instruction';
    return expectError(c, errorOf(() => toInstruction(node)));
  },

  run_device: (c) => {
    let got: unknown;
    const err = errorOf(() => { got = parseDevice(String(c['input'])); });
    if (hasErrorExpectation(c) || err !== undefined) return expectError(c, err);
    return diff(got, c['expected']);
  },

  run_flags_used: (c, parse) => {
    const ins = firstInstruction(parse, String(c['dockerfile']));
    if (ins.kind !== 'run') return `expected RUN, got ${ins.kind}`;
    return diff({ flags_used: ins.flagsUsed }, c['expected']);
  },

  run_heredoc: (c, parse) => {
    let ins: Instruction | undefined;
    const err = errorOf(() => { ins = firstInstruction(parse, String(c['dockerfile'])); });
    if (hasErrorExpectation(c) || err !== undefined) return expectError(c, err);
    if (ins?.kind !== 'run') return `expected RUN, got ${ins?.kind}`;
    const cmd = ins.command;
    return diff(
      {
        prepend_shell: cmd.form === 'shell',
        cmd_line: cmd.form === 'shell' ? [cmd.script] : cmd.argv,
        files: ins.heredocs.length > 0 ? ins.heredocs.map((h) => ({ name: h.name, data: h.data, chomp: h.chomp })) : null,
      },
      c['expected'],
    );
  },
};

/**
 * `error_source_lines`: a failing build reports the Dockerfile lines of what failed. Every case is
 * checked the same way, by a real kiln build (parse, stages, and the steps themselves, in runc) in a
 * throwaway store and an empty context: the error's range must cover exactly the expected lines.
 */
async function checkSourceMaps(cases: readonly Json[], result: SetResult): Promise<void> {
  const { build } = await import('../../src/builder/build.js');
  const { StepFailedError } = await import('../../src/errors.js');
  const work = mkdtempSync(join(tmpdir(), 'kiln-srcmap-'));
  try {
    mkdirSync(join(work, 'context'));
    for (const c of cases) {
      let problem: string | undefined;
      try {
        await build({ dockerfileText: String(c['dockerfile']), context: join(work, 'context'), root: join(work, 'store'), sourceDateEpoch: 0 });
        problem = 'the build succeeded; expected it to fail';
      } catch (err) {
        if (err instanceof DockerfileError || err instanceof StepFailedError) problem = diff(rangeLines(err.range), c['expected_error_lines']);
        else problem = `expected an error with a source location, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
      }
      if (problem === undefined) result.passed++;
      else {
        result.failed++;
        result.failures.push(`${String(c['id'])} (${String(c['name'])}): ${problem}`);
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export const check: Checker = async (root) => {
  const dir = join(root, 'conformance', 'instructions', 'cases');
  if (!existsSync(dir)) return [];
  const parse = await loadParser();
  const results: SetResult[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const table = file.slice(0, -'.json'.length);
    const result = newResult(`instructions/${table}`);
    results.push(result);
    const data = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { cases?: Json[] };
    if (table === 'error_source_lines') {
      await checkSourceMaps(data.cases ?? [], result);
      continue;
    }
    const handler = handlers[table];
    for (const c of data.cases ?? []) {
      const id = String(c['id']);
      if (handler === undefined) {
        result.skipped++;
        if (result.skipReasons.length === 0) result.skipReasons.push(`no checker for table ${table}`);
        continue;
      }
      // A handler returns 'SKIP' after counting the case as skipped itself.
      let skipped = false;
      runCase(result, id, () => {
        const r = handler(c, parse, result);
        if (r === 'SKIP') { skipped = true; return undefined; }
        return r;
      });
      if (skipped) result.passed--;
    }
  }
  return results;
};
