/**
 * kiln's public API. Plugins and the CLI import from here only.
 */
export { build } from './builder/build.js';
export { createHost } from './runtime/host.js';
export type { Host } from './runtime/host.js';
export type { BuildOptions, BuildResult, BuildMetadata, BuildEvent, OutputReport, StepRef, StepReport, OutputSpec, SecretSource, SshAgentSource, Entitlement } from './builder/options.js';
export { parse } from './parser/index.js';
export type { Dockerfile } from './parser/index.js';
export type { Instruction, InstructionKind, CommandForm, RunMount } from './parser/instructions.js';
export { INSTRUCTION_KINDS } from './parser/instructions.js';
export { BuildError, DockerfileError, StepFailedError, RuntimeError, RegistryError, formatError } from './errors.js';
export type { Position, SourceRange } from './errors.js';
export { verifyStore } from './store/verify.js';
export type { VerifyOptions, VerifyReport, VerifyProblem } from './store/verify.js';
