/** `RUN --mount=type=tmpfs`: an empty in-memory filesystem at the target. */
import type { TmpfsMount } from '../../parser/instructions.js';
import { failStep, type MountModule } from './mount.js';

export const tmpfs: MountModule<TmpfsMount> = {
  type: 'tmpfs',
  // The empty fields are those the key had when every mount type shared one: keys recorded then still match.
  cacheKey: async (m) => `tmpfs ${m.target ?? ''}     `,
  async prepare(m, setup) {
    if (!setup.target) return failStep(setup, 'mount type tmpfs needs a target');
    return { mounts: [{ type: 'tmpfs', target: setup.target, ...(m.sizeLimit ? { sizeBytes: m.sizeLimit } : {}) }] };
  },
};
