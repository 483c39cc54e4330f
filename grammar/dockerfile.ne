# The Dockerfile grammar (line level).
#
# Conventions:
# - Terminals are coarse line-level tokens from grammar/lexer.ts: `%trivia` (blank/comment lines),
#   `%instr` (one-line instruction), `%contInstr` (instruction with continuation lines), plus the
#   token source's `%directives` block and `%heredoc` bodies; the grammar groups an instruction
#   with the heredoc bodies that follow it. Splitting an instruction's arguments happens in
#   src/parser/line-parsers.ts, called by the token source when a logical line ends.
# - Lists are built as cons cells (`{ head, tail }`) and flattened once by `flatten`, because
#   nearley's `:*` copies the array at every step (quadratic on long files) and mutating a shared
#   array is unsafe in an Earley parser, which also completes rules on dead-end paths.
# - The grammar is unambiguous: every token sequence has at most one parse (tests assert this).
# - The result is a `FileParse`: the directive token and the items (trivia and instructions) as a cons list.
# - `file` is the whole syntax. `parseDockerfile` does not feed the whole file to one parser, though:
#   an Earley parser keeps a chain of states through every column it read, so one parse of a big
#   file holds O(file) live objects until the end (GC time grew faster than the input). Since
#   `file` is `directives? item*` and no item spans another, it parses one top-level `unit` at a
#   time, each with the same rules and a fresh table, which keeps the live state to one item.

@preprocessor typescript
@lexer tokenTypes

@{%
import type { DockerfileToken } from './lexer.js';

/** A cons list, newest first. */
export type Cons<T> = { readonly head: T; readonly tail: Cons<T> } | null;

/** One instruction: its line token and heredoc tokens. */
export interface InstructionItem {
  readonly kind: 'instruction';
  readonly line: DockerfileToken;
  readonly heredocs: DockerfileToken[];
}
/** Blank and comment lines between instructions (comments inside continuations are in `line`). */
export interface TriviaItem {
  readonly kind: 'trivia';
  readonly token: DockerfileToken;
}
export type Item = InstructionItem | TriviaItem;

/** What the grammar returns. */
export interface FileParse {
  readonly directives: DockerfileToken | null;
  /** Newest first; `flatten` it. */
  readonly items: Cons<Item | null>;
}

/** Turns a cons list back into an array, oldest first. */
export function flatten<T>(list: Cons<T>): T[] {
  const out: T[] = [];
  for (let c = list; c; c = c.tail) out.push(c.head);
  return out.reverse();
}

// The real token source is passed to nearley.Parser at run time (one per escape token); the
// compiled grammar only needs `has` to treat `%name` as a token type.
const tokenTypes = {
  has: (_name: string): boolean => true,
  reset: (): void => undefined,
  next: (): undefined => undefined,
  save: (): unknown => undefined,
  formatError: (): string => '',
};

const cons = (d: unknown[]): Cons<unknown> => ({ head: d[1], tail: d[0] as Cons<unknown> });
const nil = (): null => null;
const tok = (d: unknown[]): DockerfileToken => d[0] as DockerfileToken;
%}

# `file` completes after every item (Earley), so it must do O(1) work: the caller flattens `items`.
file -> directives items {% ([directives, items]) => ({ directives, items }) %}

# What `parseDockerfile` parses at a time: the directive block, or one item.
unit -> %directives {% tok %}
  | item {% ([i]) => i %}

directives -> null {% nil %}
  | %directives {% tok %}

items -> null {% nil %}
  | items item {% cons %}

item -> %trivia {% ([token]) => ({ kind: 'trivia', token }) %}
  | instruction {% ([i]) => i %}

instruction -> %instr heredocs {% ([line, h]) => ({ kind: 'instruction', line, heredocs: flatten(h) }) %}
  | %contInstr heredocs {% ([line, h]) => ({ kind: 'instruction', line, heredocs: flatten(h) }) %}

heredocs -> null {% nil %}
  | heredocs %heredoc {% cons %}
