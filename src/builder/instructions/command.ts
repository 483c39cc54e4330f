/**
 * The instructions that set what the image runs: CMD, ENTRYPOINT and HEALTHCHECK. Config only; their history
 * lines are Go's formatting of the values, as BuildKit writes them.
 */
import type { CommandForm } from '../../parser/instructions.js';
import { configStep, type HandlerTable, type StageState } from '../step-context.js';
import { goDuration, goList, goQuoteList } from './go-format.js';

/** argv of a command in either form, with the stage's SHELL for the shell form. */
function commandArgv(state: StageState, command: CommandForm): string[] {
  if (command.form === 'exec') return [...command.argv];
  const shell = state.config.config.Shell ?? ['/bin/sh', '-c'];
  return [...shell, command.script];
}

export const COMMAND_HANDLERS: HandlerTable<'cmd' | 'entrypoint' | 'healthcheck'> = {
  async cmd(ctx, state, ins) {
    const cfg = state.config.config;
    const cmd = commandArgv(state, ins.command);
    cfg.Cmd = cmd;
    state.cmdSet = true;
    if (ins.command.form === 'shell') cfg.ArgsEscaped = true;
    return configStep(ctx, state, `CMD ${JSON.stringify(cmd)}`, `CMD ${goQuoteList(cmd)}`);
  },

  async entrypoint(ctx, state, ins) {
    const cfg = state.config.config;
    const entrypoint = commandArgv(state, ins.command);
    cfg.Entrypoint = entrypoint;
    if (!state.cmdSet) cfg.Cmd = null; // docker: a new ENTRYPOINT drops the base image's CMD
    return configStep(ctx, state, `ENTRYPOINT ${JSON.stringify(entrypoint)}`, `ENTRYPOINT ${goQuoteList(entrypoint)}`);
  },

  async healthcheck(ctx, state, ins) {
    const cfg = state.config.config;
    if (ins.check.type === 'none') cfg.Healthcheck = { Test: ['NONE'] };
    else {
      const hc = ins.check;
      cfg.Healthcheck = { Test: [...hc.test] };
      if (hc.interval) cfg.Healthcheck.Interval = hc.interval;
      if (hc.timeout) cfg.Healthcheck.Timeout = hc.timeout;
      if (hc.startPeriod) cfg.Healthcheck.StartPeriod = hc.startPeriod;
      if (hc.startInterval) cfg.Healthcheck.StartInterval = hc.startInterval;
      if (hc.retries) cfg.Healthcheck.Retries = hc.retries;
    }
    // BuildKit's dispatchHealthcheck: Go's `%+v` of the HealthcheckConfig struct (durations by their String()).
    const h = cfg.Healthcheck;
    return configStep(
      ctx,
      state,
      `HEALTHCHECK ${JSON.stringify(h)}`,
      `HEALTHCHECK {Test:${goList(h.Test ?? [])} Interval:${goDuration(h.Interval ?? 0)} Timeout:${goDuration(h.Timeout ?? 0)} StartPeriod:${goDuration(h.StartPeriod ?? 0)} StartInterval:${goDuration(h.StartInterval ?? 0)} Retries:${h.Retries ?? 0}}`,
    );
  },
};
