/**
 * ARG: declares build args in the stage. A value enters the stage's environment (RUN gets it, later words expand
 * with it) but not the image config; only the names enter the key chain.
 */
import { configStep, expand, type InstructionHandler } from '../step-context.js';
import type { ArgInstruction } from '../../parser/instructions.js';

export const arg: InstructionHandler<ArgInstruction> = async (ctx, state, ins) => {
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
  return configStep(ctx, state, `ARG ${ins.args.map((a) => a.key).join(' ')}`, `ARG ${parts.join(' ')}`);
};
