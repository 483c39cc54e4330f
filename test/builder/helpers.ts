/**
 * Test helper for end-to-end builds: a private store per test file, contexts written from a map of
 * files, builds with a local-directory output to look at the resulting filesystem.
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from '../../src/builder/build.js';
import type { BuildEvent, BuildOptions, BuildResult } from '../../src/builder/options.js';
import { LayerStore } from '../../src/store/layer-store.js';
import type { StoredImage } from '../../src/store/types.js';

export const fixturesDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'build');

/** A temp area (store root + scratch dirs) that one test file shares. */
export interface Sandbox {
  readonly root: string;
  readonly dir: string;
  /** A fresh empty directory under the sandbox. */
  tempDir(name?: string): Promise<string>;
  /** Writes `files` (path → content) into a fresh context directory. */
  context(files: Readonly<Record<string, string>>): Promise<string>;
  /** Builds with this sandbox's store; `fs` is the image's filesystem exported with `--output type=local`. */
  build(options: BuildOptions): Promise<Built>;
  cleanup(): Promise<void>;
}

export interface Built {
  readonly result: BuildResult;
  readonly image: StoredImage;
  readonly fs: string;
  readonly events: BuildEvent[];
  /** Reads a file of the image's filesystem. */
  read(p: string): Promise<string>;
  /** Whether step `text` (its first line, as written) ran rather than came from the cache. */
  ran(text: string): boolean;
}

export async function sandbox(): Promise<Sandbox> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-build-test-'));
  const root = path.join(dir, 'store');
  let n = 0;
  const tempDir = async (name = 'd'): Promise<string> => {
    const d = path.join(dir, `${name}-${++n}`);
    await mkdir(d, { recursive: true });
    return d;
  };
  return {
    root,
    dir,
    tempDir,
    async context(files) {
      const d = await tempDir('ctx');
      for (const [p, content] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(d, p)), { recursive: true });
        await writeFile(path.join(d, p), content);
      }
      return d;
    },
    async build(options) {
      const fs = await tempDir('out');
      const events: BuildEvent[] = [];
      const result = await build({
        root,
        ...options,
        outputs: [...(options.outputs ?? []), { type: 'local', dest: fs }],
        onEvent: (e) => {
          events.push(e);
          options.onEvent?.(e);
        },
      });
      const store = await LayerStore.open(root);
      const image = await store.getImage(result.manifestDigest);
      return {
        result,
        image,
        fs,
        events,
        read: (p) => readFile(path.join(fs, p), 'utf8'),
        ran: (text) => result.steps.some((s) => s.step.text === text && !s.cached),
      };
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
