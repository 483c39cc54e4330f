/**
 * COPY and ADD: files from the build context, a named local context, another stage or image (`--from`), heredocs,
 * and for ADD URLs and local archives, into the stage's filesystem as one layer. The key holds what the sources
 * hold (digests, never mtimes), the flags and the destination; the copying itself is src/runtime/handlers/'s.
 */
import path from 'node:path';
import { DockerfileError, StepFailedError, messageOf } from '../../errors.js';
import type { AddInstruction, CopyInstruction } from '../../parser/instructions.js';
import { PatternMatcher } from '../../parser/dockerignore.js';
import type { UrlSource } from '../../net/http-source.js';
import type { CopyRequest, CopySource } from '../../runtime/handlers/copy.js';
import type { PendingStepLayer, StepDirs } from '../../runtime/step-layer.js';
import type { CopyReuse } from '../../store/file-reuse.js';
import { cacheKey } from '../cache-key.js';
import { parseChmod } from '../chmod.js';
import type { BuildContext, ContextEntry } from '../context.js';
import { cachedLayerStep } from '../layer-step.js';
import { diffIds, expand, fail, numericOwner, stepLayerOptions, type DispatchContext, type InstructionHandler, type StageState } from '../step-context.js';

// The filesystem work of a step loads on a cache miss only: a fully cached build never needs it, and each
// module costs start-up time.
const stepLayer = () => import('../../runtime/step-layer.js');
const copyHandlers = () => import('../../runtime/handlers/copy.js');
const stageView = () => import('../../runtime/stage-view.js');

const isUrl = (s: string): boolean => /^https?:\/\//i.test(s);

/** What a COPY or ADD copies, from where, and how: its words expanded and its sources resolved for the key. */
interface CopyPlan {
  readonly ins: CopyInstruction | AddInstruction;
  /** Expands a word with the stage's environment. */
  readonly word: (w: string) => string;
  readonly sources: readonly string[];
  /** The destination in the container, absolute, a trailing `/` kept for a directory. */
  readonly dest: string;
  readonly chown: string | undefined;
  readonly mode: number | undefined;
  /** A selected source's own path or name is excluded (--exclude). */
  readonly topExcluded: (rel: string) => boolean;
  /** `list` without what --exclude leaves out below the selected directory `top`. */
  readonly filterTree: <T extends { rel: string }>(top: { rel: string }, list: readonly T[]) => T[];
  /** The stage or image `--from` names (undefined: a context). */
  readonly stage: StageState | undefined;
  /** The context the sources come from (undefined: a stage or image). */
  readonly sourceContext: Promise<BuildContext> | undefined;
  /** The context entries each local source selected. */
  readonly contextEntries: readonly ContextEntry[][];
  readonly urlSources: readonly UrlSource[];
  /** The step's canonical text (in the key, and what names its file-reuse record). */
  readonly text: string;
}

/** Checks the flags, expands the words and resolves the sources; returns the plan and the key's inputs. */
async function planCopy(ctx: DispatchContext, state: StageState, ins: CopyInstruction | AddInstruction): Promise<{ plan: CopyPlan; inputs: string[]; createdBy: string }> {
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
      const { resolveUrlForKey, redactUrl } = await import('../../net/http-source.js');
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
  // The history shows the sources and the destination as written (expanded, not resolved against WORKDIR) after
  // --parents, --chown and --chmod (expanded), as BuildKit's dispatchCopy writes it; --from, --link and --exclude
  // are left out: `COPY --from=build --chown=1:1 app ./` is `COPY --chown=1:1 app ./ # buildkit`.
  const histFlags = [ins.parents ? '--parents' : '', chown ? `--chown=${chown}` : '', ins.chmod ? `--chmod=${word(ins.chmod)}` : ''].filter(Boolean);
  const createdBy = `${kw} ${[...histFlags, ...sources, ...ins.contents.map((c) => `<<${c.path}`), writtenDest].join(' ')} # buildkit`;
  const plan: CopyPlan = { ins, word, sources, dest, chown, mode, topExcluded, filterTree, stage, sourceContext, contextEntries, urlSources, text };
  return { plan, inputs, createdBy };
}

export const copy: InstructionHandler<CopyInstruction | AddInstruction> = async (ctx, state, ins) => {
  const { plan, inputs, createdBy } = await planCopy(ctx, state, ins);
  const key = cacheKey({ parent: state.key, instruction: plan.text, inputs });
  const numericChown = plan.chown !== undefined && /^\d+(:\d+)?$/.test(plan.chown);
  return cachedLayerStep(ctx, state, key, createdBy, async () => {
    // A COPY mostly waits for threadpool work: the step below, if still pending, is hashed meanwhile.
    state.pending?.startHashing();
    // Fast path: a plain COPY into a destination the lower layers do not populate writes straight into the
    // upperdir (no overlay mount); anything that needs the merged view (names in --chown, ADD's archives,
    // heredoc files over existing ones, a destination with lower content) goes through the mount.
    const direct = ins.kind === 'copy' && ins.contents.length === 0 && (plan.chown === undefined || numericChown);
    // Wildcards of the context that matched nothing (and nothing else to copy): BuildKit's copy then changes nothing,
    // not even the destination's parents, which the direct path would copy up into the layer.
    const nothingToCopy =
      plan.sourceContext !== undefined && ins.contents.length === 0 && plan.urlSources.length === 0 && plan.contextEntries.every((e) => e.length === 0);
    // A direct COPY from the context hard-links the files an earlier build of this step already stored
    // (store/file-reuse.ts); the merged view is another filesystem, where links cannot reach.
    let reuse: CopyReuse | undefined;
    const write = async (dirs: StepDirs): Promise<void> => {
      if (nothingToCopy) return;
      const layer = await stepLayer();
      if (direct && (await layer.prepareDirectWrite(dirs, plan.dest, true))) {
        if (plan.sourceContext !== undefined && plan.contextEntries.length > 0) {
          const { CopyReuse } = await import('../../store/file-reuse.js');
          reuse = await CopyReuse.open(ctx.store, `${(await plan.sourceContext).dir}\0${plan.text}`);
        }
        return copyWork(ctx, plan, dirs.upperDir, dirs, reuse);
      }
      return layer.withMergedRootfs(dirs, ctx.signal, (rootfs) => copyWork(ctx, plan, rootfs, dirs, undefined));
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
};

/** The reuse placer for a direct copy into `rootfs` (the upperdir), with the context's digests of the files. */
async function placerFor(
  reuse: CopyReuse | undefined,
  rootfs: string,
  c: BuildContext,
  tops: readonly ContextEntry[],
  list: (d: ContextEntry) => Promise<ContextEntry[]>,
): Promise<{ placer?: NonNullable<CopyRequest['placer']> }> {
  if (!reuse) return {};
  const digests = new Map<string, string>();
  for (const top of tops) {
    for (const e of top.type === 'dir' ? await list(top) : [top]) if (e.type === 'file') digests.set(e.abs, await c.fileDigest(e));
  }
  return { placer: reuse.placer(rootfs, digests) };
}

/** Copies what the plan names into `rootfs` (the step's upperdir on the direct path, else the merged view). */
async function copyWork(ctx: DispatchContext, plan: CopyPlan, rootfs: string, dirs: StepDirs, reuse: CopyReuse | undefined): Promise<void> {
  const { ins, word, sources, dest, chown, mode, stage, sourceContext, contextEntries, urlSources } = plan;
  const owner = chown ? (/^\d+(:\d+)?$/.test(chown) ? numericOwner(chown) : await resolveChown(rootfs, chown)) : undefined;
  const mtime = new Date((ctx.options.sourceDateEpoch ?? 0) * 1000);
  const ownerMode = { ...(owner ? { owner } : {}), ...(mode !== undefined ? { mode } : {}) };
  const signal = ctx.signal ? { signal: ctx.signal } : {};
  for (const c of ins.contents) {
    const target = dest.endsWith('/') ? path.posix.join(dest, c.path) : dest;
    await (await copyHandlers()).writeIntoRootfs(rootfs, target, c.expand ? word(c.data) : c.data, { ...ownerMode, mtime });
  }
  if (stage) {
    const { mountStageView, resolveStageSource, emptyWildcardAllowed, listTree } = await stageView();
    const view = await mountStageView(ctx.store, diffIds(stage), path.join(dirs.scratch, 'from'), { ...signal, overlay: ctx.host.overlay });
    try {
      const found: Array<{ source: string; entries: CopySource[] }> = [];
      for (const s of sources) {
        const r = await resolveStageSource(view.rootfs, s);
        // A wildcard may match nothing (BuildKit's AllowEmptyWildcard) if the directory it looks in exists.
        if (r.length === 0 && !(await emptyWildcardAllowed(view.rootfs, s))) {
          throw new Error(`failed to compute cache key: "/${s.replace(/^\/+/, '')}": not found`);
        }
        found.push({ source: s, entries: r.filter((e) => !plan.topExcluded(e.rel)) });
      }
      const list = async (d: CopySource): Promise<CopySource[]> => plan.filterTree(d, await listTree(d));
      const common = { list, keepOwner: true, ...ownerMode, ...signal };
      if (ins.parents) {
        const { copyWithParents } = await import('../../runtime/handlers/copy-parents.js');
        for (const f of found) await copyWithParents(rootfs, f.source, f.entries, dest, common);
      } else await (await copyHandlers()).copyIntoRootfs(rootfs, { sources: found.flatMap((f) => f.entries), dest, ...common });
    } finally {
      await view.release();
    }
  } else if (contextEntries.length > 0 && sourceContext !== undefined) {
    const c = await sourceContext;
    const all = contextEntries.flat();
    const list = async (d: CopySource): Promise<ContextEntry[]> => plan.filterTree(d, await c.walk(d as ContextEntry));
    const placer = await placerFor(reuse, rootfs, c, all, list);
    if (ins.kind === 'copy' && ins.parents) {
      const { copyWithParents } = await import('../../runtime/handlers/copy-parents.js');
      const local = sources.filter((s) => !isUrl(s));
      for (let i = 0; i < local.length; i++) {
        await copyWithParents(rootfs, local[i]!, contextEntries[i] ?? [], dest, { list, keepOwner: false, ...placer, ...ownerMode, ...signal });
      }
    } else if (ins.kind === 'add') {
      const { addLocalSources } = await import('../../runtime/handlers/add.js');
      await addLocalSources(rootfs, all, { dest, list, ...ownerMode, ...signal });
    } else {
      await (await copyHandlers()).copyIntoRootfs(rootfs, { sources: all, list, dest, keepOwner: false, ...placer, ...ownerMode, ...signal });
    }
  }
  if (urlSources.length > 0) {
    const { addUrlSources } = await import('../../runtime/handlers/add.js');
    await addUrlSources(rootfs, dirs.scratch, ctx.store, urlSources, { dest, ...ownerMode, ...signal });
  }
}

/** `--chown=user:group` resolved against the destination image's /etc/passwd and /etc/group. */
async function resolveChown(rootfs: string, spec: string): Promise<{ uid: number; gid: number }> {
  const { resolveUser } = await import('../../runtime/user.js');
  const u = await resolveUser(rootfs, spec);
  // docker: `--chown=user` without a group uses the user's primary group.
  return { uid: u.uid, gid: u.gid };
}
