/**
 * What every instruction handler (src/builder/instructions/) works with: the build ({@link DispatchContext}),
 * the stage as its steps build it up ({@link StageState}), and the helpers they share: word expansion with the
 * stage's environment, the history entry, the config-only step.
 *
 * Words are expanded with the stage's environment at that step (StageState.env: ENV and ARG values, the later one
 * winning, as BuildKit's LLB state env). RUN/CMD/ENTRYPOINT/HEALTHCHECK/SHELL words are never expanded: the shell
 * does that.
 */
import { DockerfileError, messageOf } from '../errors.js';
import type { Digest, HistoryEntry, ImageConfig } from '../oci/types.js';
import type { Instruction, InstructionKind } from '../parser/instructions.js';
import { ShellLex } from '../parser/shell-words.js';
import type { Host } from '../runtime/host.js';
import type { NetworkPool } from '../runtime/network.js';
import type { OverlayCapabilities } from '../runtime/overlay.js';
import type { LayerInfo, LayerStoreApi } from '../store/types.js';
import { cacheKey } from './cache-key.js';
import type { BuildContext } from './context.js';
import type { ResolvedBuildOptions, StepRef } from './options.js';
import type { StepCacheHook } from './remote-cache.js';

/** Build args every stage can use without declaring them; kept out of history and cache keys. */
export const PROXY_ARGS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'];

/** `KEY=VALUE` entries for the {@link PROXY_ARGS} given with --build-arg. */
export function proxyEnv(buildArgs: Readonly<Record<string, string>>): string[] {
  return PROXY_ARGS.filter((k) => Object.hasOwn(buildArgs, k)).map((k) => `${k}=${buildArgs[k] ?? ''}`);
}

/** Proxy build args (`K=V` words) never enter keys or history: they may carry credentials. */
export const notProxy = (kv: string): boolean => !PROXY_ARGS.includes(kv.slice(0, kv.indexOf('=')));

/** The filesystem and config of a stage as its steps build it up. */
export interface StageState {
  config: ImageConfig;
  layers: LayerInfo[];
  /** The cache key of the last step (the chain's head). */
  key: string;
  /** ARGs in scope in this stage (declared, with their values; undefined = declared without a value). */
  args: Map<string, string | undefined>;
  /**
   * The variables RUN gets and words expand with: BuildKit's LLB state env. ENV and ARG values both set it and
   * the later one wins, so `ENV A=1` then `ARG A=2` gives RUN and later words A=2 while the config keeps A=1. A
   * stage based on another inherits the parent's (ARG values included), with its config's Env applied on top.
   */
  env: Map<string, string>;
  /** True once CMD was set in this stage (ENTRYPOINT then keeps it). */
  cmdSet: boolean;
  /** History entries this stage added (folded into the config at the end). */
  history: HistoryEntry[];
  /**
   * The creation time of the newest layer step so far (a cache hit keeps its original time). Config-only
   * steps reuse it, so a fully cached rebuild writes the same history and the same image digest.
   */
  lastCreated: string;
  /**
   * The last layer step when its layer is still being hashed (see runtime/step-layer.ts's PendingStepLayer):
   * its upperdir is the top-most lower of the next RUN or COPY, and `settle()` adds its layer to `layers` and
   * records it in the cache. Anything that reads `layers` settles it first ({@link settlePending}).
   */
  pending?: { readonly dir: string; startHashing(): void; settle(): Promise<void> } | undefined;
}

/**
 * Finishes the stage's pending layer step, if any: its layer joins `state.layers` (in step order: nothing
 * else is added while one is pending) and its cache record is written. Call it before reading
 * `state.layers`, and when the stage ends (the build settles it on failure too, so the step stays cached).
 */
export async function settlePending(state: StageState): Promise<void> {
  const pending = state.pending;
  if (pending === undefined) return;
  state.pending = undefined;
  await pending.settle();
}

/** The diffIDs of the stage's settled layers, bottom-most first. */
export const diffIds = (state: StageState): Digest[] => state.layers.map((l) => l.diffId);

/** What a step handler needs from the build. */
export interface DispatchContext {
  readonly options: ResolvedBuildOptions;
  readonly store: LayerStoreApi;
  readonly file: string;
  readonly escapeToken: '\\' | '`';
  /** The build context, opened on first use. */
  readonly context: () => Promise<BuildContext>;
  /** A finished stage (for COPY --from / RUN --mount from=), by name or index. */
  readonly stageResult: (ref: string, instruction: Instruction) => Promise<StageState>;
  /** The named local context `ref` names (`--build-context NAME=DIR`), opened on first use; undefined for any other name. */
  readonly localContext: (ref: string) => Promise<BuildContext> | undefined;
  /** Build args given on the command line (used to mark which were consumed). */
  readonly consumedArgs: Set<string>;
  /** Global ARG values (before the first FROM, plus the predefined platform ARGs): what `ARG X` inherits. */
  readonly globalArgs: ReadonlyMap<string, string>;
  readonly noCache: boolean;
  readonly emitOutput: (step: StepRef, chunk: string, stream: 'stdout' | 'stderr') => void;
  readonly signal: AbortSignal | undefined;
  readonly runtimeWarnings: (w: readonly string[]) => void;
  /** A shared cache (`--cache-from`/`--cache-to`): consulted after a local miss, told every step's record. */
  readonly remoteCache?: StepCacheHook;
  /** The build's RUN networks (reused from step to step). */
  readonly networks?: NetworkPool;
  /** What this build knows about the host (runtime verdicts, overlay options), shared by its steps. */
  readonly host: Host;
}

/** A step's outcome. */
export interface StepOutcome {
  readonly cached: boolean;
}

/**
 * What one instruction kind does to a stage: changes `state` (config, env, layers, the key chain, history) and
 * says whether the step came from the cache. The handlers are registered by kind in src/builder/dispatch.ts.
 */
export type InstructionHandler<I extends Instruction> = (ctx: DispatchContext, state: StageState, ins: I, step: StepRef) => Promise<StepOutcome>;

/** The time a step is created at: SOURCE_DATE_EPOCH when given, else now. */
export const now = (ctx: DispatchContext): string =>
  ctx.options.sourceDateEpoch !== undefined ? new Date(ctx.options.sourceDateEpoch * 1000).toISOString() : new Date().toISOString();

/** The creation time of a config-only step: that of the newest layer step (see {@link StageState.lastCreated}). */
export const configTime = (ctx: DispatchContext, state: StageState): string =>
  ctx.options.sourceDateEpoch !== undefined ? now(ctx) : state.lastCreated;

/** `K=V` list → ordered map. */
export function envMap(env: readonly string[] | undefined): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env ?? []) {
    const eq = e.indexOf('=');
    if (eq < 0) m.set(e, '');
    else m.set(e.slice(0, eq), e.slice(eq + 1));
  }
  return m;
}

/** Fails the step at the instruction's position. */
export function fail(ctx: DispatchContext, ins: Instruction, message: string, cause?: unknown): never {
  throw new DockerfileError(message, ctx.file, ins.range, cause === undefined ? undefined : { cause });
}

/** Expands one word (no splitting) with the stage's environment, failing at the instruction's position. */
export function expand(ctx: DispatchContext, ins: Instruction, state: StageState, word: string): string {
  try {
    return new ShellLex(ctx.escapeToken).processWord(word, state.env);
  } catch (err) {
    return fail(ctx, ins, messageOf(err), err);
  }
}

/** Expands a word into the fields it splits into (BuildKit's ProcessWords): none for an empty expansion. */
export function expandWords(ctx: DispatchContext, ins: Instruction, state: StageState, word: string): string[] {
  try {
    return new ShellLex(ctx.escapeToken).processWords(word, state.env);
  } catch (err) {
    return fail(ctx, ins, messageOf(err), err);
  }
}

/** Appends the stage's history entry for a step. */
export function history(state: StageState, createdBy: string, emptyLayer: boolean, created: string): void {
  const entry: HistoryEntry = { created, created_by: createdBy, comment: 'buildkit.dockerfile.v0' };
  if (emptyLayer) entry.empty_layer = true;
  state.history.push(entry);
}

/**
 * Ends a step that changes only the image config: chains `keyText` into the stage's key and writes an empty-layer
 * history entry `createdBy` (none when undefined: BuildKit writes none for ONBUILD).
 */
export function configStep(ctx: DispatchContext, state: StageState, keyText: string, createdBy: string | undefined): StepOutcome {
  const created = configTime(ctx, state);
  state.key = cacheKey({ parent: state.key, instruction: keyText, args: [] });
  if (createdBy !== undefined) history(state, createdBy, true, created);
  return { cached: false };
}

/** `--chown=UID[:GID]` and `USER UID[:GID]` as ids (numbers need no /etc/passwd; a missing GID is the UID, as in docker). */
export function numericOwner(spec: string): { uid: number; gid: number } {
  const [u, g] = spec.split(':');
  return { uid: Number(u), gid: Number(g ?? u) };
}

/** The runtime's step options (src/runtime/step-layer.ts) for this build. */
export function stepLayerOptions(ctx: DispatchContext): { signal?: AbortSignal; sourceDateEpoch?: number; overlay: OverlayCapabilities } {
  return {
    overlay: ctx.host.overlay,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.options.sourceDateEpoch !== undefined ? { sourceDateEpoch: ctx.options.sourceDateEpoch } : {}),
  };
}

/** The instruction of one kind. */
export type InstructionOf<K extends InstructionKind> = Extract<Instruction, { kind: K }>;

/** Handlers for the kinds `K`, one each: a table typed `HandlerTable<InstructionKind>` misses none. */
export type HandlerTable<K extends InstructionKind> = { readonly [P in K]: InstructionHandler<InstructionOf<P>> };
