/**
 * The cache around a step that makes a layer (RUN, COPY, ADD, WORKDIR): look the step's key up (locally, then in
 * the shared cache), and only on a miss run the step and record its layer under the key.
 */
import type { PendingStepLayer } from '../runtime/step-layer.js';
import type { LayerInfo } from '../store/types.js';
import { history, now, settlePending, type DispatchContext, type StageState, type StepOutcome } from './step-context.js';

/** What the store keeps under a step's key (src/builder/remote-cache.ts shares the same shape). */
interface CacheRecord {
  layer: LayerInfo | null;
  created: string;
}

/**
 * Looks a step up in the cache; on a miss runs `produce` and records its layer. `produce` may hand back a
 * still-hashing layer ({@link PendingStepLayer}, from a RUN or COPY that mounted the previous pending upperdir):
 * it becomes the stage's pending step and is recorded when settled.
 */
export async function cachedLayerStep(
  ctx: DispatchContext,
  state: StageState,
  key: string,
  createdBy: string,
  produce: () => Promise<LayerInfo | null | PendingStepLayer>,
): Promise<StepOutcome> {
  state.key = key;
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
  const created = now(ctx);
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
