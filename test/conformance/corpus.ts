/**
 * Conformance: the real-world corpus. Every `corpus/real-world/*.Dockerfile` must dump exactly
 * like `expected/<name>.result`, and match the details of `expected/<name>.json`.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDockerfile } from '../../src/parser/parse.js';
import { dumpAst } from '../../src/parser/dump.js';
import type { InstructionNode } from '../../src/parser/ast.js';
import { check as run, diff, newResult, type Checker, type SetResult } from './types.js';

interface ExpectedChild {
  value: string;
  flags: string[];
  attributes: Record<string, boolean>;
  start_line: number;
  end_line: number;
  heredocs: { name: string; file_descriptor: number; expand: boolean; chomp: boolean; content: string }[];
  prev_comment: string[];
}
interface Expected {
  escape_token: string;
  root_lines: [number, number];
  warnings: unknown[];
  children: ExpectedChild[];
}

function details(node: InstructionNode): ExpectedChild {
  return {
    value: node.keyword,
    flags: [...node.flags],
    attributes: node.json ? { json: true } : {},
    start_line: node.startLine,
    end_line: node.endLine,
    heredocs: node.heredocs.map((h) => ({ name: h.name, file_descriptor: h.fileDescriptor, expand: h.expand, chomp: h.chomp, content: h.content })),
    prev_comment: [...node.comments],
  };
}

export const check: Checker = async (root) => {
  const dir = join(root, 'corpus', 'real-world');
  if (!existsSync(dir)) return [];
  const result: SetResult = newResult('corpus/real-world');
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.Dockerfile')).sort()) {
    const id = name.slice(0, -'.Dockerfile'.length);
    run(result, id, () => {
      const text = readFileSync(join(dir, name), 'utf8');
      const ast = parseDockerfile(text, { file: name });
      const resultPath = join(dir, 'expected', `${id}.result`);
      if (existsSync(resultPath)) {
        const want = readFileSync(resultPath, 'utf8');
        const got = dumpAst(ast);
        if (got !== want) {
          const gl = got.split('\n');
          const wl = want.split('\n');
          const i = gl.findIndex((l, k) => l !== wl[k]);
          return `dump differs at line ${i + 1}: expected ${JSON.stringify(wl[i])}, got ${JSON.stringify(gl[i])}`;
        }
      }
      const jsonPath = join(dir, 'expected', `${id}.json`);
      if (!existsSync(jsonPath)) return undefined;
      const exp = JSON.parse(readFileSync(jsonPath, 'utf8')) as Expected;
      if (exp.escape_token !== ast.escapeToken) return `escape token: expected ${exp.escape_token}, got ${ast.escapeToken}`;
      const lines = diff([ast.startLine, ast.endLine], exp.root_lines);
      if (lines) return `root lines: ${lines}`;
      if (ast.warnings.length !== exp.warnings.length) return `warnings: expected ${exp.warnings.length}, got ${ast.warnings.length}`;
      if (exp.children.length !== ast.instructions.length) return `children: expected ${exp.children.length}, got ${ast.instructions.length}`;
      for (let i = 0; i < exp.children.length; i++) {
        const d = diff(details(ast.instructions[i]!), exp.children[i]);
        if (d) return `child ${i}: ${d}`;
      }
      return undefined;
    });
  }
  return [result];
};
