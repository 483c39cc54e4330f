/**
 * `RUN --mount=type=secret`: a build secret (`--secret id=…`) as a read-only file in memory-backed storage
 * (default `/run/secrets/<id>`), and with `env=` as a variable of this step only.
 */
import path from 'node:path';
import { messageOf } from '../../errors.js';
import type { SecretMount } from '../../parser/instructions.js';
import { failStep, type MountEnv, type MountModule } from './mount.js';

export const secret: MountModule<SecretMount> = {
  type: 'secret',
  // Secret values never enter keys; where they appear (file, variable) does.
  cacheKey: async (m) => `secret ${m.id ?? m.source ?? ''} ${m.target ?? ''}${m.env !== undefined ? ` env=${m.env}` : ''}`,

  async prepare(m, setup) {
    const id = m.id ?? (m.target ? path.posix.basename(m.target) : undefined);
    if (!id) return failStep(setup, 'secret mount needs an id or a target');
    const given = setup.ctx.options.secrets.find((s) => s.id === id);
    const { readSecretValue, writeSecretFile } = await import('../../runtime/secret-file.js');
    const value = given === undefined ? undefined : await readSecretValue(given);
    if (value === undefined) {
      if (m.required) failStep(setup, `secret ${id} not found`);
      return {};
    }
    // env= puts the value in the step's environment (only this step's: never the image config or history);
    // a file is mounted too when there is no env= or a target is also given.
    const env: Partial<MountEnv> = m.env !== undefined ? { set: [`${m.env}=${value.toString('utf8')}`] } : {};
    if (m.env !== undefined && m.target === undefined) return { env };
    // In memory-backed storage only, never on the store's disk (see runtime/secret-file.ts).
    const file = await writeSecretFile(value, m.mode ?? 0o400).catch((err: unknown) => failStep(setup, `secret ${id}: ${messageOf(err)}`));
    setup.defer(() => file.release());
    return { env, mounts: [{ type: 'bind', source: file.file, target: setup.target ?? `/run/secrets/${id}`, readonly: true }] };
  },
};
