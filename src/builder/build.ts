/**
 * `build()`: parse → stage graph → resolve base images → run the needed stages (independent stages
 * in parallel, each step through the cache) → store the image, tag it, write the outputs.
 */
import { writeFile } from 'node:fs/promises';
import { readDockerfile } from './read-dockerfile.js';
import path from 'node:path';
import { NetworkPool, sandboxNeedsDnsForward } from '../runtime/network.js';
import { runPrivileges } from './entitlements.js';
import { makePrivateDir } from '../store/owner.js';
import { syncFilesystem } from '../store/durability.js';
import { BuildError, DockerfileError, StepFailedError, messageOf } from '../errors.js';
import { MEDIA_TYPES, type Descriptor, type ImageConfig } from '../oci/types.js';
import { DEFAULT_PATH_ENV, formatPlatform, hostPlatform } from '../oci/platform.js';
import type { CopyInstruction, Instruction } from '../parser/instructions.js';
import { formatReference, parseReference } from '../registry/reference.js';
import type { Directive } from '../parser/ast.js';
import type { LayerStoreApi, StoredImage } from '../store/types.js';
import { LayerStore } from '../store/layer-store.js';
import { resolveImageSource } from '../sources/image-source.js';
import { BuildContext } from './context.js';
import { cacheKey } from './cache-key.js';
import { parseCacheDir, parseWithCache } from './parse-cache.js';
import { dispatch } from './dispatch.js';
import { settlePending, type DispatchContext, type StageState, envMap } from './step-context.js';
import { resolveBuildOptions, type BuildMetadata, type BuildOptions, type BuildResult, type OutputReport, type StepRef, type StepReport, type BuildEvent } from './options.js';
import { resolveStages, type Stage } from './stages.js';
import { checkDockerfileImageRef, lookupNamedContext, parseNamedContexts } from './named-context.js';
import { normalizeTag, validateTag } from './tags.js';

/** The platform kiln builds for: the host's (no emulation). */
export function hostPlatformArgs(): Record<string, string> {
  const host = hostPlatform();
  const arch = host.architecture;
  const variant = host.variant ?? '';
  const platform = formatPlatform(host);
  return {
    BUILDPLATFORM: platform, BUILDOS: 'linux', BUILDARCH: arch, BUILDVARIANT: variant,
    TARGETPLATFORM: platform, TARGETOS: 'linux', TARGETARCH: arch, TARGETVARIANT: variant,
  };
}

/** Builds an image from a Dockerfile. Rejects with a {@link BuildError} (or `signal.reason` when aborted). */
export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  const started = Date.now();
  const opts = resolveBuildOptions(options);
  const signal = opts.signal;
  signal?.throwIfAborted();
  const emit = (e: BuildEvent): void => opts.onEvent(e);
  for (const t of [...opts.tags, ...opts.outputs.flatMap((o) => ('names' in o ? (o.names ?? []) : []))]) {
    const bad = validateTag(t);
    if (bad) throw new BuildError('USAGE', bad);
  }

  // Named contexts are checked before anything runs: a directory that is not there is a usage error.
  const namedContexts = parseNamedContexts(opts.buildContexts, process.cwd());
  const file = opts.dockerfileText !== undefined ? 'Dockerfile' : path.relative(process.cwd(), opts.dockerfile) || opts.dockerfile;
  let text: string;
  if (opts.dockerfileText !== undefined) text = opts.dockerfileText;
  else {
    try {
      text = readDockerfile(opts.dockerfile);
    } catch (err) {
      throw new BuildError('DOCKERFILE', `failed to read dockerfile: ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : messageOf(err)}`, { cause: err });
    }
  }
  // The store opens while the Dockerfile is parsed (or read back from the parse cache).
  // The store compresses with the host's gzip slots and buffers (shared by the builds given the same host).
  const storePromise = LayerStore.open(opts.root, { compressor: opts.host.compressor });
  storePromise.catch(() => {});
  const dockerfile = await parseWithCache(text, file, parseCacheDir(opts.root));
  checkSyntaxDirective(dockerfile.directives, file);
  const platformArgs = hostPlatformArgs();
  const graph = resolveStages(
    { file, instructions: dockerfile.instructions, escapeToken: dockerfile.escapeToken },
    { ...(opts.target ? { target: opts.target } : {}), buildArgs: opts.buildArgs, platformArgs },
  );
  // kiln runs steps natively: a stage for another platform would need emulation, which kiln does not do.
  for (const i of graph.order) {
    const stage = graph.stages[i]!;
    if (stage.platform === undefined) continue;
    const want = normalizePlatform(stage.platform);
    if (want !== normalizePlatform(platformArgs.TARGETPLATFORM!)) {
      throw new DockerfileError(
        `FROM --platform=${stage.platform}: kiln builds for the host platform (${platformArgs.TARGETPLATFORM}) only; other platforms need emulation`,
        file,
        stage.from.range,
      );
    }
  }
  const warnings: string[] = [];
  const warn = (message: string, line?: number): void => {
    warnings.push(line ? `${message} (line ${line})` : message);
    emit({ type: 'warning', message, ...(line ? { line } : {}) });
  };
  for (const w of dockerfile.warnings) warn(w.short, w.range.start.line);
  for (const w of graph.warnings) warn(w.message, w.range.start.line);

  const store = await storePromise;
  // The shared cache (--cache-from / --cache-to): records fetched now, layers only on a hit.
  const remoteCache =
    opts.cacheFrom.length > 0 || opts.cacheTo.length > 0
      ? await (await import('./remote-cache.js')).RemoteCache.open(store, {
          cacheFrom: opts.cacheFrom,
          cacheTo: opts.cacheTo,
          insecureRegistries: opts.insecureRegistries,
          signal,
          warn: (m) => warn(m),
          progress: (message) => emit({ type: 'progress', id: 'cache', message }),
        })
      : undefined;
  let contextPromise: Promise<BuildContext> | undefined;
  const openContext = (): Promise<BuildContext> =>
    (contextPromise ??= BuildContext.open(opts.context, opts.dockerfileText === undefined ? opts.dockerfile : undefined, path.join(store.root, 'cache')));
  // Named local contexts (`--build-context NAME=DIR`), each with its own .dockerignore, opened on first use.
  const localContexts = new Map<string, Promise<BuildContext>>();
  const localContext = (ref: string): Promise<BuildContext> | undefined => {
    const named = lookupNamedContext(namedContexts, ref);
    if (named?.kind !== 'local') return undefined;
    let p = localContexts.get(named.dir);
    if (!p) {
      p = BuildContext.open(named.dir, undefined, path.join(store.root, 'cache'));
      localContexts.set(named.dir, p);
    }
    return p;
  };

  // Step numbering for progress: FROM plus every instruction of each needed stage.
  const total = graph.order.reduce((n, i) => n + 1 + graph.stages[i]!.instructions.length, 0);
  emit({ type: 'build-start', dockerfile: file, steps: total });
  const stepIndex = new Map<number, number>();
  {
    let n = 0;
    for (const i of graph.order) {
      stepIndex.set(i, n);
      n += 1 + graph.stages[i]!.instructions.length;
    }
  }
  const reports: StepReport[] = [];
  const consumedArgs = new Set<string>();
  const runtimeWarningsSeen = new Set<string>();

  const stagePromises = new Map<number, Promise<StageState>>();
  const stageByRef = (ref: string): Stage | undefined => {
    const lower = ref.toLowerCase();
    return graph.stages.find((s) => s.name === lower) ?? (/^\d+$/.test(ref) ? graph.stages[Number(ref)] : undefined);
  };

  const baseCache = new Map<string, Promise<StageState>>();
  /** An image: a named context's (`oci-layout://`, `docker-image://`) or one a Dockerfile names by reference. */
  const imageState = async (ref: string): Promise<StageState> => {
    const named = lookupNamedContext(namedContexts, ref);
    if (named === undefined) checkDockerfileImageRef(ref);
    else if (named.kind === 'local') throw new BuildError('DOCKERFILE', `the named context "${ref}" is a local directory, not an image`);
    const key = named === undefined ? `ref ${ref}` : `named ${ref}`;
    let p = baseCache.get(key);
    if (!p) {
      p = resolveImageSource(named ?? { kind: 'image', ref }, store, {
        ...(signal ? { signal } : {}),
        pull: opts.pull,
        insecureRegistries: opts.insecureRegistries,
        progress: (id, message) => emit({ type: 'progress', id, message }),
      }).then((image) => stateFromImage(image));
      baseCache.set(key, p);
    }
    return cloneState(await p);
  };

  const runStage = (index: number): Promise<StageState> => {
    let p = stagePromises.get(index);
    if (p) return p;
    p = (async () => {
      const stage = graph.stages[index]!;
      // A stage a named context overrides (BuildKit: "when the Dockerfile defines a stage with the same name, it's
      // overwritten") is not built: what refers to it gets the named context.
      const override = stage.name ? lookupNamedContext(namedContexts, stage.name) : undefined;
      if (override !== undefined) {
        if (override.kind !== 'local') return imageState(stage.name!);
        if (index === graph.target) throw new DockerfileError(`the target stage "${stage.name}" is overridden by a local directory context`, file, stage.from.range);
        return scratchState(); // only reached through COPY --from / RUN --mount=from, which read the directory itself
      }
      const first = stepIndex.get(index) ?? 0;
      const ref = (n: number, ins: Instruction): StepRef => ({
        stage: stage.displayName,
        index: first + n + 1,
        total,
        text: oneLine(ins.source),
        line: ins.startLine,
      });
      const fromRef = { ...ref(0, stage.from), text: fromStepText(stage, opts.buildContexts) };
      const t0 = Date.now();
      emit({ type: 'step-start', step: fromRef });
      let state: StageState;
      const namedBase = lookupNamedContext(namedContexts, stage.base);
      if (namedBase?.kind === 'local') {
        // FROM a local directory context: its (filtered) files are the root filesystem of an image with an empty
        // config, as BuildKit makes it (a local source has no image config); owners are 0:0 as docker sends them.
        state = scratchState();
        await dispatch(dctx(stage), state, fromLocalDirectory(stage), fromRef);
      } else if (stage.baseStage !== undefined && namedBase === undefined) state = cloneState(await runStage(stage.baseStage));
      else if (stage.base === 'scratch' && namedBase === undefined) state = scratchState();
      else {
        try {
          state = await imageState(stage.base);
        } catch (err) {
          if (err instanceof BuildError && !(err instanceof DockerfileError)) {
            throw new DockerfileError(err.message, file, stage.from.range, { cause: err });
          }
          throw err;
        }
      }
      // Global ARGs are not in scope inside a stage until re-declared; the graph already used them for FROM. A stage
      // based on another keeps the parent's declared ARGs (cloneState), as the modern frontend's dispatchState.init
      // appends the base's buildArgs: its RUN history lists them (dockerd 20.10's did not: deliberate, README).
      // The base's config Env goes on top of whatever state env the base stage left (BuildKit's stage start).
      for (const [k, v] of envMap(state.config.config.Env)) state.env.set(k, v);
      emit({ type: 'step-done', step: fromRef, durationMs: Date.now() - t0 });
      reports.push({ step: fromRef, cached: true, durationMs: Date.now() - t0 });

      try {
        // ONBUILD triggers of the base image run first, as docker does.
        const triggers = state.config.config.OnBuild ?? [];
        if (triggers.length > 0) {
          state.config.config.OnBuild = null;
          const { parse } = await import('../parser/index.js');
          const parsed = parse(triggers.join('\n'), { file: `${stage.base} (ONBUILD)` });
          for (const ins of parsed.instructions) {
            await dispatch(dctx(stage), state, ins, fromRef).catch((err: unknown) => {
              throw locateStepError(err, file, stage.from, signal);
            });
          }
        }
        const noCacheStage = opts.noCache || opts.noCacheFilter.some((f) => f.toLowerCase() === stage.name || f === String(index));
        const ctx = dctx(stage, noCacheStage);
        let prewarmed = false;
        for (let n = 0; n < stage.instructions.length; n++) {
          const ins = stage.instructions[n]!;
          const step = ref(n + 1, ins);
          const s0 = Date.now();
          const isFsStep = isLayerStep(ins);
          if (isFsStep) emit({ type: 'step-start', step });
          const outcome = await dispatch(ctx, state, ins, step).catch((err: unknown) => {
            throw locateStepError(err, file, ins, signal);
          });
          const durationMs = Date.now() - s0;
          // Once a step misses, every later step of the stage runs: start the network a RUN ahead will want.
          if (isFsStep && !outcome.cached && !prewarmed) prewarmed = prewarmNetwork(stage.instructions.slice(n + 1));
          // Only with a layer step still to come in the stage: after the last one there is nothing to overlap, and
          // the end's syncfs alone is cheaper than two (measured: copy-big, whose last step is its long RUN).
          if (isFsStep && !outcome.cached && durationMs >= EARLY_WRITEBACK_MS && stage.instructions.slice(n + 1).some(isLayerStep)) startWriteback();
          if (isFsStep) {
            if (outcome.cached) emit({ type: 'step-cached', step });
            else emit({ type: 'step-done', step, durationMs });
          }
          reports.push({ step, cached: outcome.cached || !isFsStep, durationMs });
        }
        // The last layer step's hash may still run: the stage is done when its layer is recorded.
        await settlePending(state);
      } catch (err) {
        // A failed stage still records the layer step that finished before the failure (it stays cached).
        await settlePending(state).catch(() => undefined);
        throw err;
      }
      return state;
    })();
    stagePromises.set(index, p);
    return p;
  };

  // The RUN steps' sandbox networks, lent from step to step and torn down once every stage is done.
  const networks = new NetworkPool(() => makePrivateDir('run'));
  // A long step (an apt-get install) usually wrote much: its writeback starts while later steps run, so the syncfs
  // that makes the build's layers durable at its end (store.makeDurable) finds little left to write. One at a time:
  // what a later step wrote while one runs is left to the end's syncfs.
  let writeback: Promise<void> | undefined;
  const startWriteback = (): void => {
    writeback ??= syncFilesystem(store.root)
      .catch(() => undefined)
      .then(() => {
        writeback = undefined;
      });
  };
  /** Starts a sandbox network when one of `ahead` is a RUN that will use one; says whether it did. */
  const prewarmNetwork = (ahead: readonly Instruction[]): boolean => {
    const wants = ahead.some((i) => i.kind === 'run' && i.security !== 'insecure' && runPrivileges(i, opts, () => undefined as never).network === 'default');
    if (wants) networks.prewarm(sandboxNeedsDnsForward());
    return wants;
  };
  const dctx = (stage: Stage, noCache = opts.noCache): DispatchContext => ({
    options: opts,
    host: opts.host,
    store,
    file,
    escapeToken: dockerfile.escapeToken,
    context: openContext,
    localContext,
    stageResult: async (ref: string, ins: Instruction) => {
      // A named context wins over a stage of the same name, as in BuildKit.
      const target = lookupNamedContext(namedContexts, ref) === undefined ? stageByRef(ref) : undefined;
      if (target) {
        if (target.index >= stage.index) throw new DockerfileError(`stage "${ref}" is not defined before this stage`, file, ins.range);
        return runStage(target.index);
      }
      // Not a stage: an image (COPY --from=alpine:3) or a named build context. A failure to find it
      // belongs to the instruction that named it.
      try {
        return await imageState(ref);
      } catch (err) {
        if (err instanceof BuildError && !(err instanceof DockerfileError) && !signal?.aborted) {
          throw new DockerfileError(err.message, file, ins.range, { cause: err });
        }
        throw err;
      }
    },
    consumedArgs,
    globalArgs: graph.globalArgs,
    noCache,
    emitOutput: (step, chunk, stream) => emit({ type: 'step-output', step, stream, chunk }),
    signal,
    runtimeWarnings: (ws) => {
      for (const w of ws) if (!runtimeWarningsSeen.has(w)) {
        runtimeWarningsSeen.add(w);
        warn(w);
      }
    },
    ...(remoteCache ? { remoteCache } : {}),
    networks,
  });

  // Start every needed stage now: a stage waits only for the stages it uses, so independent ones overlap.
  const all = graph.order.map((i) => runStage(i));
  let final: StageState;
  try {
    await Promise.all(all);
    final = await runStage(graph.target);
  } catch (err) {
    await Promise.allSettled(all);
    if (signal?.aborted) throw signal.reason;
    throw err;
  } finally {
    await networks.close();
  }
  await (await contextPromise)?.save();

  // Build args nobody declared: docker warns (predefined and proxy args excepted).
  const unused = Object.keys(opts.buildArgs).filter(
    (k) => !consumedArgs.has(k) && !graph.metaArgs.some((a) => a.args.some((d) => d.key === k)) && !(k in platformArgs) && !/_proxy$/i.test(k),
  );
  if (unused.length > 0) warn(`One or more build-args [${unused.sort().join(' ')}] were not consumed`);

  // The image: the target stage's config, history and layers; `created` is the newest history time,
  // so a fully cached rebuild reproduces the same config digest.
  // One syncfs for the layers this build put in the store, so they survive a crash (store/durability.ts); every
  // step is done, and the writeback overlaps the image and output writing.
  const durable = store.makeDurable();
  durable.catch(() => undefined);
  const config: ImageConfig = structuredClone(final.config);
  config.history = [...(config.history ?? []), ...final.history];
  if (Object.keys(opts.labels).length > 0) config.config.Labels = { ...(config.config.Labels ?? {}), ...opts.labels };
  const times = config.history.map((h) => h.created).filter((c): c is string => Boolean(c)).sort();
  const created = opts.sourceDateEpoch !== undefined ? new Date(opts.sourceDateEpoch * 1000).toISOString() : times[times.length - 1];
  if (created) config.created = created;
  config.rootfs = { type: 'layers', diff_ids: final.layers.map((l) => l.diffId) };
  if (!config.config.Env?.some((e) => e.startsWith('PATH='))) config.config.Env = [DEFAULT_PATH_ENV, ...(config.config.Env ?? [])];
  config.config = omitEmpty(config.config);
  await remoteCache?.decorateConfig(config, final.layers);
  const image = await store.putImage(config, final.layers);
  const tags = [...new Set([...opts.tags, ...opts.outputs.flatMap((o) => (o.type === 'image' ? (o.names ?? []) : []))].map(normalizeTag))];
  for (const t of tags) await store.tag(t, image.manifestDigest);

  // The exporters are loaded only when the build writes more than the store.
  const outputs = opts.outputs.some((o) => o.type !== 'image')
    ? await (await import('../outputs/index.js')).writeOutputs(image, opts.outputs, {
        store,
        tags,
        ...(signal ? { signal } : {}),
        insecureRegistries: opts.insecureRegistries,
        progress: (id, message, counts) => emit({ type: 'progress', id, message, ...counts }),
      })
    : [];
  await remoteCache?.export(final.layers);
  if (opts.iidfile) await writeFile(opts.iidfile, image.configDigest);
  await durable;
  await writeback;

  const result: BuildResult = {
    manifestDigest: image.manifestDigest,
    configDigest: image.configDigest,
    tags,
    layers: final.layers.map((l) => ({ diffId: l.diffId, size: l.size })),
    steps: reports.sort((a, b) => a.step.index - b.step.index),
    warnings,
    durationMs: Date.now() - started,
    outputs,
    metadata: await buildMetadata(image, store, tags, outputs),
  };
  emit({ type: 'build-done', result });
  return result;
}

/**
 * `# syntax=` names the frontend that should read the file. kiln is its own Dockerfile frontend, so it
 * accepts the docker/dockerfile images (any tag or digest: their syntax is what kiln parses) and refuses
 * anything else at the directive's line, where BuildKit would fail to resolve that frontend image.
 */
/** Instructions that make a layer (and so write to the store). */
const isLayerStep = (ins: Instruction): boolean => ins.kind === 'run' || ins.kind === 'copy' || ins.kind === 'add' || ins.kind === 'workdir';

/** A step that ran this long has its writeback started at once (see startWriteback in build()). */
const EARLY_WRITEBACK_MS = 1000;

function checkSyntaxDirective(directives: readonly Directive[], file: string): void {
  const syntax = directives.find((d) => d.name.toLowerCase() === 'syntax');
  if (!syntax) return;
  const ref = syntax.value.trim();
  if (/^(?:docker\.io\/)?docker\/dockerfile(?:-upstream)?(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?$/.test(ref)) return;
  throw new DockerfileError(
    `unsupported frontend "${ref}" in # syntax=: kiln reads Dockerfiles with its own frontend (docker/dockerfile syntax)`,
    file,
    syntax.range,
  );
}

/** `linux/amd64`, `linux/arm64/v8` and `linux/arm64` compare equal; the OS defaults to linux. */
function normalizePlatform(p: string): string {
  const parts = p.trim().toLowerCase().split('/');
  if (parts.length === 1) parts.unshift('linux');
  const [os, arch = '', variant] = parts;
  const a = arch === 'x86_64' ? 'amd64' : arch === 'aarch64' ? 'arm64' : arch;
  const v = a === 'arm64' && variant === 'v8' ? undefined : variant;
  return [os, a, ...(v ? [v] : [])].join('/');
}

/** The copy that makes the root filesystem of `FROM NAME` when NAME is a local directory context. */
function fromLocalDirectory(stage: Stage): CopyInstruction {
  const from = stage.from;
  return {
    kind: 'copy',
    from: stage.base,
    sources: ['.'],
    contents: [],
    dest: '/',
    link: false,
    parents: false,
    excludes: [],
    range: from.range,
    source: `COPY --from=${stage.base} . /`,
    comments: [],
    startLine: from.startLine,
    endLine: from.endLine,
    keyword: 'COPY',
  };
}

/**
 * What the progress shows for a FROM step: the base as resolved (build args expanded, an image named in full,
 * `docker.io/library/busybox:latest`), as docker does, rather than the line as written (`FROM ${BASE} AS x`).
 */
function fromStepText(stage: Stage, buildContexts: Readonly<Record<string, string>>): string {
  if (stage.baseStage !== undefined || stage.base === 'scratch' || buildContexts[stage.base] !== undefined) return `FROM ${stage.base}`;
  try {
    return `FROM ${formatReference(parseReference(stage.base))}`;
  } catch {
    return oneLine(`FROM ${stage.base}`);
  }
}

function oneLine(source: string): string {
  const first = source.split('\n')[0] ?? '';
  return first.length > 200 ? `${first.slice(0, 199)}…` : first;
}

function scratchState(): StageState {
  const arch = hostPlatformArgs().TARGETARCH!;
  return {
    // BuildKit's empty image has WorkingDir "/" (and the default PATH, added to every image at the end).
    config: { architecture: arch, os: 'linux', config: { WorkingDir: '/' }, rootfs: { type: 'layers', diff_ids: [] }, history: [] },
    layers: [],
    key: cacheKey({ parent: 'scratch', instruction: 'FROM scratch' }),
    args: new Map(),
    env: new Map(),
    cmdSet: false,
    history: [],
    lastCreated: '1970-01-01T00:00:00.000Z',
  };
}

function stateFromImage(image: StoredImage): StageState {
  const config = structuredClone(image.config);
  config.config ??= {};
  const history = config.history ?? [];
  config.history = history;
  const layers = image.manifest.layers.map((d, i) => ({
    diffId: image.config.rootfs.diff_ids[i]!,
    digest: d.digest,
    size: d.size,
    mediaType: d.mediaType,
  }));
  return {
    config,
    layers,
    key: cacheKey({ parent: `base:${image.manifestDigest}`, instruction: 'FROM' }),
    args: new Map(),
    env: new Map(),
    cmdSet: false,
    history: [],
    lastCreated: image.config.created ?? '1970-01-01T00:00:00.000Z',
  };
}

function cloneState(s: StageState): StageState {
  const config = structuredClone(s.config);
  // The child stage's history continues the parent's: fold the parent's new entries in.
  config.history = [...(config.history ?? []), ...structuredClone(s.history)];
  return { config, layers: [...s.layers], key: s.key, args: new Map(s.args), env: new Map(s.env), cmdSet: false, history: [], lastCreated: s.lastCreated };
}

/** buildx's metadata for the image as the last image output (archive or registry) wrote it, else as stored. */
async function buildMetadata(image: StoredImage, store: LayerStoreApi, tags: readonly string[], outputs: readonly OutputReport[]): Promise<BuildMetadata> {
  const last = [...outputs].reverse().find((o) => o.manifestDigest !== undefined);
  const { fullImageName } = await import('../image/names.js');
  const names = last ? last.names : tags.map(fullImageName);
  const digest = last?.manifestDigest ?? image.manifestDigest;
  // A push reports its digest only: no descriptor then.
  const descriptor: Descriptor | undefined =
    last !== undefined
      ? last.descriptor
      : { mediaType: image.manifest.mediaType ?? MEDIA_TYPES.ociManifest, digest, size: (await store.readBlob(digest)).length };
  return {
    'containerimage.digest': digest,
    'containerimage.config.digest': image.configDigest,
    ...(descriptor ? { 'containerimage.descriptor': descriptor } : {}),
    ...(names.length > 0 ? { 'image.name': names.join(',') } : {}),
  };
}

/**
 * Every failure inside a step names the Dockerfile line it happened on: errors that already carry a
 * location pass through, anything else (the runtime, the store, an unexpected exception) is wrapped in a
 * {@link StepFailedError} for that instruction, its message kept and the original error as its cause.
 */
function locateStepError(err: unknown, file: string, ins: Instruction, signal: AbortSignal | undefined): unknown {
  if (err instanceof DockerfileError || err instanceof StepFailedError || signal?.aborted) return err;
  return new StepFailedError(messageOf(err), { file, range: ins.range, instruction: ins.source }, { cause: err });
}

/**
 * The container config as BuildKit serialises it: every field is Go `omitempty`, so an empty list, map or string,
 * `false` and null are left out (`CMD []` leaves no Cmd at all, an unset USER no `"User": ""`).
 */
function omitEmpty(cfg: ImageConfig['config']): ImageConfig['config'] {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) {
    if (v === null || v === undefined || v === '' || v === false) continue;
    if (Array.isArray(v) ? v.length === 0 : typeof v === 'object' && Object.keys(v).length === 0) continue;
    out[k] = v;
  }
  return out as ImageConfig['config'];
}
