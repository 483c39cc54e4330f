/**
 * What a `RUN --mount` type is to the builder: one module per type (src/builder/mounts/<type>.ts) gives the mount's
 * part of the step's cache key and sets the mount up for the step's container. src/builder/mounts/index.ts
 * registers them by type, so a type the parser knows without a module here is a compile error.
 */
import type { RunInstruction, RunMount } from '../../parser/instructions.js';
import type { ExtraMount } from '../../runtime/container.js';
import { fail, type DispatchContext, type StageState } from '../step-context.js';

/** The RUN step a mount belongs to. */
export interface MountStep {
  readonly ctx: DispatchContext;
  readonly ins: RunInstruction;
  readonly state: StageState;
}

/** Where and how one mount is set up, on a cache miss, just before the step's container starts. */
export interface MountSetup extends MountStep {
  /** The mount point in the container, resolved against WORKDIR; undefined when the mount names none. */
  readonly target: string | undefined;
  /** The step's private scratch directory (removed after the step). */
  readonly scratch: string;
  /** The mount's position among the step's mounts, from 1 (names its entries in `scratch`). */
  readonly index: number;
  /** How many mounts of the same type come before it in the step. */
  readonly ordinal: number;
  /** Registers how to undo something set up; run in reverse order after the step, or when a later mount fails. */
  readonly defer: (release: () => Promise<void>) => void;
}

/** Environment a step's mounts add: `set` overrides the step's variables, `defaults` only fills in missing ones. */
export interface MountEnv {
  readonly set: readonly string[];
  readonly defaults: readonly string[];
}

/** What a mount gives the step's container: mounts (none when the mount is skipped) and environment. */
export interface PreparedMount {
  readonly mounts?: readonly ExtraMount[];
  readonly env?: Partial<MountEnv>;
}

/** One mount type. */
export interface MountModule<M extends RunMount> {
  readonly type: M['type'];
  /** This mount's part of the RUN step's cache key: what it shows the step, never a secret's value. */
  cacheKey(mount: M, step: MountStep): Promise<string>;
  /** Sets the mount up (through src/runtime/), registering with `setup.defer` whatever must be undone. */
  prepare(mount: M, setup: MountSetup): Promise<PreparedMount>;
}

/** Fails the RUN step at its line. */
export const failStep = (step: MountStep, message: string, cause?: unknown): never => fail(step.ctx, step.ins, message, cause);
