/**
 * `RUN --mount=type=cache`: a directory persisted in the store across builds, one per cache id (default: the
 * target). `private` gets a fresh directory per use; `locked` serialises the steps using it through a store lock.
 */
import path from 'node:path';
import type { CacheMount } from '../../parser/instructions.js';
import { failStep, type MountModule } from './mount.js';

export const cache: MountModule<CacheMount> = {
  type: 'cache',
  cacheKey: async (m) => `cache ${m.target ?? ''} ${m.id ?? ''} ${m.sharing ?? ''} ${m.mode ?? ''} ${m.uid ?? ''} ${m.gid ?? ''}`,
  async prepare(m, setup) {
    const target = setup.target;
    if (!target) return failStep(setup, 'mount type cache needs a target');
    const { openCacheMount } = await import('../../runtime/cache-mount.js');
    const opened = await openCacheMount(setup.ctx.store, {
      id: m.id ?? target,
      ...(m.sharing === 'private' ? { privateDir: path.join(setup.scratch, `cache-private-${setup.index}`) } : {}),
      locked: m.sharing === 'locked',
      mode: m.mode ?? 0o755,
      ...(m.uid !== undefined || m.gid !== undefined ? { owner: { uid: m.uid ?? 0, gid: m.gid ?? 0 } } : {}),
    });
    setup.defer(() => opened.release());
    return { mounts: [{ type: 'bind', source: opened.dir, target, readonly: m.readOnly }] };
  },
};
