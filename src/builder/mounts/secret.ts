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
  // The file's owner and mode are part of the step's result; they enter the key only when written.
  cacheKey: async (m) =>
    `secret ${m.source ?? m.id ?? ''} ${m.target ?? ''}${m.env !== undefined ? ` env=${m.env}` : ''}` +
    `${m.uid !== undefined ? ` uid=${m.uid}` : ''}${m.gid !== undefined ? ` gid=${m.gid}` : ''}${m.mode !== undefined ? ` mode=${m.mode}` : ''}`,

  async prepare(m, setup) {
    // As BuildKit's dispatchSecret: `source` names the secret when given, else `id`, else the target's base name.
    const id = m.source ?? m.id ?? (m.target ? path.posix.basename(m.target) : undefined);
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
    // Owned by uid/gid (0 when not given) with mode (0400), as BuildKit's SecretFileOpt sets them.
    const file = await writeSecretFile(value, m.mode ?? 0o400, { uid: m.uid ?? 0, gid: m.gid ?? 0 }).catch((err: unknown) =>
      failStep(setup, `secret ${id}: ${messageOf(err)}`),
    );
    setup.defer(() => file.release());
    return { env, mounts: [{ type: 'bind', source: file.file, target: setup.target ?? `/run/secrets/${path.posix.basename(id)}`, readonly: true }] };
  },
};
