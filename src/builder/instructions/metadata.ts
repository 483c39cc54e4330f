/**
 * The instructions that change only the image config (and, for ENV, the stage's environment): ENV, LABEL, EXPOSE,
 * USER, VOLUME, STOPSIGNAL, MAINTAINER, SHELL, ONBUILD. Each chains its canonical text into the stage's key and
 * writes the history line BuildKit writes for it.
 */
import { messageOf } from '../../errors.js';
import type { ImageConfig } from '../../oci/types.js';
import { parsePorts } from '../../parser/ports.js';
import { goList } from './go-format.js';
import { configStep, expand, expandWords, fail, type HandlerTable } from '../step-context.js';

/** Sets `key` in the config's Env, in place when it is already there (docker keeps the first position). */
function setEnv(config: ImageConfig, key: string, value: string): void {
  const env = config.config.Env ?? [];
  const i = env.findIndex((e) => e === key || e.startsWith(`${key}=`));
  if (i >= 0) env[i] = `${key}=${value}`;
  else env.push(`${key}=${value}`);
  config.config.Env = env;
}

export const METADATA_HANDLERS: HandlerTable<'env' | 'label' | 'expose' | 'user' | 'volume' | 'stopsignal' | 'maintainer' | 'shell' | 'onbuild'> = {
  async env(ctx, state, ins) {
    const parts: string[] = [];
    for (const p of ins.pairs) {
      const value = expand(ctx, ins, state, p.value);
      const key = expand(ctx, ins, state, p.key);
      setEnv(state.config, key, value);
      state.env.set(key, value);
      parts.push(`${key}=${value}`);
    }
    return configStep(ctx, state, `ENV ${parts.join(' ')}`, `ENV ${parts.join(' ')}`);
  },

  async label(ctx, state, ins) {
    const cfg = state.config.config;
    const parts: string[] = [];
    cfg.Labels ??= {};
    for (const p of ins.pairs) {
      const key = expand(ctx, ins, state, p.key);
      const value = expand(ctx, ins, state, p.value);
      cfg.Labels[key] = value;
      parts.push(`${key}=${value}`);
    }
    return configStep(ctx, state, `LABEL ${parts.join(' ')}`, `LABEL ${parts.join(' ')}`);
  },

  async expose(ctx, state, ins) {
    const cfg = state.config.config;
    let ports: string[];
    try {
      // Word expansion, as BuildKit does it: `$P` with P="80 81" is two ports, an unset variable none.
      ports = parsePorts(ins.ports.flatMap((p) => expandWords(ctx, ins, state, p)));
    } catch (err) {
      return fail(ctx, ins, messageOf(err), err);
    }
    cfg.ExposedPorts ??= {};
    for (const p of ports) cfg.ExposedPorts[p] = {};
    return configStep(ctx, state, `EXPOSE ${ports.join(' ')}`, `EXPOSE map[${ports.map((p) => `${p}:{}`).join(' ')}]`);
  },

  async user(ctx, state, ins) {
    const user = expand(ctx, ins, state, ins.user);
    state.config.config.User = user;
    return configStep(ctx, state, `USER ${user}`, `USER ${user}`);
  },

  async volume(ctx, state, ins) {
    const cfg = state.config.config;
    cfg.Volumes ??= {};
    const vols = ins.volumes.map((v) => expand(ctx, ins, state, v));
    for (const v of vols) {
      if (v.trim() === '') fail(ctx, ins, 'VOLUME specified can not be an empty string');
      cfg.Volumes[v] = {};
    }
    return configStep(ctx, state, `VOLUME ${JSON.stringify(vols)}`, `VOLUME [${vols.join(' ')}]`);
  },

  async stopsignal(ctx, state, ins) {
    const signal = expand(ctx, ins, state, ins.signal);
    state.config.config.StopSignal = signal;
    return configStep(ctx, state, `STOPSIGNAL ${signal}`, `STOPSIGNAL ${signal}`);
  },

  async maintainer(ctx, state, ins) {
    state.config.author = ins.maintainer;
    return configStep(ctx, state, `MAINTAINER ${ins.maintainer}`, `MAINTAINER ${ins.maintainer}`);
  },

  async shell(ctx, state, ins) {
    state.config.config.Shell = [...ins.shell];
    return configStep(ctx, state, `SHELL ${JSON.stringify(ins.shell)}`, `SHELL ${goList(ins.shell)}`);
  },

  async onbuild(ctx, state, ins) {
    const cfg = state.config.config;
    cfg.OnBuild = [...(cfg.OnBuild ?? []), ins.expression];
    // BuildKit records triggers in the config only: an ONBUILD line adds no history entry.
    return configStep(ctx, state, `ONBUILD ${ins.expression}`, undefined);
  },
};
