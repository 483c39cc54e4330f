/**
 * BuildKit's `Node.Dump()` output, byte for byte, for a {@link DockerfileAst}.
 */
import type { ArgNode, DockerfileAst, InstructionNode } from './ast.js';
import { trimSpace } from './line-parsers.js';

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;
const SIMPLE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * Go's `strconv.Quote`: printable runes raw, `\a \b \f \n \r \t \v`, `\xNN` for other
 * controls, `\uNNNN`/`\UNNNNNNNN` for other non-printable runes.
 */
export function goQuote(s: string): string {
  if (SIMPLE.test(s)) return `"${s}"`;
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c >= 0x20 && c < 0x7f) out += ch;
    else if (c < 0x20 || c === 0x7f) {
      switch (c) {
        case 7: out += '\\a'; break;
        case 8: out += '\\b'; break;
        case 9: out += '\\t'; break;
        case 10: out += '\\n'; break;
        case 11: out += '\\v'; break;
        case 12: out += '\\f'; break;
        case 13: out += '\\r'; break;
        default: out += `\\x${c.toString(16).padStart(2, '0')}`;
      }
    } else if (c >= 0xd800 && c <= 0xdfff) out += '\ufffd'; // a lone surrogate: Go would hold U+FFFD
    else if (PRINTABLE.test(ch)) out += ch;
    else if (c <= 0xffff) out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += `\\U${c.toString(16).padStart(8, '0')}`;
  }
  return `${out}"`;
}

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
