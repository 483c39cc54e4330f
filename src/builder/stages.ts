/**
 * The stage graph: splits a Dockerfile's instructions into build stages, resolves each stage's
 * base (an image or an earlier stage, with global ARGs expanded), collects the edges between
 * stages (`COPY --from`, `RUN --mount=from=`), finds the target, rejects cycles, and prunes the
 * graph to what the target needs, in an order the builder can execute (with independent stages
 * grouped so they can run in parallel). Pure: no filesystem, no processes.
 */
import { DockerfileError, lineRange, messageOf, type SourceRange } from '../errors.js';
import type { ArgInstruction, FromInstruction, Instruction } from '../parser/instructions.js';
import { ShellLex } from '../parser/shell-words.js';
import { withSuggestion } from '../parser/suggest.js';

/** Why a stage needs something: its base, a `COPY --from`, or a `RUN --mount from=`. */
export type StageDependency =
  | { readonly kind: 'stage'; readonly stage: number; readonly via: 'base' | 'copy' | 'mount'; readonly instruction: Instruction }
  | { readonly kind: 'image'; readonly ref: string; readonly via: 'copy' | 'mount'; readonly instruction: Instruction };

/** One build stage. */
export interface Stage {
  /** 0-based position in the Dockerfile (what `--from=0` refers to). */
  readonly index: number;
  /** The `AS` name, lower-cased; undefined for an unnamed stage. */
  readonly name?: string;
  /** The name, or `stage-<index>` for an unnamed stage (used in messages). */
  readonly displayName: string;
  readonly from: FromInstruction;
  /** The base reference after global-ARG expansion (`alpine:3.20`, `scratch`, or a stage name). */
  readonly base: string;
  /** The index of the stage used as base, when the base names an earlier stage. */
  readonly baseStage?: number;
  /** `--platform`, expanded with the global ARGs. */
  readonly platform?: string;
  /** The instructions after FROM, in order. */
  readonly instructions: readonly Instruction[];
  /** Its edges, in instruction order (the base first). */
  readonly deps: readonly StageDependency[];
}

/** A non-fatal finding, in BuildKit's wording. */
export interface StageWarning {
  readonly message: string;
  readonly range: SourceRange;
}

/** The resolved graph. */
export interface StageGraph {
  /** The ARG instructions before the first FROM. */
  readonly metaArgs: readonly ArgInstruction[];
  /** The global ARG values in scope for FROM lines (declared ARGs with a value, plus `platformArgs`). */
  readonly globalArgs: ReadonlyMap<string, string>;
  readonly stages: readonly Stage[];
  /** The index of the target stage. */
  readonly target: number;
  /** The stages the target needs (itself included), dependencies first. */
  readonly order: readonly number[];
  /**
   * `order` grouped into levels: every stage of a level depends only on stages of earlier levels,
   * so the stages of one level can be built in parallel.
   */
  readonly levels: readonly (readonly number[])[];
  readonly warnings: readonly StageWarning[];
}

/** Options of {@link resolveStages}. */
export interface ResolveStagesOptions {
  /**
   * The stage to build, by name (case-insensitive).
   * @default the last stage
   */
  readonly target?: string;
  /**
   * `--build-arg` values; they override the defaults of the ARGs they name.
   * @default {}
   */
  readonly buildArgs?: Readonly<Record<string, string>>;
  /**
   * ARGs in global scope without a declaration (`BUILDPLATFORM`, `TARGETOS` …).
   * @default {}
   */
  readonly platformArgs?: Readonly<Record<string, string>>;
}

/** What {@link resolveStages} reads of a parsed Dockerfile. */
export interface StageInput {
  readonly file: string;
  readonly instructions: readonly Instruction[];
  readonly escapeToken?: '\\' | '`';
}

const VARIABLE = /\$./;

/**
 * The most build stages a Dockerfile may have. Real Dockerfiles have a handful; the limit keeps a hostile one
 * from costing unbounded planning time and memory (every stage gets its own graph node and cache chain).
 */
export const MAX_STAGES = 1000;

/**
 * Builds the stage graph of a parsed Dockerfile.
 * @throws DockerfileError at the offending instruction (unknown target, blank base name,
 *   `--from` with a variable, a COPY from a URL, a circular dependency …)
 */
export function resolveStages(dockerfile: StageInput, options: ResolveStagesOptions = {}): StageGraph {
  const { file } = dockerfile;
  const fail = (message: string, range: SourceRange, cause?: unknown): never => {
    throw new DockerfileError(message, file, range, cause === undefined ? undefined : { cause });
  };
  const lex = new ShellLex(dockerfile.escapeToken ?? '\\');

  // 1. Split into meta ARGs and stages.
  const metaArgs: ArgInstruction[] = [];
  const raw: { from: FromInstruction; instructions: Instruction[] }[] = [];
  for (const ins of dockerfile.instructions) {
    if (ins.kind === 'from') raw.push({ from: ins, instructions: [] });
    else if (raw.length === 0) {
      if (ins.kind === 'arg') metaArgs.push(ins);
      else fail('no build stage in current context', ins.range);
    } else raw[raw.length - 1]?.instructions.push(ins);
  }
  if (raw.length === 0) fail('dockerfile contains no stages to build', lineRange(1));
  const beyond = raw[MAX_STAGES];
  if (beyond !== undefined) fail(`too many build stages: ${raw.length} (kiln's limit is ${MAX_STAGES})`, beyond.from.range);

  // 2. Global ARGs: a --build-arg overrides the default; defaults expand with earlier globals.
  const buildArgs = options.buildArgs ?? {};
  const globalArgs = new Map<string, string>(Object.entries(options.platformArgs ?? {}));
  for (const arg of metaArgs) {
    for (const decl of arg.args) {
      if (Object.hasOwn(buildArgs, decl.key)) globalArgs.set(decl.key, buildArgs[decl.key] ?? '');
      else if (decl.value !== undefined) {
        try {
          globalArgs.set(decl.key, lex.processWord(decl.value, globalArgs));
        } catch (cause) {
          fail(messageOf(cause), arg.range, cause);
        }
      }
    }
  }

  // 3. Stages: expand base names, link bases to earlier stages by name.
  const warnings: StageWarning[] = [];
  const byName = new Map<string, number>();
  const partial: Omit<Stage, 'deps'>[] = [];
  raw.forEach(({ from, instructions }, index) => {
    let base = '';
    try {
      base = lex.processWord(from.image, globalArgs);
    } catch (cause) {
      fail(messageOf(cause), from.range, cause);
    }
    if (base === '') fail(`base name (${from.image}) should not be blank`, from.range);
    let platform: string | undefined;
    if (from.platform !== undefined) {
      try {
        platform = lex.processWord(from.platform, globalArgs);
      } catch (cause) {
        fail(messageOf(cause), from.range, cause);
      }
    }
    const baseStage = byName.get(base.toLowerCase());
    if (from.name !== undefined) {
      if (byName.has(from.name)) {
        warnings.push({ message: `Duplicate stage name ${JSON.stringify(from.name)}, stage names should be unique`, range: from.range });
      }
      byName.set(from.name, index);
    }
    partial.push({
      index, from, base, instructions, displayName: from.name ?? `stage-${index}`,
      ...(from.name !== undefined && { name: from.name }),
      ...(baseStage !== undefined && { baseStage }),
      ...(platform !== undefined && { platform }),
    });
  });

  // 4. The target.
  let target = partial.length - 1;
  if (options.target !== undefined && options.target !== '') {
    const t = byName.get(options.target.toLowerCase());
    if (t === undefined) {
      fail(withSuggestion(`target stage ${JSON.stringify(options.target)} could not be found`, options.target, byName.keys()), lineRange(1));
    }
    target = t ?? target;
  }

  // 5. Edges. A `--from` is a stage index, else a stage name (any stage, later ones too), else an image.
  const lookup = (ref: string, ins: Instruction): number | undefined => {
    if (/^[0-9]+$/.test(ref)) {
      const n = Number(ref);
      if (n >= partial.length) fail(`invalid stage index ${n}`, ins.range);
      return n;
    }
    return byName.get(ref.toLowerCase());
  };
  const stages: Stage[] = partial.map((st) => {
    const deps: StageDependency[] = [];
    if (st.baseStage !== undefined) deps.push({ kind: 'stage', stage: st.baseStage, via: 'base', instruction: st.from });
    const edge = (ref: string, via: 'copy' | 'mount', ins: Instruction): void => {
      const n = lookup(ref, ins);
      deps.push(n === undefined ? { kind: 'image', ref, via, instruction: ins } : { kind: 'stage', stage: n, via, instruction: ins });
    };
    for (const ins of st.instructions) {
      if (ins.kind === 'copy' && ins.from !== undefined) edge(ins.from, 'copy', ins);
      if (ins.kind === 'run') for (const m of ins.mounts) if (m.type !== 'secret' && m.from !== undefined) edge(m.from, 'mount', ins);
    }
    return { ...st, deps };
  });

  // 6. Cycles (over every stage, as BuildKit checks before pruning).
  const cyclic = findCycle(stages);
  if (cyclic !== undefined) {
    const st = stages[cyclic];
    if (st !== undefined) fail(`circular dependency detected on stage: ${st.displayName}`, st.from.range);
  }

  // 7. Prune to what the target needs; level = longest dependency chain below a stage. Iterative (a
  // post-order walk with an explicit stack): a long chain of stages must not exhaust the call stack.
  const level = new Map<number, number>();
  const stack: number[] = [target];
  while (stack.length > 0) {
    const i = stack[stack.length - 1] as number;
    if (level.has(i)) {
      stack.pop();
      continue;
    }
    const pending = stageDeps(stages[i]).filter((d) => !level.has(d));
    if (pending.length > 0) {
      for (const d of pending) stack.push(d);
      continue;
    }
    stack.pop();
    let l = 0;
    for (const d of stageDeps(stages[i])) l = Math.max(l, (level.get(d) ?? 0) + 1);
    level.set(i, l);
  }
  const order = [...level.keys()].sort((a, b) => (level.get(a) ?? 0) - (level.get(b) ?? 0) || a - b);
  const levels: number[][] = [];
  for (const i of order) (levels[level.get(i) ?? 0] ??= []).push(i);

  // 8. Conversion errors of the stages that will be built.
  for (const i of order) {
    for (const ins of stages[i]?.instructions ?? []) {
      if (ins.kind === 'copy') {
        if (ins.from !== undefined && VARIABLE.test(ins.from)) {
          fail('variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround', ins.range);
        }
        if (ins.sources.some((s) => /^https?:\/\//.test(s))) fail("source can't be a URL for COPY", ins.range);
      }
    }
  }

  return { metaArgs, globalArgs, stages, target, order, levels: levels.filter((l) => l.length > 0), warnings };
}

/** The stages a stage depends on. */
function stageDeps(stage: Stage | undefined): number[] {
  const out: number[] = [];
  for (const d of stage?.deps ?? []) if (d.kind === 'stage') out.push(d.stage);
  return out;
}

/**
 * The first stage (in file order) from which a dependency cycle is reachable, if any. A depth-first search
 * with an explicit stack (each frame: a stage and the index of its next dependency), so that its depth is
 * not bounded by the call stack.
 */
function findCycle(stages: readonly Stage[]): number | undefined {
  const visited = new Set<number>();
  const onPath = new Set<number>();
  for (const st of stages) {
    if (visited.has(st.index)) continue;
    const frames: Array<{ stage: number; deps: number[]; next: number }> = [{ stage: st.index, deps: stageDeps(st), next: 0 }];
    visited.add(st.index);
    onPath.add(st.index);
    while (frames.length > 0) {
      const top = frames[frames.length - 1] as { stage: number; deps: number[]; next: number };
      if (top.next >= top.deps.length) {
        onPath.delete(top.stage);
        frames.pop();
        continue;
      }
      const d = top.deps[top.next++] as number;
      if (onPath.has(d)) return st.index;
      if (visited.has(d)) continue;
      visited.add(d);
      onPath.add(d);
      frames.push({ stage: d, deps: stageDeps(stages[d]), next: 0 });
    }
  }
  return undefined;
}
