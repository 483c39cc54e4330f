/**
 * Regression tests from the differential fuzzer (scripts/fuzz-build.ts): each folder under
 * test/fixtures/differential-buildkit/ holds a shrunk case on which kiln and BuildKit once differed,
 * with BuildKit's image recorded from dockerd 20.10 (`buildkit.json`: config, history, every layer but
 * the shared busybox base, or BuildKit's error). kiln builds the case (no Docker needed here) and its
 * image must have the same facts, or fail where BuildKit failed.
 *
 * A fixture whose `meta.json` says `"open": true` records a difference kiln has not fixed yet: its test
 * runs as a todo (reported, not failing the suite). Whoever fixes the bug sets `open` to false.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildWithKiln } from './engines.js';
import { dockerArchiveFacts, diffFacts } from './image-facts.js';
import { NAMES, readFixture, unexplained, writeContext } from './fuzz.js';

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'differential-buildkit');
const names = (await readdir(FIXTURES, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory()).map((e) => e.name).sort();
const work = await mkdtemp(path.join(tmpdir(), 'kiln-diff-bk-'));
// One store for all fixtures: the busybox base is made once.
const root = path.join(work, 'store');

after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('kiln against BuildKit facts recorded by the fuzzer', { concurrency: 2 }, async () => {
  for (const name of names) {
    const fx = await readFixture(path.join(FIXTURES, name));
    const options = fx.meta.open ? { todo: `open finding: ${fx.meta.finding.slice(0, 200)}` } : {};
    test(`${name}: kiln builds what BuildKit built`, options, async () => {
      const dir = path.join(work, name);
      const context = path.join(dir, 'ctx');
      await writeContext(fx.context.entries, fx.context.dockerignore, context);
      const dockerfile = path.join(dir, 'Dockerfile');
      await writeFile(dockerfile, fx.dockerfile);
      const k = await buildWithKiln({ context, dockerfile, root, dest: path.join(dir, 'kiln.tar'), network: 'none' });
      if (fx.buildkit.error !== undefined) {
        assert.equal(k.ok, false, `BuildKit failed on this case (${fx.buildkit.error.split('\n')[0]}), kiln built it`);
        return;
      }
      assert.ok(k.ok, `kiln failed where BuildKit built the image: ${k.ok ? '' : k.error}`);
      assert.ok(fx.buildkit.facts);
      // On the busybox base, its layer is compared by diffID only (the fixture leaves it out).
      const skipLayers = fx.buildkit.baseDiffId ? 1 : 0;
      const facts = await dockerArchiveFacts(k.archive, { skipLayers });
      if (skipLayers) assert.equal(facts.diffIds[0], fx.buildkit.baseDiffId, 'kiln built on another busybox base than the one BuildKit used (a different /bin/busybox?)');
      const lines = unexplained(diffFacts(facts, fx.buildkit.facts, NAMES, { skipLayers }));
      assert.deepEqual(lines, [], `kiln and BuildKit differ on ${name}:\n${lines.join('\n')}`);
    });
  }
});
