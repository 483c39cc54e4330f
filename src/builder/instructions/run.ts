/**
 * RUN: the command in a container over the stage's filesystem, its writes the step's layer. The key holds the
 * command, the step's environment (ARG values included, proxies never), user, workdir, network and security mode,
 * and what each mount shows the step (src/builder/mounts/).
 */
import path from 'node:path';
import { StepFailedError } from '../../errors.js';
import { DEFAULT_PATH_ENV } from '../../oci/platform.js';
import { parseMount, type HeredocFile, type RunInstruction } from '../../parser/instructions.js';
import { chompHeredocContent } from '../../parser/heredoc.js';
import { cacheKey } from '../cache-key.js';
import { runPrivileges } from '../entitlements.js';
import { cachedLayerStep } from '../layer-step.js';
import { mountKeys, prepareMounts, withEnv } from '../mounts/index.js';
import { diffIds, expand, fail, notProxy, proxyEnv, stepLayerOptions, type InstructionHandler, type StageState } from '../step-context.js';

// The container runtime (and execa behind it) loads only when a step actually runs: a fully cached rebuild never
// needs it, and its whole process time is the budget.
const stepLayer = () => import('../../runtime/step-layer.js');
const loadContainer = () => import('../../runtime/container.js');

/** The script a shell-form RUN with heredocs runs, as BuildKit builds it. */
function heredocScript(script: string, files: readonly HeredocFile[]): string {
  const first = files[0];
  // `RUN <<EOF` alone: the heredoc body is the script.
  if (files.length === 1 && first && /^\s*\d*<<-?\s*['"]?[^\s'"]+['"]?\s*$/.test(script)) {
    return first.chomp ? chompHeredocContent(first.data) : first.data;
  }
  // Otherwise the shell itself reads the heredocs: hand it the line followed by the bodies.
  let out = script;
  for (const f of files) out += `\n${f.data}${f.name}`;
  return out;
}

/**
 * The `K=V` words BuildKit's runCommandString puts in a RUN's history (`RUN |N K=V … cmd`): every ARG declared
 * in the stage, once, in order of first declaration, with its value in the step environment (an ENV's, or the
 * ARG's own when set after it), empty when it has none.
 */
function runHistoryArgs(state: StageState): string[] {
  return [...state.args.keys()].map((k) => `${k}=${state.env.get(k) ?? ''}`);
}

export const run: InstructionHandler<RunInstruction> = async (ctx, state, ins, step) => {
  const cfg = state.config.config;
  let argv: string[];
  if (ins.command.form === 'shell') {
    const script = ins.heredocs.length > 0 ? heredocScript(ins.command.script, ins.heredocs) : ins.command.script;
    argv = [...(cfg.Shell ?? ['/bin/sh', '-c']), script];
  } else argv = [...ins.command.argv];
  // What the step's processes get (before mounts and proxies); all of it but proxies is in the key, ARG values
  // included (those inherited from a parent stage too, which this stage's history does not show).
  const runEnv = [...state.env].map(([k, v]) => `${k}=${v}`);
  const { network, security } = runPrivileges(ins, ctx.options, (message) => fail(ctx, ins, message));
  if (ins.devices.length > 0) fail(ctx, ins, 'RUN --device is not supported by kiln (no CDI devices on this host)');
  // A mount holding `$VAR` is parsed again now that the step's environment is known.
  const mounts = ins.mounts.map((m) => (m.needsExpansion ? parseMount(m.spec, (w) => expand(ctx, ins, state, w)) : m));
  const mountStep = { ctx, ins, state };
  const shownArgs = runHistoryArgs(state).filter(notProxy);
  const histArgs = shownArgs.length ? `|${shownArgs.length} ${shownArgs.join(' ')} ` : '';
  const createdBy = `RUN ${histArgs}${argv.join(' ')} # buildkit`;
  const key = cacheKey({
    parent: state.key,
    instruction: `RUN ${JSON.stringify(argv)} network=${network}${security === 'insecure' ? ' security=insecure' : ''} user=${cfg.User ?? ''} workdir=${cfg.WorkingDir ?? ''}`,
    args: runEnv.filter(notProxy),
    inputs: await mountKeys(mounts, mountStep),
  });
  return cachedLayerStep(ctx, state, key, createdBy, async () => {
    // The step below, if still pending, is hashed once this container runs (see PendingStepLayer).
    const below = state.pending;
    const { pending } = await (await stepLayer()).runStepLayer(ctx.store, diffIds(state), below?.dir, stepLayerOptions(ctx), async (dirs) => {
      const extra = await prepareMounts(mounts, mountStep, dirs.scratch);
      try {
        // Proxy build args reach every RUN without an ARG line, as Docker's predefined ARGs do: only where the step has
        // no such variable of its own, and never in the cache key or the history (they may carry credentials).
        const env = withEnv(runEnv, { set: extra.env.set, defaults: [...extra.env.defaults, ...proxyEnv(ctx.options.buildArgs)] });
        if (!env.some((e) => e.startsWith('PATH='))) env.unshift(DEFAULT_PATH_ENV);
        const { runContainer } = await loadContainer();
        const result = await runContainer(
          {
            rootfs: { lowerDirs: dirs.lowerDirs, upperDir: dirs.upperDir, workDir: dirs.workDir },
            args: argv,
            env,
            cwd: cfg.WorkingDir || '/',
            ...(cfg.User ? { user: cfg.User } : {}),
            network,
            // BuildKit's name for every RUN container: what `hostname` prints, and in /etc/hosts.
            hostname: 'buildkitsandbox',
            buildStep: true,
            ...(security === 'insecure' ? { security } : {}),
            mounts: extra.mounts,
            runtime: ctx.options.runtime,
          },
          {
            ...(ctx.signal ? { signal: ctx.signal } : {}),
            onOutput: (chunk, stream) => ctx.emitOutput(step, chunk, stream),
            onStarted: () => below?.startHashing(),
            versionCacheDir: path.join(ctx.store.root, 'cache'),
            ...(ctx.networks === undefined ? {} : { networks: ctx.networks }),
            host: ctx.host,
          },
        );
        ctx.runtimeWarnings(result.warnings);
        if (result.exitCode !== 0) {
          const shown = ins.command.form === 'shell' ? argv.join(' ') : JSON.stringify(argv);
          const why = result.runtimeError ? `: ${result.runtimeError}` : '';
          throw new StepFailedError(`process "${shown}" did not complete successfully: exit code: ${result.exitCode}${why}`, {
            file: ctx.file,
            range: ins.range,
            instruction: ins.source,
            exitCode: result.exitCode,
            outputTail: result.outputTail,
          });
        }
      } finally {
        await extra.release();
      }
    });
    return pending;
  });
};
