# The Dockerfile grammar (line level).
#
# Conventions:
# - Terminals are whole physical lines from grammar/lexer.ts (`%instr`, `%contStart`, …) plus the
#   token source's `%directives` block and `%heredoc` bodies; the grammar only decides how lines
#   group into instructions. Splitting an instruction's arguments happens in
#   src/parser/line-parsers.ts, called by the token source when a logical line ends.
# - Lists are built as cons cells (`{ head, tail }`) and flattened once by `flatten`, because
#   nearley's `:*` copies the array at every step (quadratic on long files) and mutating a shared
#   array is unsafe in an Earley parser, which also completes rules on dead-end paths.
# - The grammar is unambiguous: every token sequence has at most one parse (tests assert this).
# - The result is a `FileParse`: the directive token and the items (comments and instructions) in order.

@preprocessor typescript
@lexer tokenTypes

@{%
import type { DockerfileToken } from './lexer.js';

/** A cons list, newest first. */
export type Cons<T> = { readonly head: T; readonly tail: Cons<T> } | null;

/** One instruction: its line tokens and heredoc tokens. */
export interface InstructionItem {
  readonly kind: 'instruction';
  readonly lines: DockerfileToken[];
  readonly heredocs: DockerfileToken[];
}
/** A comment line (only between instructions; comments inside continuations are in `lines`). */
export interface CommentItem {
  readonly kind: 'comment';
  readonly token: DockerfileToken;
}
export type Item = InstructionItem | CommentItem;

/** What the grammar returns. */
export interface FileParse {
  readonly directives: DockerfileToken | null;
  readonly items: Item[];
}

/** Turns a cons list back into an array, oldest first. */
export function flatten<T>(list: Cons<T>): T[] {
  const out: T[] = [];
  for (let c = list; c; c = c.tail) out.push(c.head);
  return out.reverse();
}

// The real token source is passed to nearley.Parser at run time (one per escape token); the
// compiled grammar only needs `has` to treat `%name` as a token type.
const tokenTypes = { has: (_name: string): boolean => true };

const cons = <T>([tail, head]: [Cons<T>, T]): Cons<T> => ({ head, tail });
const nil = (): null => null;
const tok = (d: unknown[]): DockerfileToken => d[0] as DockerfileToken;
%}

file -> directives items {% ([directives, items]) => ({ directives, items: flatten(items).filter((x: Item | null) => x !== null) }) %}

directives -> null {% nil %}
  | %directives {% tok %}

items -> null {% nil %}
  | items item {% cons %}

item -> %blank {% nil %}
  | %comment {% ([token]) => ({ kind: 'comment', token }) %}
  | instruction {% ([i]) => i %}

instruction -> %instr heredocs {% ([first, h]) => ({ kind: 'instruction', lines: [first], heredocs: flatten(h) }) %}
  | %contStart contParts contEnd heredocs
    {% ([first, parts, end, h]) => {
      const lines = [first, ...flatten(parts)];
      if (end) lines.push(end);
      return { kind: 'instruction', lines, heredocs: flatten(h) };
    } %}

contParts -> null {% nil %}
  | contParts contPart {% cons %}

contPart -> %contMore {% tok %}
  | %contComment {% tok %}
  | %contBlank {% tok %}

# A continuation may run to the end of the file without a final line.
contEnd -> null {% nil %}
  | %contEnd {% tok %}

heredocs -> null {% nil %}
  | heredocs %heredoc {% cons %}
