/**
 * What each instruction does to a stage, with `docker build`'s semantics: the image config it
 * changes, the history entry it writes, the cache key it chains, and, for the steps that change
 * files (RUN, COPY, ADD, WORKDIR), the layer it asks the runtime for.
 *
 * Words are expanded here, with the stage's environment at that step (StageState.env: ENV and ARG values,
 * the later one winning, as BuildKit's LLB state env). RUN/CMD/ENTRYPOINT/HEALTHCHECK/SHELL words are never
 * expanded: the shell does that.
 */
import { sha256Hex } from '../oci/digest.js';
import { DEFAULT_PATH_ENV } from '../oci/platform.js';
import { mkdir, readFile, writeFile, chmod as chmodFile, chown, rm, lstat, readdir } from 'node:fs/promises';
import { copyRegularFile } from '../store/copy-file.js';
import path from 'node:path';
import { DockerfileError, StepFailedError, messageOf, assertNever } from '../errors.js';
import type { Digest, ImageConfig, HistoryEntry } from '../oci/types.js';
import type { Instruction, RunInstruction, CopyInstruction, AddInstruction, CommandForm, RunMount, HeredocFile } from '../parser/instructions.js';
import { parseMount } from '../parser/instructions.js';
import { ShellLex } from '../parser/shell-words.js';
import { chompHeredocContent } from '../parser/heredoc.js';
import { parsePorts } from '../parser/ports.js';
import type { LayerInfo, LayerStoreApi } from '../store/types.js';
import { cacheKey } from './cache-key.js';
import type { BuildContext, ContextEntry } from './context.js';
import { hasWildcard, segmentMatcher } from '../parser/filepath-match.js';
import type { ResolvedBuildOptions, StepRef } from './options.js';
import type { StepCacheHook } from './remote-cache.js';
import type { PendingStepLayer, StepDirs } from '../runtime/step-layer.js';
import type { CopyRequest, CopySource } from '../runtime/handlers/copy.js';
import type { UrlSource } from '../net/http-source.js';
import { PatternMatcher } from '../parser/dockerignore.js';
import type { ExtraMount } from '../runtime/container.js';
import type { NetworkPool } from '../runtime/network.js';
// The filesystem work of a step loads on a cache miss only: a fully cached build never needs it, and each
// module costs start-up time.
const stepLayer = () => import('../runtime/step-layer.js');
const copyHandlers = () => import('../runtime/handlers/copy.js');
const users = () => import('../runtime/user.js');
import { parseChmod } from './chmod.js';
import { runPrivileges } from './entitlements.js';
import type { Host } from '../runtime/host.js';
import type { OverlayCapabilities } from '../runtime/overlay.js';

// The container runtime and overlay mounts (and execa behind them) load only when a step actually
// runs: a fully cached rebuild never needs them, and its whole process time is the budget.
const loadContainer = (): Promise<typeof import('../runtime/container.js')> => import('../runtime/container.js');
const loadOverlay = (): Promise<typeof import('../runtime/overlay.js')> => import('../runtime/overlay.js');

/** Build args every stage can use without declaring them; kept out of history and cache keys. */
export const PROXY_ARGS = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy'];

/** `KEY=VALUE` entries for the {@link PROXY_ARGS} given with --build-arg. */
export function proxyEnv(buildArgs: Readonly<Record<string, string>>): string[] {
  return PROXY_ARGS.filter((k) => Object.hasOwn(buildArgs, k)).map((k) => `${k}=${buildArgs[k] ?? ''}`);
}

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
  /** What this build knows about the host (runtime verdicts, overlay options), shared by its steps. */
  readonly host: Host;
  /** The build's RUN networks (reused from step to step). */
  readonly networks?: NetworkPool;
}

/** A step's outcome. */
export interface StepOutcome {
  readonly cached: boolean;
}

interface CacheRecord {
  layer: LayerInfo | null;
  created: string;
}

const now = (ctx: DispatchContext): string =>
  ctx.options.sourceDateEpoch !== undefined ? new Date(ctx.options.sourceDateEpoch * 1000).toISOString() : new Date().toISOString();

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

function setEnv(config: ImageConfig, key: string, value: string): void {
  const env = config.config.Env ?? [];
  const i = env.findIndex((e) => e === key || e.startsWith(`${key}=`));
  if (i >= 0) env[i] = `${key}=${value}`;
  else env.push(`${key}=${value}`);
  config.config.Env = env;
}

/** The variables an instruction's words see: the stage's state env (see {@link StageState.env}). */
function expansionEnv(state: StageState): Map<string, string> {
  return state.env;
}

/**
 * The `K=V` words BuildKit's runCommandString puts in a RUN's history (`RUN |N K=V … cmd`): every ARG declared
 * in the stage, once, in order of first declaration, with its value in the step environment (an ENV's, or the
 * ARG's own when set after it), empty when it has none.
 */
function runHistoryArgs(state: StageState): string[] {
  return [...state.args.keys()].map((k) => `${k}=${state.env.get(k) ?? ''}`);
}

/** Proxy build args (`K=V` words) never enter keys or history: they may carry credentials. */
const notProxy = (kv: string): boolean => !PROXY_ARGS.includes(kv.slice(0, kv.indexOf('=')));

function fail(ctx: DispatchContext, ins: Instruction, message: string, cause?: unknown): never {
  throw new DockerfileError(message, ctx.file, ins.range, cause === undefined ? undefined : { cause });
}

/** Expands one word (no splitting), failing at the instruction's position. */
function expand(ctx: DispatchContext, ins: Instruction, state: StageState, word: string): string {
  try {
    return new ShellLex(ctx.escapeToken).processWord(word, expansionEnv(state));
  } catch (err) {
    return fail(ctx, ins, messageOf(err), err);
  }
}

/** Expands a word into the fields it splits into (BuildKit's ProcessWords): none for an empty expansion. */
function expandWords(ctx: DispatchContext, ins: Instruction, state: StageState, word: string): string[] {
  try {
    return new ShellLex(ctx.escapeToken).processWords(word, expansionEnv(state));
  } catch (err) {
    return fail(ctx, ins, messageOf(err), err);
  }
}

function history(state: StageState, createdBy: string, emptyLayer: boolean, created: string): void {
  const entry: HistoryEntry = { created, created_by: createdBy, comment: 'buildkit.dockerfile.v0' };
  if (emptyLayer) entry.empty_layer = true;
  state.history.push(entry);
}

/** Go's `%v` of a string slice, as BuildKit writes SHELL history: `[a b]`. */
function goList(list: readonly string[]): string {
  return `[${list.join(' ')}]`;
}

/** Go's `%q` of a string slice, as BuildKit writes CMD/ENTRYPOINT history: `["a" "b"]`. */
function goQuoteList(list: readonly string[]): string {
  return `[${list.map((s) => JSON.stringify(s)).join(' ')}]`;
}

/** argv of a command in either form, with the stage's SHELL for the shell form. */
function commandArgv(state: StageState, command: CommandForm): string[] {
  if (command.form === 'exec') return [...command.argv];
  const shell = state.config.config.Shell ?? ['/bin/sh', '-c'];
  return [...shell, command.script];
}

/**
 * Runs one instruction of a stage. Config-only instructions change `state` and chain the key;
 * filesystem steps look their key up in the cache and run only on a miss.
 */
export async function dispatch(ctx: DispatchContext, state: StageState, ins: Instruction, step: StepRef, stageName: string): Promise<StepOutcome> {
  ctx.signal?.throwIfAborted();
  const cfg = state.config.config;
  const chain = (text: string, extra: readonly string[] = []): void => {
    state.key = cacheKey({ parent: state.key, instruction: text, args: extra });
  };
  const created = ctx.options.sourceDateEpoch !== undefined ? now(ctx) : state.lastCreated;
  switch (ins.kind) {
    case 'from':
      return fail(ctx, ins, 'FROM inside a stage'); // stages are split before dispatch
    case 'env': {
      const parts: string[] = [];
      for (const p of ins.pairs) {
        const value = expand(ctx, ins, state, p.value);
        const key = expand(ctx, ins, state, p.key);
        setEnv(state.config, key, value);
        state.env.set(key, value);
        parts.push(`${key}=${value}`);
      }
      chain(`ENV ${parts.join(' ')}`);
      history(state, `ENV ${parts.join(' ')}`, true, created);
      return { cached: false };
    }
    case 'arg': {
      const parts: string[] = [];
      for (const a of ins.args) {
        // BuildKit's dispatchArg: a --build-arg, else the default, else the global ARG's value. Without any, the
        // name keeps the value it already has in the step environment (an earlier ARG's) but the history shows
        // the bare name.
        let value: string | undefined;
        if (Object.hasOwn(ctx.options.buildArgs, a.key)) {
          value = ctx.options.buildArgs[a.key];
          ctx.consumedArgs.add(a.key);
        } else if (a.value !== undefined) value = expand(ctx, ins, state, a.value);
        else value = ctx.globalArgs.get(a.key);
        // Re-set so a redeclared name keeps its first position (Map order), as BuildKit's RUN history does.
        state.args.set(a.key, value ?? state.args.get(a.key));
        if (value !== undefined) state.env.set(a.key, value);
        parts.push(value === undefined ? a.key : `${a.key}=${value}`);
      }
      // Only the names enter the chain: as in docker, a changed value invalidates the RUN steps that get it
      // (their keys hold the ARG values) and the instructions whose expanded words change, not every step after.
      chain(`ARG ${ins.args.map((a) => a.key).join(' ')}`);
      history(state, `ARG ${parts.join(' ')}`, true, created);
      return { cached: false };
    }
    case 'label': {
      const parts: string[] = [];
      cfg.Labels ??= {};
      for (const p of ins.pairs) {
        const key = expand(ctx, ins, state, p.key);
        const value = expand(ctx, ins, state, p.value);
        cfg.Labels[key] = value;
        parts.push(`${key}=${value}`);
      }
      chain(`LABEL ${parts.join(' ')}`);
      history(state, `LABEL ${parts.join(' ')}`, true, created);
      return { cached: false };
    }
    case 'expose': {
      let ports: string[];
      try {
        // Word expansion, as BuildKit does it: `$P` with P="80 81" is two ports, an unset variable none.
        ports = parsePorts(ins.ports.flatMap((p) => expandWords(ctx, ins, state, p)));
      } catch (err) {
        return fail(ctx, ins, messageOf(err), err);
      }
      cfg.ExposedPorts ??= {};
      for (const p of ports) cfg.ExposedPorts[p] = {};
      chain(`EXPOSE ${ports.join(' ')}`);
      history(state, `EXPOSE map[${ports.map((p) => `${p}:{}`).join(' ')}]`, true, created);
      return { cached: false };
    }
    case 'user': {
      cfg.User = expand(ctx, ins, state, ins.user);
      chain(`USER ${cfg.User}`);
      history(state, `USER ${cfg.User}`, true, created);
      return { cached: false };
    }
    case 'volume': {
      cfg.Volumes ??= {};
      const vols = ins.volumes.map((v) => expand(ctx, ins, state, v));
      for (const v of vols) {
        if (v.trim() === '') fail(ctx, ins, 'VOLUME specified can not be an empty string');
        cfg.Volumes[v] = {};
      }
      chain(`VOLUME ${JSON.stringify(vols)}`);
      history(state, `VOLUME [${vols.join(' ')}]`, true, created);
      return { cached: false };
    }
    case 'stopsignal': {
      cfg.StopSignal = expand(ctx, ins, state, ins.signal);
      chain(`STOPSIGNAL ${cfg.StopSignal}`);
      history(state, `STOPSIGNAL ${cfg.StopSignal}`, true, created);
      return { cached: false };
    }
    case 'maintainer': {
      state.config.author = ins.maintainer;
      chain(`MAINTAINER ${ins.maintainer}`);
      history(state, `MAINTAINER ${ins.maintainer}`, true, created);
      return { cached: false };
    }
    case 'shell': {
      cfg.Shell = [...ins.shell];
      chain(`SHELL ${JSON.stringify(ins.shell)}`);
      history(state, `SHELL ${goList(ins.shell)}`, true, created);
      return { cached: false };
    }
    case 'cmd': {
      cfg.Cmd = commandArgv(state, ins.command);
      state.cmdSet = true;
      if (ins.command.form === 'shell') cfg.ArgsEscaped = true;
      chain(`CMD ${JSON.stringify(cfg.Cmd)}`);
      history(state, `CMD ${goQuoteList(cfg.Cmd)}`, true, created);
      return { cached: false };
    }
    case 'entrypoint': {
      cfg.Entrypoint = commandArgv(state, ins.command);
      if (!state.cmdSet) cfg.Cmd = null; // docker: a new ENTRYPOINT drops the base image's CMD
      chain(`ENTRYPOINT ${JSON.stringify(cfg.Entrypoint)}`);
      history(state, `ENTRYPOINT ${goQuoteList(cfg.Entrypoint)}`, true, created);
      return { cached: false };
    }
    case 'healthcheck': {
      if (ins.check.type === 'none') cfg.Healthcheck = { Test: ['NONE'] };
      else {
        const hc = ins.check;
        cfg.Healthcheck = { Test: [...hc.test] };
        if (hc.interval) cfg.Healthcheck.Interval = hc.interval;
        if (hc.timeout) cfg.Healthcheck.Timeout = hc.timeout;
        if (hc.startPeriod) cfg.Healthcheck.StartPeriod = hc.startPeriod;
        if (hc.startInterval) cfg.Healthcheck.StartInterval = hc.startInterval;
        if (hc.retries) cfg.Healthcheck.Retries = hc.retries;
      }
      chain(`HEALTHCHECK ${JSON.stringify(cfg.Healthcheck)}`);
      // BuildKit's dispatchHealthcheck: Go's `%+v` of the HealthcheckConfig struct (durations by their String()).
      const h = cfg.Healthcheck;
      history(
        state,
        `HEALTHCHECK {Test:${goList(h.Test ?? [])} Interval:${goDuration(h.Interval ?? 0)} Timeout:${goDuration(h.Timeout ?? 0)} StartPeriod:${goDuration(h.StartPeriod ?? 0)} StartInterval:${goDuration(h.StartInterval ?? 0)} Retries:${h.Retries ?? 0}}`,
        true,
        created,
      );
      return { cached: false };
    }
    case 'onbuild': {
      // BuildKit records triggers in the config only: an ONBUILD line adds no history entry.
      cfg.OnBuild = [...(cfg.OnBuild ?? []), ins.expression];
      chain(`ONBUILD ${ins.expression}`);
      return { cached: false };
    }
    case 'workdir':
      return dispatchWorkdir(ctx, state, ins, step, created);
    case 'run':
      return dispatchRun(ctx, state, ins, step, created, stageName);
    case 'copy':
    case 'add':
      return dispatchCopy(ctx, state, ins, step, created);
    default:
      return assertNever(ins);
  }
}

/** Go's time.Duration String(): `0s`, `1.5ms`, `5s`, `1m30s`, `1h0m0s`. */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const sign = ns < 0 ? '-' : '';
  let u = Math.abs(ns);
  // Integer part and the fraction with trailing zeros dropped, as Go's fmtFrac does.
  const withFrac = (v: number, unit: number): string => {
    const frac = String(v % unit).padStart(String(unit).length - 1, '0').replace(/0+$/, '');
    return `${Math.floor(v / unit)}${frac ? `.${frac}` : ''}`;
  };
  if (u < 1e3) return `${sign}${u}ns`;
  if (u < 1e6) return `${sign}${withFrac(u, 1e3)}µs`;
  if (u < 1e9) return `${sign}${withFrac(u, 1e6)}ms`;
  const hours = Math.floor(u / 3.6e12);
  u -= hours * 3.6e12;
  const minutes = Math.floor(u / 6e10);
  u -= minutes * 6e10;
  return `${sign}${hours ? `${hours}h` : ''}${hours || minutes ? `${minutes}m` : ''}${withFrac(u, 1e9)}s`;
}

/**
 * Looks a step up in the cache; on a miss runs `produce` and records its layer. `produce` may hand back a
 * still-hashing layer ({@link PendingStepLayer}, from a RUN or COPY that mounted the previous pending upperdir):
 * it becomes the stage's pending step and is recorded when settled.
 */
async function cachedLayerStep(
  ctx: DispatchContext,
  state: StageState,
  key: string,
  _configTime: string,
  createdBy: string,
  produce: () => Promise<LayerInfo | null | PendingStepLayer>,
): Promise<StepOutcome> {
  state.key = key;
  let created: string;
  if (!ctx.noCache) {
    const hit = (await ctx.store.getCache<CacheRecord>(key)) ?? (await ctx.remoteCache?.lookup(key));
    if (hit && (hit.layer === null || (hit.layer.digest === hit.layer.diffId && (await ctx.store.hasLayer(hit.layer.diffId))) || (await ctx.store.hasBlob(hit.layer.digest)))) {
      await settlePending(state);
      if (hit.layer) state.layers.push(hit.layer);
      history(state, createdBy, hit.layer === null, hit.created);
      state.lastCreated = hit.created;
      ctx.remoteCache?.record(key, hit, state.layers);
      return { cached: true };
    }
  }
  created = now(ctx);
  state.lastCreated = created;
  const produced = await produce();
  // The previous pending step goes first; `produce` has unmounted its upperdir by now.
  try {
    await settlePending(state);
  } catch (err) {
    // Nothing can use this step's layer now, but its directory must not be left behind.
    if (produced !== null && 'adopt' in produced) await produced.adopt().catch(() => undefined);
    throw err;
  }
  if (produced !== null && 'adopt' in produced) {
    history(state, createdBy, false, created);
    const record = async (): Promise<void> => {
      const layer = await produced.adopt();
      state.layers.push(layer);
      await ctx.store.putCache(key, { layer, created } satisfies CacheRecord);
      ctx.remoteCache?.record(key, { layer, created }, state.layers);
    };
    state.pending = { dir: produced.dir, startHashing: () => produced.startHashing(), settle: record };
    return { cached: false };
  }
  const layer = produced;
  if (layer) state.layers.push(layer);
  history(state, createdBy, layer === null, created);
  await ctx.store.putCache(key, { layer, created } satisfies CacheRecord);
  ctx.remoteCache?.record(key, { layer, created }, state.layers);
  return { cached: false };
}

const diffIds = (state: StageState): Digest[] => state.layers.map((l) => l.diffId);

async function dispatchWorkdir(ctx: DispatchContext, state: StageState, ins: Extract<Instruction, { kind: 'workdir' }>, step: StepRef, created: string): Promise<StepOutcome> {
  const cfg = state.config.config;
  const dir = expand(ctx, ins, state, ins.path);
  // BuildKit's NormalizeWorkdir keeps an absolute path as written (`/w/d1/../d3`, `/app/`) in the config and
  // the history and only joins (and so cleans) a relative one; the directory it makes is the cleaned path.
  const written = dir === '' ? cfg.WorkingDir || '/' : path.posix.isAbsolute(dir) ? dir : path.posix.join(cfg.WorkingDir || '/', dir);
  const resolved = path.posix.resolve(written);
  cfg.WorkingDir = written;
  // `layer`: keys from before every WORKDIR made a layer recorded none for an existing directory.
  // `owned`: keys from before the directories it makes went to USER recorded root-owned ones.
  const key = cacheKey({ parent: state.key, instruction: `WORKDIR ${written}`, args: [`user=${cfg.User ?? ''}`, 'layer', ...(cfg.User ? ['owned'] : [])] });
  // BuildKit makes every WORKDIR but `/` (as written) a mkdir step with a layer of its own, empty when the
  // directory already exists (the well-known empty layer in images built by BuildKit).
  if (written === '/') {
    history(state, 'WORKDIR /', true, created);
    return { cached: false };
  }
  return cachedLayerStep(ctx, state, key, created, `WORKDIR ${written}`, async () => {
    // As a COPY does: the step below, if still pending (a big apt-get RUN's layer takes seconds to hash), is hashed
    // meanwhile, its upperdir serving as the top-most lower, instead of this step waiting for it.
    const below = state.pending;
    below?.startHashing();
    const exists = await existsInLayers(ctx, state, resolved);
    // BuildKit makes the directories it creates as the stage's USER (its mkdir runs with the user's ids): a name
    // needs the stage's /etc/passwd, a number does not (a missing gid is the uid, as for --chown).
    const user = cfg.User ?? '';
    const owner = user === '' ? undefined : /^\d+(:\d+)?$/.test(user) ? numericOwner(user) : 'by-name';
    const { pending } = await (await stepLayer()).runStepLayer(ctx.store, diffIds(state), below?.dir, stepLayerOptions(ctx), async (dirs) => {
      if (exists) return;
      // Straight into the upperdir when no lower symlink or file is in the way (no overlay mount needed).
      if (owner !== 'by-name' && (await (await stepLayer()).prepareDirectWrite(dirs, resolved, false))) {
        const target = path.join(dirs.upperDir, resolved);
        await chownCreated(await mkdir(target, { recursive: true, mode: 0o755 }), target, owner);
        return;
      }
      await (await stepLayer()).withMergedRootfs(dirs, ctx.signal, async (rootfs) => {
        const host = await (await users()).resolveInRoot(rootfs, resolved);
        // BuildKit's file-op owner rules: an unknown name is 0:0, an unknown group name keeps the gid (no error).
        const ids = owner === 'by-name' ? await (await users()).fileOpOwner(rootfs, user) : owner;
        await chownCreated(await mkdir(host, { recursive: true, mode: 0o755 }), host, ids);
      });
    });
    return pending;
  });
}

function stepLayerOptions(ctx: DispatchContext): { signal?: AbortSignal; sourceDateEpoch?: number; overlay: OverlayCapabilities } {
  return {
    overlay: ctx.host.overlay,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.options.sourceDateEpoch !== undefined ? { sourceDateEpoch: ctx.options.sourceDateEpoch } : {}),
  };
}

/**
 * Whether a directory exists in the stage's filesystem (overlay rules: the top-most layer that has the path wins; a
 * whiteout or file on the way in a higher layer hides it). Directories made opaque above are not looked at.
 */
async function existsInLayers(ctx: DispatchContext, state: StageState, containerPath: string): Promise<boolean> {
  if (state.layers.length === 0 && state.pending === undefined) return containerPath === '/';
  // A pending step's upperdir is the top-most layer (a whiteout there is a character device: not a directory).
  const lowers = [...(state.pending ? [state.pending.dir] : []), ...(await (await stepLayer()).lowerDirsOf(ctx.store, diffIds(state), ctx.signal))];
  const parts = containerPath.split('/').filter((p) => p !== '');
  for (const dir of lowers) {
    let prefix = dir;
    for (const [i, part] of parts.entries()) {
      prefix = path.join(prefix, part);
      const st = await lstat(prefix).catch(() => undefined);
      if (st === undefined) break; // this layer says nothing about the path: look below
      if (!st.isDirectory()) return false; // a whiteout, file or symlink here hides (or redirects) what is below
      if (i === parts.length - 1) return true;
    }
  }
  return false;
}

/** The script a shell-form RUN with heredocs runs, as BuildKit builds it. */
function heredocScript(ins: RunInstruction, script: string, files: readonly HeredocFile[]): { argvScript: string } {
  const first = files[0];
  // `RUN <<EOF` alone: the heredoc body is the script.
  if (files.length === 1 && first && /^\s*\d*<<-?\s*['"]?[^\s'"]+['"]?\s*$/.test(script)) {
    return { argvScript: first.chomp ? chompHeredocContent(first.data) : first.data };
  }
  // Otherwise the shell itself reads the heredocs: hand it the line followed by the bodies.
  let out = script;
  for (const f of files) out += `\n${f.data}${f.name}`;
  void ins;
  return { argvScript: out };
}

async function dispatchRun(ctx: DispatchContext, state: StageState, ins: RunInstruction, step: StepRef, created: string, stageName: string): Promise<StepOutcome> {
  const cfg = state.config.config;
  let argv: string[];
  if (ins.command.form === 'shell') {
    const script = ins.heredocs.length > 0 ? heredocScript(ins, ins.command.script, ins.heredocs).argvScript : ins.command.script;
    argv = [...(cfg.Shell ?? ['/bin/sh', '-c']), script];
  } else argv = [...ins.command.argv];
  // What the step's processes get (before mounts and proxies); all of it but proxies is in the key, ARG values
  // included (those inherited from a parent stage too, which this stage's history does not show).
  const runEnv = [...state.env].map(([k, v]) => `${k}=${v}`);
  const { network, security } = runPrivileges(ins, ctx.options, (message) => fail(ctx, ins, message));
  if (ins.devices.length > 0) fail(ctx, ins, 'RUN --device is not supported by kiln (no CDI devices on this host)');
  const mounts = ins.mounts.map((m) => (m.needsExpansion ? parseMount(m.spec, (w) => expand(ctx, ins, state, w)) : m));
  const mountKeys: string[] = [];
  for (const m of mounts) {
    if (m.type === 'bind') {
      const local = m.from ? ctx.localContext(m.from) : ctx.context();
      const from = m.from && !local ? await ctx.stageResult(m.from, ins) : undefined;
      mountKeys.push(`bind ${m.target} ${m.source ?? ''} ${from ? from.key : await contextDigestFor(await local!, m.source ?? '.')} ${m.readOnly}`);
    } else if (m.type === 'secret') {
      // Secret values never enter keys; where they appear (file, variable) does.
      mountKeys.push(`secret ${m.id ?? m.source ?? ''} ${m.target ?? ''}${m.env !== undefined ? ` env=${m.env}` : ''}`);
    }
    else mountKeys.push(`${m.type} ${m.target ?? ''} ${m.id ?? ''} ${m.sharing ?? ''} ${m.mode ?? ''} ${m.uid ?? ''} ${m.gid ?? ''}`);
  }
  const shownArgs = runHistoryArgs(state).filter(notProxy);
  const histArgs = shownArgs.length ? `|${shownArgs.length} ${shownArgs.join(' ')} ` : '';
  const createdBy = `RUN ${histArgs}${argv.join(' ')} # buildkit`;
  const key = cacheKey({
    parent: state.key,
    instruction: `RUN ${JSON.stringify(argv)} network=${network}${security === 'insecure' ? ' security=insecure' : ''} user=${cfg.User ?? ''} workdir=${cfg.WorkingDir ?? ''}`,
    args: runEnv.filter(notProxy),
    inputs: mountKeys,
  });
  return cachedLayerStep(ctx, state, key, created, createdBy, async () => {
    // The step below, if still pending, is hashed once this container runs (see PendingStepLayer).
    const below = state.pending;
    const { pending } = await (await stepLayer()).runStepLayer(ctx.store, diffIds(state), below?.dir, stepLayerOptions(ctx), async (dirs) => {
      const extra = await prepareMounts(ctx, ins, state, mounts, dirs.scratch, stageName);
      try {
        // Proxy build args reach every RUN without an ARG line, as Docker's predefined ARGs do: only where the step has
        // no such variable of its own, and never in the cache key or the history (they may carry credentials).
        const env = withEnv(runEnv, { set: extra.env.set, defaults: [...extra.env.defaults, ...proxyEnv(ctx.options.buildArgs)] });
        if (!env.some((e) => e.startsWith('PATH='))) env.unshift(DEFAULT_PATH_ENV);
        const { runContainer } = await loadContainer();
        const result = await runContainer(
          {
            rootfs: { lowerDirs: dirs.lowerDirs, upperDir: dirs.upperDir, workDir: dirs.workDir },
            args: argv,
            env,
            cwd: cfg.WorkingDir || '/',
            ...(cfg.User ? { user: cfg.User } : {}),
            network,
            // BuildKit's name for every RUN container: what `hostname` prints, and in /etc/hosts.
            hostname: 'buildkitsandbox',
            buildStep: true,
            ...(security === 'insecure' ? { security } : {}),
            mounts: extra.mounts,
            runtime: ctx.options.runtime,
          },
          {
            ...(ctx.signal ? { signal: ctx.signal } : {}),
            onOutput: (chunk, stream) => ctx.emitOutput(step, chunk, stream),
            onStarted: () => below?.startHashing(),
            versionCacheDir: path.join(ctx.store.root, 'cache'),
            host: ctx.host,
            ...(ctx.networks === undefined ? {} : { networks: ctx.networks }),
          },
        );
        ctx.runtimeWarnings(result.warnings);
        if (result.exitCode !== 0) {
          const shown = ins.command.form === 'shell' ? argv.join(' ') : JSON.stringify(argv);
          const why = result.runtimeError ? `: ${result.runtimeError}` : '';
          throw new StepFailedError(`process "${shown}" did not complete successfully: exit code: ${result.exitCode}${why}`, {
            file: ctx.file,
            range: ins.range,
            instruction: ins.source,
            exitCode: result.exitCode,
            outputTail: result.outputTail,
          });
        }
      } finally {
        await extra.release();
      }
    });
    return pending;
  });
}

/** A digest of a context path, for bind mounts from the context (the filtered context: what the mount shows). */
async function contextDigestFor(c: BuildContext, source: string): Promise<string> {
  const entry = c.resolveEntry(source);
  if (entry === undefined) throw new Error(`failed to compute cache key: "/${source.replace(/^\/+/, '')}": not found`);
  return c.digestSources([entry]);
}

/** Turns RUN --mount specs into the container's extra mounts; `release` undoes what it set up. */
async function prepareMounts(
  ctx: DispatchContext,
  ins: RunInstruction,
  state: StageState,
  mounts: readonly RunMount[],
  scratch: string,
  stageName: string,
): Promise<{ mounts: ExtraMount[]; env: MountEnv; release: () => Promise<void> }> {
  const out: ExtraMount[] = [];
  const env: MountEnv = { set: [], defaults: [] };
  let sshMounts = 0;
  const releases: Array<() => Promise<void>> = [];
  const release = async (): Promise<void> => {
    for (const r of releases.reverse()) await r().catch(() => {});
  };
  try {
    let n = 0;
    for (const m of mounts) {
      n++;
      const target = m.target ? path.posix.resolve(state.config.config.WorkingDir || '/', m.target) : undefined;
      switch (m.type) {
        case 'tmpfs':
          if (!target) fail(ctx, ins, 'mount type tmpfs needs a target');
          out.push({ type: 'tmpfs', target, ...(m.sizeLimit ? { sizeBytes: m.sizeLimit } : {}) });
          break;
        case 'cache': {
          if (!target) fail(ctx, ins, 'mount type cache needs a target');
          // One directory per cache id (default: the target), persisted in the store across builds.
          // `private` gets a fresh directory per use; `locked` serialises users through a store lock.
          const id = m.id ?? target;
          const dirName = sha256Hex(`${id}`).slice(0, 32);
          let dir = path.join(ctx.store.root, 'cache-mounts', dirName);
          if (m.sharing === 'private') dir = path.join(scratch, `cache-private-${n}`);
          const fresh = !(await lstat(dir).catch(() => undefined));
          await mkdir(dir, { recursive: true });
          if (fresh) {
            await chmodFile(dir, m.mode ?? 0o755);
            if (m.uid !== undefined || m.gid !== undefined) {
              const { chown } = await import('node:fs/promises');
              await chown(dir, m.uid ?? 0, m.gid ?? 0);
            }
          }
          if (m.sharing === 'locked') {
            let unlock!: () => void;
            const held = new Promise<void>((r) => (unlock = r));
            let lock!: Promise<void>;
            const acquired = new Promise<void>((resolve) => {
              lock = ctx.store.withLock(`cache-mount-${dirName}`, async () => {
                resolve();
                await held;
              });
            });
            await Promise.race([acquired, lock]);
            // Release waits until the lock file is really gone: an unawaited removal would outlive build().
            releases.push(async () => {
              unlock();
              await lock;
            });
          }
          out.push({ type: 'bind', source: dir, target, readonly: m.readOnly });
          break;
        }
        case 'bind': {
          if (!target) fail(ctx, ins, 'mount type bind needs a target');
          let source: string;
          let privateView = false;
          const local = m.from ? ctx.localContext(m.from) : ctx.context();
          if (local === undefined) {
            const from = await ctx.stageResult(m.from!, ins);
            const view = await mountStageView(ctx, from, scratch, `bind-${n}`);
            releases.push(view.release);
            source = await (await users()).resolveInRoot(view.rootfs, m.source ?? '/');
          } else {
            // The build context as the build sees it: resolved inside it (a symlink cannot lead out of it nor to
            // an ignored file), and a directory shown without what .dockerignore leaves out.
            const c = await local;
            const entry = c.resolveEntry(m.source ?? '/');
            if (entry === undefined) fail(ctx, ins, `failed to mount ${m.source ?? '/'}: not found`);
            source = entry.abs;
            const hidden = entry.type === 'dir' ? await c.hiddenBelow(entry) : [];
            if (hidden.length > 0) {
              const { mountFilteredView } = await import('../runtime/filtered-view.js');
              const view = await mountFilteredView(entry.abs, hidden, path.join(scratch, `bind-view-${n}`), ctx.signal, ctx.host.overlay);
              releases.push(view.release);
              source = view.dir;
              privateView = true; // writes land in the view's own upperdir
            }
          }
          if (!(await lstat(source).catch(() => undefined))) fail(ctx, ins, `failed to mount ${m.source ?? '/'}: not found`);
          // Binds are read-only unless `rw`: writes must never reach the context or another stage.
          // A `rw` bind gets a private copy-on-write view instead.
          if (!m.readOnly && !privateView) {
            const rw = path.join(scratch, `bind-rw-${n}`);
            await mkdir(path.join(rw, 'upper'), { recursive: true });
            await mkdir(path.join(rw, 'work'));
            await mkdir(path.join(rw, 'merged'));
            const st = await lstat(source);
            if (st.isDirectory()) {
              const { mountOverlay } = await loadOverlay();
              const mnt = await mountOverlay({ lowerDirs: [source], upperDir: path.join(rw, 'upper'), workDir: path.join(rw, 'work'), target: path.join(rw, 'merged'), capabilities: ctx.host.overlay });
              releases.push(() => mnt.unmount());
              source = path.join(rw, 'merged');
            } else {
              // A single file: the step writes to a private copy (a bind of the file itself would write through).
              const copy = path.join(rw, 'file');
              if (!st.isFile()) fail(ctx, ins, `bind mount source ${m.source ?? '/'} is not a regular file or directory`);
              // Not fs.copyFile, which spins forever on a file truncated meanwhile (see store/copy-file.ts).
              await copyRegularFile(source, copy, { size: st.size });
              await chmodFile(copy, st.mode & 0o7777);
              source = copy;
            }
          }
          out.push({ type: 'bind', source, target, readonly: m.readOnly });
          break;
        }
        case 'secret': {
          const id = m.id ?? (m.target ? path.posix.basename(m.target) : undefined);
          if (!id) fail(ctx, ins, 'secret mount needs an id or a target');
          const secret = ctx.options.secrets.find((s) => s.id === id);
          let value: Buffer | undefined;
          if (secret && 'src' in secret) value = await readFile(secret.src);
          else if (secret && 'env' in secret && process.env[secret.env] !== undefined) value = Buffer.from(process.env[secret.env]!);
          if (value === undefined) {
            if (m.required) fail(ctx, ins, `secret ${id} not found`);
            break;
          }
          // env= puts the value in the step's environment (only this step's: never the image config or history);
          // a file is mounted too when there is no env= or a target is also given.
          if (m.env !== undefined) env.set.push(`${m.env}=${value.toString('utf8')}`);
          if (m.env !== undefined && m.target === undefined) break;
          // In memory-backed storage only, never on the store's disk (see runtime/secret-file.ts).
          const { writeSecretFile } = await import('../runtime/secret-file.js');
          const secretFile = await writeSecretFile(value, m.mode ?? 0o400).catch((err: unknown) => fail(ctx, ins, `secret ${id}: ${messageOf(err)}`));
          releases.push(() => secretFile.release());
          out.push({ type: 'bind', source: secretFile.file, target: target ?? `/run/secrets/${id}`, readonly: true });
          break;
        }
        case 'ssh': {
          // As BuildKit: the Nth ssh mount defaults to /run/buildkit/ssh_agent.N, and the first one's path becomes
          // SSH_AUTH_SOCK unless the step's environment already has one.
          const id = m.id ?? 'default';
          const socketTarget = target ?? `/run/buildkit/ssh_agent.${sshMounts}`;
          if (sshMounts++ === 0) env.defaults.push(`SSH_AUTH_SOCK=${socketTarget}`);
          const agent = ctx.options.ssh.find((a) => a.id === id);
          if (agent === undefined) {
            if (m.required) fail(ctx, ins, `no SSH agent for id ${JSON.stringify(id)}: pass one with --ssh ${id}=SOCKET (or --ssh ${id} for $SSH_AUTH_SOCK)`);
            break;
          }
          const { startAgentProxy } = await import('../runtime/ssh-agent-proxy.js');
          const proxy = await startAgentProxy(agent.socket, { mode: m.mode ?? 0o600, uid: m.uid ?? 0, gid: m.gid ?? 0 }).catch((err: unknown) =>
            fail(ctx, ins, `ssh mount ${JSON.stringify(id)}: ${messageOf(err)}`),
          );
          releases.push(() => proxy.close());
          out.push({ type: 'bind', source: proxy.socket, target: socketTarget, readonly: false });
          break;
        }
      }
    }
    void stageName;
    return { mounts: out, env, release };
  } catch (err) {
    await release();
    throw err;
  }
}

/** Environment a step's mounts add: `set` overrides the step's variables, `defaults` only fills in missing ones. */
interface MountEnv {
  readonly set: string[];
  readonly defaults: string[];
}

/** `env` (KEY=VALUE entries) with `extra` applied (see {@link MountEnv}). */
function withEnv(env: readonly string[], extra: MountEnv): string[] {
  const keyOf = (e: string): string => e.slice(0, e.indexOf('='));
  const out = [...env];
  for (const e of extra.defaults) if (!out.some((o) => keyOf(o) === keyOf(e))) out.push(e);
  for (const e of extra.set) {
    const at = out.findIndex((o) => keyOf(o) === keyOf(e));
    if (at >= 0) out[at] = e;
    else out.push(e);
  }
  return out;
}

/** A read-only-in-spirit merged view of a finished stage (a throwaway upperdir takes any writes). */
async function mountStageView(ctx: DispatchContext, stage: StageState, scratch: string, name: string): Promise<{ rootfs: string; release: () => Promise<void> }> {
  const base = path.join(scratch, name);
  await mkdir(path.join(base, 'upper'), { recursive: true });
  await mkdir(path.join(base, 'work'));
  await mkdir(path.join(base, 'merged'));
  const lowers = await (await stepLayer()).lowerDirsOf(ctx.store, diffIds(stage), ctx.signal);
  const { mountOverlay } = await loadOverlay();
  const mount = await mountOverlay({ lowerDirs: lowers, upperDir: path.join(base, 'upper'), workDir: path.join(base, 'work'), target: path.join(base, 'merged'), capabilities: ctx.host.overlay });
  return { rootfs: path.join(base, 'merged'), release: () => mount.unmount() };
}

/** Resolves a source inside a stage's rootfs (wildcards per segment, symlinks clamped to the rootfs). */
async function resolveStageSource(rootfs: string, source: string): Promise<CopySource[]> {
  const clean = path.posix.normalize(`/${source}`);
  const segments = clean.split('/').filter(Boolean);
  let current = [''];
  for (const seg of segments) {
    const next: string[] = [];
    for (const base of current) {
      if (!hasWildcard(seg)) {
        next.push(`${base}/${seg}`);
        continue;
      }
      const matches = segmentMatcher(seg);
      const dir = await (await users()).resolveInRoot(rootfs, base || '/');
      for (const name of (await readdir(dir).catch(() => [] as string[])).sort()) if (matches(name)) next.push(`${base}/${name}`);
    }
    current = next;
  }
  const out: CopySource[] = [];
  for (const rel of current) {
    const abs = await (await users()).resolveInRoot(rootfs, rel || '/');
    const stats = await lstat(abs).catch(() => undefined);
    if (!stats) continue;
    out.push({ abs, rel: rel.replace(/^\//, ''), stats, type: stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'symlink' : 'file' });
  }
  return out;
}

/** Whether a wildcard source that matched nothing is allowed: the directory its first wildcard looks in exists. */
async function emptyWildcardAllowed(rootfs: string, source: string): Promise<boolean> {
  const segments = path.posix.normalize(`/${source}`).split('/').filter(Boolean);
  const first = segments.findIndex(hasWildcard);
  if (first === -1) return false;
  const dir = await (await users()).resolveInRoot(rootfs, `/${segments.slice(0, first).join('/')}`);
  return (await lstat(dir).catch(() => undefined))?.isDirectory() === true;
}

async function listTree(dir: CopySource): Promise<CopySource[]> {
  const out: CopySource[] = [];
  const visit = async (abs: string, rel: string): Promise<void> => {
    for (const name of (await readdir(abs)).sort()) {
      const childAbs = path.join(abs, name);
      const stats = await lstat(childAbs);
      const type = stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'symlink' : 'file';
      out.push({ abs: childAbs, rel: `${rel}/${name}`, stats, type });
      if (type === 'dir') await visit(childAbs, `${rel}/${name}`);
    }
  };
  await visit(dir.abs, dir.rel);
  return out;
}

const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

async function dispatchCopy(ctx: DispatchContext, state: StageState, ins: CopyInstruction | AddInstruction, step: StepRef, created: string): Promise<StepOutcome> {
  const cfg = state.config.config;
  const word = (w: string): string => expand(ctx, ins, state, w);
  const sources = ins.sources.map(word);
  let dest = word(ins.dest);
  const writtenDest = dest;
  const workdir = cfg.WorkingDir || '/';
  const destIsDir = dest.endsWith('/') || dest === '.' || dest.endsWith('/.');
  dest = path.posix.resolve(workdir, dest) + (destIsDir && !dest.endsWith('/') ? '/' : dest.endsWith('/') && dest !== '/' ? '/' : '');
  if (dest === '//') dest = '/';
  const chown = ins.chown ? word(ins.chown) : undefined;
  let mode: number | undefined;
  if (ins.chmod) {
    try {
      mode = parseChmod(word(ins.chmod));
    } catch (err) {
      fail(ctx, ins, messageOf(err), err);
    }
  }
  const from = ins.kind === 'copy' ? ins.from : undefined;
  if (ins.kind === 'copy' && sources.some(isUrl)) fail(ctx, ins, "source can't be a URL for COPY");
  if (ins.kind === 'add' && sources.some((s) => /^git@|\.git(#|$)/.test(s))) fail(ctx, ins, 'ADD of a git repository is not supported by kiln');
  // BuildKit's rules for ADD --checksum: one source, fetched over http(s).
  if (ins.kind === 'add' && ins.checksum) {
    if (sources.length + ins.contents.length !== 1) fail(ctx, ins, "checksum can't be specified for multiple sources");
    if (!isUrl(sources[0] ?? '')) fail(ctx, ins, "checksum can't be specified for non-HTTP(S) sources");
  }
  const excludes = ins.excludes.map(word);
  let excluder: PatternMatcher | undefined;
  try {
    if (excludes.length > 0) excluder = PatternMatcher.compile(excludes);
  } catch (err) {
    fail(ctx, ins, `invalid --exclude pattern: ${messageOf(err)}`, err);
  }
  // --exclude patterns match a selected source by its path or name, and what is inside a selected
  // directory by its path relative to that directory (as BuildKit's copy applies them).
  const topExcluded = (rel: string): boolean =>
    excluder !== undefined && (excluder.matchesOrParentMatches(rel) || excluder.matchesOrParentMatches(path.posix.basename(rel)));
  const innerExcluded = (top: string, rel: string): boolean =>
    excluder !== undefined && excluder.matchesOrParentMatches(path.posix.relative(top, rel));
  const filterTree = <T extends { rel: string }>(top: { rel: string }, list: readonly T[]): T[] =>
    excluder === undefined ? [...list] : list.filter((e) => !innerExcluded(top.rel.replace(/^\/+/, ''), e.rel.replace(/^\/+/, '')));
  if (ins.parents && !dest.endsWith('/')) fail(ctx, ins, 'COPY --parents needs a destination directory ending in /');

  // Inputs of the cache key: what the sources hold, never their mtimes.
  const inputs: string[] = [];
  const urlSources: UrlSource[] = [];
  let stage: StageState | undefined;
  let contextEntries: ContextEntry[][] = [];
  // The files come from the build context, a named local context (`COPY --from=NAME` with NAME=DIR), or a stage/image.
  const sourceContext = from === undefined ? ctx.context() : ctx.localContext(from);
  if (sourceContext === undefined) {
    stage = await ctx.stageResult(from!, ins);
    inputs.push(`from ${stage.key}`, ...sources);
  } else {
    const c = await sourceContext;
    try {
      contextEntries = await Promise.all(sources.filter((s) => !isUrl(s)).map((s) => c.resolveSource(s)));
    } catch (err) {
      throw new StepFailedError(messageOf(err), { file: ctx.file, range: ins.range, instruction: ins.source }, { cause: err });
    }
    if (excluder) contextEntries = contextEntries.map((entries) => entries.filter((e) => !topExcluded(e.rel)));
    for (const entries of contextEntries) {
      inputs.push(await c.digestSources(entries, excluder ? (top, rel) => innerExcluded(top.rel, rel) : undefined));
    }
    // Hard links inside a source directory are copied as links (runtime/handlers/copy.ts): linking or unlinking
    // two context files changes the layer, so it changes the key (only when there are such links).
    for (const top of contextEntries.flat()) {
      if (top.type !== 'dir') continue;
      const groups = new Map<string, string[]>();
      for (const e of filterTree(top, await c.walk(top))) {
        if (e.type !== 'file' || e.stats.nlink < 2) continue;
        const inode = `${e.stats.dev}:${e.stats.ino}`;
        groups.set(inode, [...(groups.get(inode) ?? []), e.rel]);
      }
      const linked = [...groups.values()].filter((g) => g.length > 1).map((g) => g.join('='));
      if (linked.length > 0) inputs.push(`hardlinks ${top.rel} ${linked.join(' ')}`);
    }
    // A URL's part of the key is its content's digest: asked of the server now (conditionally, when an earlier
    // download is stored), or taken from --checksum without a request (src/net/http-source.ts).
    for (const s of sources.filter(isUrl)) {
      const checksum = ins.kind === 'add' && ins.checksum ? word(ins.checksum) : undefined;
      const { resolveUrlForKey, redactUrl } = await import('../net/http-source.js');
      const onProgress = (message: string): void => ctx.options.onEvent({ type: 'progress', id: `url ${redactUrl(s)}`, message });
      let src: UrlSource;
      try {
        src = await resolveUrlForKey(ctx.store, s, { ...(checksum !== undefined ? { checksum } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}), onProgress });
      } catch (err) {
        if (ctx.signal?.aborted) throw err;
        throw new StepFailedError(messageOf(err), { file: ctx.file, range: ins.range, instruction: ins.source }, { cause: err });
      }
      urlSources.push(src);
      inputs.push(`url ${s} ${src.name} ${src.digest} ${src.lastModified ?? ''}`);
    }
  }
  for (const c of ins.contents) inputs.push(`inline ${c.path} ${c.expand ? word(c.data) : c.data}`);
  const kw = ins.kind.toUpperCase();
  const flags = [
    from !== undefined ? `--from=${from}` : '',
    chown ? `--chown=${chown}` : '',
    ins.chmod ? `--chmod=${ins.chmod}` : '',
    ins.parents ? '--parents' : '',
    ...excludes.map((e) => `--exclude=${e}`),
  ].filter(Boolean);
  const text = `${kw} ${[...flags, ...sources, ...ins.contents.map((c) => `<<${c.path}`), dest].join(' ')}`;
  const key = cacheKey({ parent: state.key, instruction: text, inputs });
  const numericChown = chown !== undefined && /^\d+(:\d+)?$/.test(chown);
  // A direct COPY from the context hard-links the files an earlier build of this step already stored
  // (store/file-reuse.ts); the merged view is another filesystem, where links cannot reach.
  let reuse: import('../store/file-reuse.js').CopyReuse | undefined;
  // The history shows the sources and the destination as written (expanded, not resolved against WORKDIR) after
  // --parents, --chown and --chmod (expanded), as BuildKit's dispatchCopy writes it; --from, --link and --exclude
  // are left out: `COPY --from=build --chown=1:1 app ./` is `COPY --chown=1:1 app ./ # buildkit`.
  const histFlags = [ins.parents ? '--parents' : '', chown ? `--chown=${chown}` : '', ins.chmod ? `--chmod=${word(ins.chmod)}` : ''].filter(Boolean);
  const createdBy = `${kw} ${[...histFlags, ...sources, ...ins.contents.map((c) => `<<${c.path}`), writtenDest].join(' ')} # buildkit`;
  return cachedLayerStep(ctx, state, key, created, createdBy, async () => {
    // A COPY mostly waits for threadpool work: the step below, if still pending, is hashed meanwhile.
    state.pending?.startHashing();
    // Fast path: a plain COPY into a destination the lower layers do not populate writes straight into the
    // upperdir (no overlay mount); anything that needs the merged view (names in --chown, ADD's archives,
    // heredoc files over existing ones, a destination with lower content) goes through the mount.
    const direct = ins.kind === 'copy' && ins.contents.length === 0 && (chown === undefined || numericChown);
    // Wildcards of the context that matched nothing (and nothing else to copy): BuildKit's copy then changes nothing,
    // not even the destination's parents, which the direct path would copy up into the layer.
    const nothingToCopy = sourceContext !== undefined && ins.contents.length === 0 && urlSources.length === 0 && contextEntries.every((e) => e.length === 0);
    const write = async (dirs: StepDirs): Promise<void> => {
      if (nothingToCopy) return;
      if (direct && (await (await stepLayer()).prepareDirectWrite(dirs, dest, true))) {
        if (sourceContext !== undefined && contextEntries.length > 0) {
          const { CopyReuse } = await import('../store/file-reuse.js');
          reuse = await CopyReuse.open(ctx.store, `${(await sourceContext).dir}\0${text}`);
        }
        return copyWork(dirs.upperDir, dirs);
      }
      return (await stepLayer()).withMergedRootfs(dirs, ctx.signal, (rootfs) => copyWork(rootfs, dirs));
    };
    const { pending } = await (await stepLayer()).runStepLayer(ctx.store, diffIds(state), state.pending?.dir, stepLayerOptions(ctx), (dirs) =>
      write(dirs).catch((err: unknown) => {
        if (err instanceof DockerfileError || err instanceof StepFailedError) throw err;
        if ((err as Error)?.name === 'AbortError' || ctx.signal?.aborted) throw err;
        throw new StepFailedError(messageOf(err), { file: ctx.file, range: ins.range, instruction: ins.source }, { cause: err });
      }),
    );
    // The reuse record names the layer by its diffID: written once the layer is hashed and stored.
    if (reuse === undefined) return pending;
    const copyReuse = reuse;
    return {
      dir: pending.dir,
      startHashing: () => pending.startHashing(),
      adopt: async () => {
        const layer = await pending.adopt();
        await copyReuse.commit(layer.diffId);
        return layer;
      },
    } satisfies PendingStepLayer;
  });

  /** The reuse placer for a direct copy into `rootfs` (the upperdir), with the context's digests of `files`. */
  async function placerFor(rootfs: string, c: BuildContext, tops: readonly ContextEntry[], list: (d: ContextEntry) => Promise<ContextEntry[]>): Promise<{ placer?: NonNullable<CopyRequest['placer']> }> {
    if (!reuse) return {};
    const digests = new Map<string, string>();
    for (const top of tops) {
      for (const e of top.type === 'dir' ? await list(top) : [top]) if (e.type === 'file') digests.set(e.abs, await c.fileDigest(e));
    }
    return { placer: reuse.placer(rootfs, digests) };
  }

  async function copyWork(rootfs: string, dirs: StepDirs): Promise<void> {
    const owner = chown ? (numericChown ? numericOwner(chown) : await resolveChown(rootfs, chown)) : undefined;
    const mtime = new Date((ctx.options.sourceDateEpoch ?? 0) * 1000);
    for (const c of ins.contents) {
      const target = dest.endsWith('/') ? path.posix.join(dest, c.path) : dest;
      await (await copyHandlers()).writeIntoRootfs(rootfs, target, c.expand ? word(c.data) : c.data, { ...(owner ? { owner } : {}), ...(mode !== undefined ? { mode } : {}), mtime });
    }
    if (stage) {
      const view = await mountStageView(ctx, stage, dirs.scratch, 'from');
      try {
        const found: Array<{ source: string; entries: CopySource[] }> = [];
        for (const s of sources) {
          const r = await resolveStageSource(view.rootfs, s);
          // A wildcard may match nothing (BuildKit's AllowEmptyWildcard) if the directory it looks in exists.
          if (r.length === 0 && !(await emptyWildcardAllowed(view.rootfs, s))) {
            throw new Error(`failed to compute cache key: "/${s.replace(/^\/+/, '')}": not found`);
          }
          found.push({ source: s, entries: r.filter((e) => !topExcluded(e.rel)) });
        }
        const list = async (d: CopySource): Promise<CopySource[]> => filterTree(d, await listTree(d));
        const common = { list, keepOwner: true, ...(owner ? { owner } : {}), ...(mode !== undefined ? { mode } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) };
        if (ins.parents) for (const f of found) await copyWithParents(rootfs, f.source, f.entries, dest, common);
        else await (await copyHandlers()).copyIntoRootfs(rootfs, { sources: found.flatMap((f) => f.entries), dest, ...common });
      } finally {
        await view.release();
      }
    } else if (contextEntries.length > 0 && sourceContext !== undefined) {
      const c = await sourceContext;
      const all = contextEntries.flat();
      const list = async (d: CopySource): Promise<ContextEntry[]> => filterTree(d, await c.walk(d as ContextEntry));
      const placer = await placerFor(rootfs, c, all, list);
      if (ins.kind === 'copy' && ins.parents) {
        const local = sources.filter((s) => !isUrl(s));
        for (let i = 0; i < local.length; i++) {
          await copyWithParents(rootfs, local[i]!, contextEntries[i] ?? [], dest, { list, keepOwner: false, ...placer, ...(owner ? { owner } : {}), ...(mode !== undefined ? { mode } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) });
        }
      } else if (ins.kind === 'add') {
        const { addLocalSources } = await import('../runtime/handlers/add.js');
        await addLocalSources(rootfs, all, { dest, list, ...(owner ? { owner } : {}), ...(mode !== undefined ? { mode } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) });
      } else {
        await (await copyHandlers()).copyIntoRootfs(rootfs, { sources: all, list, dest, keepOwner: false, ...placer, ...(owner ? { owner } : {}), ...(mode !== undefined ? { mode } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) });
      }
    }
    if (urlSources.length > 0) {
      const { addUrlSources } = await import('../runtime/handlers/add.js');
      await addUrlSources(rootfs, dirs.scratch, ctx.store, urlSources, { dest, ...(owner ? { owner } : {}), ...(mode !== undefined ? { mode } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) });
    }
  }
}

/** Gives `owner` the directories a recursive mkdir made: `first` (what mkdir returned) down to `target`. */
async function chownCreated(first: string | undefined, target: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
  if (first === undefined || owner === undefined) return;
  for (let p = target; ; p = path.dirname(p)) {
    await chown(p, owner.uid, owner.gid);
    if (p === first || p === path.dirname(p)) break;
  }
}

/** `--chown=UID[:GID]` (numbers need no /etc/passwd; a missing GID is the UID, as in docker). */
function numericOwner(spec: string): { uid: number; gid: number } {
  const [u, g] = spec.split(':');
  return { uid: Number(u), gid: Number(g ?? u) };
}

/**
 * COPY --parents: each selected path keeps its directories under `dest` (`a/b/f` → `dest/a/b/f`). A `/./`
 * in the source marks where the kept part starts (`x/./a/f` → `dest/a/f`), as in BuildKit.
 */
async function copyWithParents(
  rootfs: string,
  source: string,
  entries: readonly CopySource[],
  dest: string,
  common: Omit<CopyRequest, 'sources' | 'dest'>,
): Promise<void> {
  const pivot = source.indexOf('/./');
  const prefix = pivot < 0 ? '' : path.posix.normalize(`/${source.slice(0, pivot)}`).replace(/^\/+/, '');
  for (const e of entries) {
    let keep = e.rel.replace(/^\/+/, '');
    if (prefix && (keep === prefix || keep.startsWith(`${prefix}/`))) keep = keep.slice(prefix.length + 1);
    const target = keep === '' ? dest : path.posix.join(dest, keep) + (e.type === 'dir' ? '/' : '');
    await (await copyHandlers()).copyIntoRootfs(rootfs, { ...common, sources: [e], dest: target });
  }
}

/** `--chown=user:group` resolved against the destination image's /etc/passwd and /etc/group. */
async function resolveChown(rootfs: string, spec: string): Promise<{ uid: number; gid: number }> {
  const u = await (await users()).resolveUser(rootfs, spec);
  // docker: `--chown=user` without a group uses the user's primary group.
  return { uid: u.uid, gid: u.gid };
}
