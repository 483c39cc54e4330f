/**
 * A small build-system plugin: builds every service of a monorepo through one kiln store, so the
 * steps the services share (here the `base` stage) are built once and cached for all of them, and
 * forwards kiln's progress events to the host's own logger.
 *
 *   node --import tsx examples/monorepo/build-all.ts [VERSION]
 *
 * A real plugin imports from the package root (`import { build } from 'kiln'`); this example sits
 * inside the repository, so it imports the sources.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, formatError, type BuildEvent, type BuildResult } from '../../src/index.js';

/** What the host build system knows about each image. */
export interface ServiceTarget {
  readonly name: string;
  readonly dockerfile: string;
}

export interface BuildAllOptions {
  readonly root: string;
  readonly services: readonly ServiceTarget[];
  readonly version: string;
  /** The kiln store shared by every service build. @default kiln's default store */
  readonly store?: string;
  readonly log: (service: string, line: string) => void;
  readonly signal?: AbortSignal;
}

/** Maps kiln's events onto the host's log lines. */
function describe(event: BuildEvent): string | undefined {
  switch (event.type) {
    case 'step-cached':
      return `CACHED ${event.step.text}`;
    case 'step-done':
      return `${event.step.text} (${event.durationMs} ms)`;
    case 'warning':
      return `warning: ${event.message}`;
    default:
      return undefined;
  }
}

/** Builds the services one after another (they share cache entries, so the second reuses the first's). */
export async function buildAll(options: BuildAllOptions): Promise<Map<string, BuildResult>> {
  const results = new Map<string, BuildResult>();
  for (const service of options.services) {
    const result = await build({
      context: options.root,
      dockerfile: path.join(options.root, service.dockerfile),
      tags: [`acme/${service.name}:${options.version}`],
      buildArgs: { VERSION: options.version },
      ...(options.store ? { root: options.store } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      onEvent: (event) => {
        const line = describe(event);
        if (line) options.log(service.name, line);
      },
    });
    results.set(service.name, result);
  }
  return results;
}

// Run as a script: build both services of this example monorepo.
if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const root = path.dirname(fileURLToPath(import.meta.url));
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort(new Error('interrupted')));
  buildAll({
    root,
    services: [
      { name: 'api', dockerfile: 'services/api/Dockerfile' },
      { name: 'web', dockerfile: 'services/web/Dockerfile' },
    ],
    version: process.argv[2] ?? 'dev',
    log: (service, line) => process.stderr.write(`[${service}] ${line}\n`),
    signal: controller.signal,
  }).then(
    (results) => {
      for (const [name, r] of results) {
        const cached = r.steps.filter((s) => s.cached).length;
        process.stdout.write(`${name}\t${r.manifestDigest}\t${cached}/${r.steps.length} steps cached\n`);
      }
    },
    (err: unknown) => {
      process.stderr.write(`${formatError(err)}\n`);
      process.exitCode = 1;
    },
  );
}
