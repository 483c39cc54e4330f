/**
 * The `RUN --mount` types, one module each, registered by type: a new mount type is one parser variant
 * (src/parser/instructions.ts's RunMount) and one module here, and the compiler names whichever is missing.
 */
import path from 'node:path';
import type { RunMount } from '../../parser/instructions.js';
import type { ExtraMount } from '../../runtime/container.js';
import { bind } from './bind.js';
import { cache } from './cache.js';
import type { MountEnv, MountModule, MountStep } from './mount.js';
import { secret } from './secret.js';
import { ssh } from './ssh.js';
import { tmpfs } from './tmpfs.js';

/** One module per mount type, each under its own type. */
export type MountTable = { readonly [T in RunMount['type']]: MountModule<Extract<RunMount, { type: T }>> };

/** Every mount type's module: the type names any mount type left out. */
export const MOUNTS: MountTable = { bind, cache, tmpfs, secret, ssh };

/** The module of a mount's type. */
function moduleOf<M extends RunMount>(mount: M): MountModule<M> {
  // The record's type pairs each type with the module for it; indexing by a union type loses that pairing.
  return MOUNTS[mount.type] as unknown as MountModule<M>;
}

/** The mounts' parts of a RUN step's cache key, in the step's order. */
export async function mountKeys(mounts: readonly RunMount[], step: MountStep): Promise<string[]> {
  const keys: string[] = [];
  for (const m of mounts) keys.push(await moduleOf(m).cacheKey(m, step));
  return keys;
}

/** The step's mounts, set up: what the container gets, and `release` to undo it all afterwards. */
export interface PreparedMounts {
  readonly mounts: ExtraMount[];
  readonly env: MountEnv;
  release(): Promise<void>;
}

/** Sets the step's mounts up in order; when one fails, what the others set up is undone before the error goes on. */
export async function prepareMounts(mounts: readonly RunMount[], step: MountStep, scratch: string): Promise<PreparedMounts> {
  const out: ExtraMount[] = [];
  const set: string[] = [];
  const defaults: string[] = [];
  const releases: Array<() => Promise<void>> = [];
  const release = async (): Promise<void> => {
    for (const r of releases.reverse()) await r().catch(() => {});
  };
  const seen = new Map<RunMount['type'], number>();
  try {
    for (const [i, m] of mounts.entries()) {
      const ordinal = seen.get(m.type) ?? 0;
      seen.set(m.type, ordinal + 1);
      const target = m.target ? path.posix.resolve(step.state.config.config.WorkingDir || '/', m.target) : undefined;
      const prepared = await moduleOf(m).prepare(m, { ...step, target, scratch, index: i + 1, ordinal, defer: (r) => void releases.push(r) });
      out.push(...(prepared.mounts ?? []));
      set.push(...(prepared.env?.set ?? []));
      defaults.push(...(prepared.env?.defaults ?? []));
    }
    return { mounts: out, env: { set, defaults }, release };
  } catch (err) {
    await release();
    throw err;
  }
}

/** `env` (KEY=VALUE entries) with `extra` applied (see {@link MountEnv}). */
export function withEnv(env: readonly string[], extra: MountEnv): string[] {
  const keyOf = (e: string): string => e.slice(0, e.indexOf('='));
  const out = [...env];
  for (const e of extra.defaults) if (!out.some((o) => keyOf(o) === keyOf(e))) out.push(e);
  for (const e of extra.set) {
    const at = out.findIndex((o) => keyOf(o) === keyOf(e));
    if (at >= 0) out[at] = e;
    else out.push(e);
  }
  return out;
}
