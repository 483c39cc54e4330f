/**
 * BuildKit's `Node.Dump()` output, byte for byte, for a {@link DockerfileAst}.
 */
import type { ArgNode, DockerfileAst, InstructionNode } from './ast.js';
import { goQuote, trimSpace } from './go-strings.js';

function dumpArg(arg: ArgNode): string {
  if (arg.children.length === 0) return goQuote(arg.value);
  let s = arg.value.toLowerCase();
  for (const child of arg.children) s += `(${dumpInstruction(child)})\n`;
  return trimSpace(s);
}

/** One instruction as `Node.Dump()` prints it (without the surrounding parentheses). */
export function dumpInstruction(node: InstructionNode): string {
  let s = node.keyword.toLowerCase();
  if (node.flags.length > 0) s += ` [${node.flags.map(goQuote).join(' ')}]`;
  for (const arg of node.args) s += ` ${dumpArg(arg)}`;
  return trimSpace(s);
}

/** BuildKit's `AST.Dump() + "\n"`: one `(instruction …)` line per instruction. */
export function dumpAst(ast: DockerfileAst): string {
  let s = '';
  for (const node of ast.instructions) s += `(${dumpInstruction(node)})\n`;
  return `${trimSpace(s)}\n`;
}
