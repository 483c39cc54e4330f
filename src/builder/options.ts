/**
 * The public options, events and result of {@link build}, and `resolveBuildOptions()`, which applies
 * the defaults once so that the rest of the builder sees a fully resolved object.
 */
import { isAbsolute, join, resolve } from 'node:path';
import { BuildError } from '../errors.js';
import { createHost, type Host } from '../runtime/host.js';
import type { Descriptor, Digest } from '../oci/types.js';
import { defaultStoreRoot } from '../store/default-root.js';

// The output list's types live with the exporters (src/outputs/); re-exported here, with the rest of build()'s options.
import type { OutputReport, OutputSpec } from '../outputs/types.js';
export type { OutputReport, OutputSpec } from '../outputs/types.js';

/** A secret for `RUN --mount=type=secret,id=ID`: a file or an environment variable of the caller. */
export type SecretSource = { readonly id: string } & ({ readonly src: string } | { readonly env: string });

/**
 * An SSH agent for `RUN --mount=type=ssh,id=ID` (`--ssh ID=SOCKET`): the step reaches the agent listening on `socket`
 * (a Unix socket on this machine) through a socket kiln creates for it, so keys never enter the build.
 */
export interface SshAgentSource {
  readonly id: string;
  readonly socket: string;
}

/** A shared build cache to read (`--cache-from type=registry,ref=REF`): a registry cache or an image with an inline cache. */
export type CacheImportSpec = { readonly type: 'registry'; readonly ref: string };

/**
 * A shared build cache to write (`--cache-to`), as buildx names them: a cache manifest pushed at `ref`
 * (`mode` min: the final image's steps, max: every step; `cacheMounts`: also the `RUN --mount=type=cache`
 * directories), or `inline`: the records inside the image config. Format: `src/builder/remote-cache.ts`.
 */
export type CacheExportSpec =
  | { readonly type: 'registry'; readonly ref: string; readonly mode?: 'min' | 'max'; readonly cacheMounts?: boolean }
  | { readonly type: 'inline' };

/** The privileges a build may be granted (`--allow`), named as BuildKit names them. */
export const ENTITLEMENTS = ['network.host', 'security.insecure'] as const;
/** One of {@link ENTITLEMENTS}. */
export type Entitlement = (typeof ENTITLEMENTS)[number];

/** Options of {@link build}. Everything is optional. */
export interface BuildOptions {
  /** The build context directory. @default process.cwd() */
  readonly context?: string;
  /** The Dockerfile path, relative to the current directory. @default `<context>/Dockerfile` */
  readonly dockerfile?: string;
  /** Dockerfile text given directly (as `-f -`); wins over `dockerfile`. */
  readonly dockerfileText?: string;
  /** Tags for the result in the local store (`name:tag`). @default [] */
  readonly tags?: readonly string[];
  /** `--build-arg` values. @default {} */
  readonly buildArgs?: Readonly<Record<string, string>>;
  /** The stage to build. @default the last stage */
  readonly target?: string;
  /** Run every step, ignoring the cache. @default false */
  readonly noCache?: boolean;
  /** Stages whose steps ignore the cache. @default [] */
  readonly noCacheFilter?: readonly string[];
  /** Extra outputs besides the local store. @default [] */
  readonly outputs?: readonly OutputSpec[];
  /** Named build contexts (`--build-context NAME=VALUE`): a directory, `oci-layout://DIR[:TAG]` or `docker-image://REF`. @default {} */
  readonly buildContexts?: Readonly<Record<string, string>>;
  /** Secrets for `RUN --mount=type=secret`. @default [] */
  readonly secrets?: readonly SecretSource[];
  /** SSH agents for `RUN --mount=type=ssh` (`--ssh`). @default [] */
  readonly ssh?: readonly SshAgentSource[];
  /** Labels added to the image config. @default {} */
  readonly labels?: Readonly<Record<string, string>>;
  /** Write the image's config digest (the image ID) to this file. */
  readonly iidfile?: string;
  /** The store root. @default `$KILN_ROOT` or `~/.cache/kiln` */
  readonly root?: string;
  /** The OCI runtime that runs RUN steps. @default 'auto' (crun if it works here, else runc) */
  readonly runtime?: 'auto' | 'runc' | 'crun';
  /**
   * Network of RUN steps that do not say `--network` (docker build's `--network`): `default`, a sandboxed network of
   * the step's own with outbound access; `none`, loopback only; `host`, the host's network (choosing it here grants
   * `network.host`, as buildx does for `--network host`). @default 'default'
   */
  readonly network?: 'default' | 'none' | 'host';
  /**
   * Entitlements (`--allow`): `network.host` lets `RUN --network=host` use the host's network, `security.insecure`
   * lets `RUN --security=insecure` run privileged. Without them such steps are refused. @default []
   */
  readonly allow?: readonly Entitlement[];
  /** Re-resolve tags of base images from their registries. @default false */
  readonly pull?: boolean;
  /** Registries reached over plain http besides loopback ones. @default [] */
  readonly insecureRegistries?: readonly string[];
  /** Shared caches to import (`--cache-from`); a step that misses locally is looked up there. @default [] */
  readonly cacheFrom?: readonly CacheImportSpec[];
  /** Shared caches to export after the build (`--cache-to`). @default [] */
  readonly cacheTo?: readonly CacheExportSpec[];
  /** `SOURCE_DATE_EPOCH`: clamps timestamps in layers and the config for reproducible images. @default `$SOURCE_DATE_EPOCH` */
  readonly sourceDateEpoch?: number;
  /** Progress events. The library never prints. */
  readonly onEvent?: (event: BuildEvent) => void;
  /** Cancels the build; the promise then rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
  /**
   * What kiln knows about this machine (which OCI runtime works, the overlay options the kernel takes, …; see
   * {@link createHost}). Builds given the same one share what it learnt; each build without one learns anew.
   * @default a fresh `createHost()`
   */
  readonly host?: Host;
}

/** {@link BuildOptions} with every default applied, as the builder sees it. */
export interface ResolvedBuildOptions {
  readonly context: string;
  readonly dockerfile: string;
  readonly dockerfileText: string | undefined;
  readonly tags: readonly string[];
  readonly buildArgs: Readonly<Record<string, string>>;
  readonly target: string | undefined;
  readonly noCache: boolean;
  readonly noCacheFilter: readonly string[];
  readonly outputs: readonly OutputSpec[];
  readonly buildContexts: Readonly<Record<string, string>>;
  readonly secrets: readonly SecretSource[];
  readonly ssh: readonly SshAgentSource[];
  readonly labels: Readonly<Record<string, string>>;
  readonly iidfile: string | undefined;
  readonly root: string;
  readonly runtime: 'auto' | 'runc' | 'crun';
  readonly network: 'default' | 'none' | 'host';
  readonly allow: readonly Entitlement[];
  readonly pull: boolean;
  readonly insecureRegistries: readonly string[];
  readonly cacheFrom: readonly CacheImportSpec[];
  readonly cacheTo: readonly CacheExportSpec[];
  readonly sourceDateEpoch: number | undefined;
  readonly onEvent: (event: BuildEvent) => void;
  readonly signal: AbortSignal | undefined;
  readonly host: Host;
}

export function resolveBuildOptions(options: BuildOptions = {}): ResolvedBuildOptions {
  const context = resolve(options.context ?? process.cwd());
  const dockerfile = options.dockerfile
    ? isAbsolute(options.dockerfile) ? options.dockerfile : resolve(options.dockerfile)
    : join(context, 'Dockerfile');
  const epochText = process.env.SOURCE_DATE_EPOCH;
  const epoch = options.sourceDateEpoch ?? (epochText && /^\d+$/.test(epochText) ? Number(epochText) : undefined);
  return {
    context,
    dockerfile,
    dockerfileText: options.dockerfileText,
    tags: options.tags ?? [],
    buildArgs: options.buildArgs ?? {},
    target: options.target,
    noCache: options.noCache ?? false,
    noCacheFilter: options.noCacheFilter ?? [],
    outputs: options.outputs ?? [],
    buildContexts: options.buildContexts ?? {},
    secrets: options.secrets ?? [],
    ssh: options.ssh ?? [],
    labels: options.labels ?? {},
    iidfile: options.iidfile,
    root: options.root ? resolve(options.root) : defaultStoreRoot(),
    host: options.host ?? createHost(),
    runtime: options.runtime ?? 'auto',
    network: options.network ?? 'default',
    allow: resolveAllow(options.allow ?? [], options.network),
    pull: options.pull ?? false,
    insecureRegistries: options.insecureRegistries ?? [],
    cacheFrom: options.cacheFrom ?? [],
    cacheTo: options.cacheTo ?? [],
    sourceDateEpoch: epoch,
    onEvent: options.onEvent ?? (() => {}),
    signal: options.signal,
  };
}

/**
 * The granted entitlements: the ones asked for, plus `network.host` when the caller chose the host network for the
 * whole build (buildx adds it for `--network host` the same way). Unknown names are refused, as buildx refuses them.
 */
function resolveAllow(allow: readonly string[], network: BuildOptions['network']): Entitlement[] {
  for (const e of allow) {
    if (!(ENTITLEMENTS as readonly string[]).includes(e)) throw new BuildError('INVALID_OPTION', `invalid entitlement: ${JSON.stringify(e)} (known: ${ENTITLEMENTS.join(', ')})`);
  }
  const granted = new Set(allow as readonly Entitlement[]);
  if (network === 'host') granted.add('network.host');
  return [...granted];
}

/** Identifies a step in events: its stage, its index in the stage and its instruction text. */
export interface StepRef {
  readonly stage: string;
  /** 1-based position in the whole build's plan, as `[3/9]` in the progress view. */
  readonly index: number;
  readonly total: number;
  /** The instruction as written (one line), e.g. `RUN make`. */
  readonly text: string;
  readonly line: number;
}

export type BuildEvent =
  | { readonly type: 'build-start'; readonly dockerfile: string; readonly steps: number }
  | { readonly type: 'step-start'; readonly step: StepRef }
  | { readonly type: 'step-cached'; readonly step: StepRef }
  | { readonly type: 'step-output'; readonly step: StepRef; readonly stream: 'stdout' | 'stderr'; readonly chunk: string }
  | { readonly type: 'step-done'; readonly step: StepRef; readonly durationMs: number }
  | { readonly type: 'progress'; readonly id: string; readonly message: string; readonly current?: number; readonly total?: number }
  | { readonly type: 'warning'; readonly message: string; readonly line?: number }
  | { readonly type: 'build-done'; readonly result: BuildResult };

/** What one step did. */
export interface StepReport {
  readonly step: StepRef;
  readonly cached: boolean;
  readonly durationMs: number;
}

/**
 * buildx's build result metadata (what `--metadata-file` writes), for the image as the last `oci`, `docker` or
 * `registry` output wrote it, else as the store holds it.
 */
export interface BuildMetadata {
  readonly 'containerimage.digest': Digest;
  readonly 'containerimage.config.digest': Digest;
  /** The manifest's descriptor; absent when the image was only pushed (a push reports a digest). */
  readonly 'containerimage.descriptor'?: Descriptor;
  /** Comma-separated full names; absent when the image has none. */
  readonly 'image.name'?: string;
}

/** The result of {@link build}. */
export interface BuildResult {
  /** The image manifest digest in the local store. */
  readonly manifestDigest: Digest;
  /** The image config digest (what `docker images` calls the image ID). */
  readonly configDigest: Digest;
  readonly tags: readonly string[];
  readonly layers: ReadonlyArray<{ readonly diffId: Digest; readonly size: number }>;
  readonly steps: readonly StepReport[];
  readonly warnings: readonly string[];
  readonly durationMs: number;
  /** One report per output other than the store, in `outputs` order. */
  readonly outputs: readonly OutputReport[];
  /** buildx's metadata of the result (see {@link BuildMetadata}). */
  readonly metadata: BuildMetadata;
}
