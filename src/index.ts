/**
 * kiln's public API: everything a program needs, and all the CLI (src/cli/) uses. Plugins and the CLI import
 * from here only. Functions that work on a store take `root` (@default `$KILN_ROOT`, else `~/.cache/kiln`);
 * long ones take an AbortSignal `signal` and a progress callback. Errors are the classes exported below.
 *
 * The modules behind `build`, the store, the registry and the runtime load on first use: importing the package
 * costs the parser and little else.
 */

// Building
export { build } from './api/build.js';
export type { BuildOptions } from './api/build.js';
export type {
  BuildResult,
  BuildMetadata,
  BuildEvent,
  OutputReport,
  StepRef,
  StepReport,
  OutputSpec,
  SecretSource,
  SshAgentSource,
  Entitlement,
  CacheImportSpec,
  CacheExportSpec,
} from './builder/options.js';
export { validateTag } from './builder/tags.js';
export { createHost } from './runtime/host.js';
export type { Host } from './runtime/host.js';

// Parsing
export { parse } from './parser/index.js';
export type { Dockerfile, ParseDockerfileOptions } from './parser/index.js';
export { dumpDockerfile } from './api/parse.js';
export type { Instruction, InstructionKind, CommandForm, RunMount } from './parser/instructions.js';
export { INSTRUCTION_KINDS } from './parser/instructions.js';

// Images in the store
export { listImages, inspectImage, tag, removeImage, prune, save, load } from './api/images.js';
export type { ImageSummary, TagResult, PruneOptions, PruneResult, SaveOptions, LoadOptions } from './api/images.js';
export type { StoredImage } from './store/types.js';
export type { Digest, ImageConfig, ImageManifest, Platform } from './oci/types.js';
export type { ExportOutput as SaveOutput, ExportProgressEvent as SaveProgressEvent, ExportResult as SaveResult } from './outputs/index.js';
export type { ImportSource as LoadSource } from './image/import.js';
export { verifyStore } from './api/store.js';
export type { StoreOptions, VerifyStoreOptions } from './api/store.js';
export type { VerifyOptions, VerifyReport, VerifyProblem } from './store/verify.js';

// Registries
export { pull, push, login } from './api/registry.js';
export type { TransferOptions, PullOptions, PushOptions, PushResult, LoginOptions } from './api/registry.js';
export type { TransferEvent } from './registry/pull.js';
export type { Credentials } from './registry/auth.js';

// Containers
export { run } from './api/run.js';
export type { RunOptions, RunResult } from './api/run.js';

// Errors
export { BuildError, DockerfileError, StepFailedError, RuntimeError, RegistryError, ImageNotFoundError, formatError } from './errors.js';
export type { Position, SourceRange } from './errors.js';
