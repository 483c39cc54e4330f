/**
 * `build`: the builder behind the public API. The builder's modules load on the first build, so importing the
 * package (or starting the CLI for another command) does not load them.
 */
import { rm } from 'node:fs/promises';
import type { BuildOptions as BuilderOptions, BuildResult } from '../builder/options.js';

/** Options of {@link build}. Everything is optional. */
export interface BuildOptions extends Omit<BuilderOptions, 'context'> {
  /**
   * The build context directory; `null` for none, as `docker build -` (the Dockerfile then comes from
   * `dockerfileText` or `dockerfile`, and COPY has no local files to copy). @default process.cwd()
   */
  readonly context?: string | null;
}

/**
 * Builds a Dockerfile into an image in the store (tagged with `tags`) and writes the `outputs`.
 * @throws DockerfileError (the Dockerfile is malformed), StepFailedError (a step failed), RuntimeError,
 *   RegistryError, BuildError (code INVALID_OPTION for a bad option); `signal.reason` when aborted
 */
export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  const { build: runBuild } = await import('../builder/build.js');
  const { context, ...rest } = options;
  if (context !== null) return runBuild(context === undefined ? rest : { ...rest, context });
  // An empty directory stands in, owned by this process so that a later kiln removes it if this one is killed.
  const { makeOwnedTempDir } = await import('../store/owner.js');
  const empty = makeOwnedTempDir('empty-context');
  try {
    return await runBuild({ ...rest, context: empty });
  } finally {
    await rm(empty, { recursive: true, force: true });
  }
}
