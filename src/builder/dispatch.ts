/**
 * What each instruction does to a stage, with `docker build`'s semantics: one handler per instruction kind
 * (src/builder/instructions/), registered here by kind. The handlers change the image config, write the history
 * entry, chain the cache key and, for the steps that change files (RUN, COPY, ADD, WORKDIR), ask the runtime for
 * the layer on a cache miss (src/builder/layer-step.ts).
 */
import type { Instruction, InstructionKind } from '../parser/instructions.js';
import { arg } from './instructions/arg.js';
import { COMMAND_HANDLERS } from './instructions/command.js';
import { copy } from './instructions/copy.js';
import { METADATA_HANDLERS } from './instructions/metadata.js';
import { run } from './instructions/run.js';
import { workdir } from './instructions/workdir.js';
import type { StepRef } from './options.js';
import { fail, type DispatchContext, type HandlerTable, type InstructionHandler, type StageState, type StepOutcome } from './step-context.js';

/** Every instruction kind's handler: the type names any kind left out. */
export const HANDLERS: HandlerTable<InstructionKind> = {
  // Stages are split before dispatch: a FROM never reaches a handler's stage.
  from: async (ctx, _state, ins) => fail(ctx, ins, 'FROM inside a stage'),
  ...METADATA_HANDLERS,
  ...COMMAND_HANDLERS,
  arg,
  workdir,
  run,
  copy,
  add: copy,
};

/**
 * Runs one instruction of a stage. Config-only instructions change `state` and chain the key;
 * filesystem steps look their key up in the cache and run only on a miss.
 */
export async function dispatch(ctx: DispatchContext, state: StageState, ins: Instruction, step: StepRef): Promise<StepOutcome> {
  ctx.signal?.throwIfAborted();
  // The table's type pairs each kind with the handler of that kind; indexing by a union kind loses that pairing.
  const handler = HANDLERS[ins.kind] as InstructionHandler<Instruction>;
  return handler(ctx, state, ins, step);
}
