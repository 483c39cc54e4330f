/**
 * WORKDIR: sets the config's working directory and, as BuildKit does, makes the directory in a layer step of its
 * own (an empty layer when it already exists), owned by the stage's USER.
 */
import path from 'node:path';
import type { WorkdirInstruction } from '../../parser/instructions.js';
import { cacheKey } from '../cache-key.js';
import { cachedLayerStep } from '../layer-step.js';
import { configTime, diffIds, expand, history, numericOwner, stepLayerOptions, type InstructionHandler } from '../step-context.js';

// The filesystem work loads on a cache miss only: a fully cached build never needs it.
const stepLayer = () => import('../../runtime/step-layer.js');
const workdirFs = () => import('../../runtime/handlers/workdir.js');

export const workdir: InstructionHandler<WorkdirInstruction> = async (ctx, state, ins) => {
  const cfg = state.config.config;
  const dir = expand(ctx, ins, state, ins.path);
  // BuildKit's NormalizeWorkdir keeps an absolute path as written (`/w/d1/../d3`, `/app/`) in the config and
  // the history and only joins (and so cleans) a relative one; the directory it makes is the cleaned path.
  const written = dir === '' ? cfg.WorkingDir || '/' : path.posix.isAbsolute(dir) ? dir : path.posix.join(cfg.WorkingDir || '/', dir);
  const resolved = path.posix.resolve(written);
  cfg.WorkingDir = written;
  // BuildKit makes every WORKDIR but `/` (as written) a mkdir step with a layer of its own, empty when the
  // directory already exists (the well-known empty layer in images built by BuildKit).
  if (written === '/') {
    history(state, 'WORKDIR /', true, configTime(ctx, state));
    return { cached: false };
  }
  // `layer`: keys from before every WORKDIR made a layer recorded none for an existing directory.
  // `owned`: keys from before the directories it makes went to USER recorded root-owned ones.
  const key = cacheKey({ parent: state.key, instruction: `WORKDIR ${written}`, args: [`user=${cfg.User ?? ''}`, 'layer', ...(cfg.User ? ['owned'] : [])] });
  return cachedLayerStep(ctx, state, key, `WORKDIR ${written}`, async () => {
    // As a COPY does: the step below, if still pending (a big apt-get RUN's layer takes seconds to hash), is hashed
    // meanwhile, its upperdir serving as the top-most lower, instead of this step waiting for it.
    const below = state.pending;
    below?.startHashing();
    const { directoryInLayers, makeDirectory } = await workdirFs();
    const exists = await directoryInLayers(ctx.store, diffIds(state), below?.dir, resolved, ctx.signal);
    // BuildKit makes the directories it creates as the stage's USER (its mkdir runs with the user's ids): a name
    // needs the stage's /etc/passwd, a number does not (a missing gid is the uid, as for --chown).
    const user = cfg.User ?? '';
    const owner = user === '' ? undefined : /^\d+(:\d+)?$/.test(user) ? numericOwner(user) : { user };
    const { pending } = await (await stepLayer()).runStepLayer(ctx.store, diffIds(state), below?.dir, stepLayerOptions(ctx), async (dirs) => {
      if (!exists) await makeDirectory(dirs, resolved, owner, ctx.signal);
    });
    return pending;
  });
};
