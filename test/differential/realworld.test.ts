/**
 * The real-world builds of test/differential/realworld.ts (Debian 12 base from mmdebstrap; apt-get with and
 * without cache mounts, a two-stage C build, `npm ci`, a non-root Python app, a big `apt-get purge`), each
 * built by kiln and by BuildKit from the identical base, compared on config, history, layers and filesystem
 * (apt/dpkg/npm logs and caches: presence, mode and owner only), and run by both with the same output.
 * CI runs the cheap apt-get case; KILN_REALWORLD=1 runs them all.
 *
 * Needs the Docker peer (scripts/docker-peer.sh) and the Debian archive (deb.debian.org) for apt and, the
 * first time, for the base (cached in ~/.cache/kiln-test). It runs under CI=true (where a missing peer fails
 * it) or with KILN_REALWORLD=1; otherwise it is skipped with a message.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { buildWithDocker, buildWithKiln, startDockerPeer } from './engines.js';
import type { DockerPeer } from './engines.js';
import { NAMES, unexplained } from './fuzz.js';
import { dockerArchiveFacts, diffFacts } from './image-facts.js';
import { REALWORLD_CASES, REALWORLD_NETWORK, prepareDebianBase, runWithDocker, runWithKiln, writeRealWorldCase } from './realworld.js';

const CI = process.env.CI === 'true' || process.env.CI === '1';
let peer: DockerPeer | undefined;
let skipReason: string | undefined;
let work = '';

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'kiln-realworld-'));
  // Minutes of apt-get per engine: part of CI, opt-in elsewhere (npm test stays fast on a laptop).
  if (!CI && process.env.KILN_REALWORLD !== '1') {
    skipReason = 'the real-world build runs under CI=true or with KILN_REALWORLD=1 (it takes a few minutes)';
    return;
  }
  try {
    peer = await startDockerPeer();
  } catch (err) {
    if (CI) throw err;
    skipReason = `the Docker peer did not start (${(err as Error).message.split('\n')[0]}); skipping the real-world build`;
  }
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

for (const c of REALWORLD_CASES) {
  test(`${c.name}: kiln builds the same image as BuildKit (no --network flag), and both run it alike`, { timeout: 900_000 }, async (t) => {
    if (skipReason !== undefined || peer === undefined) {
      t.skip(skipReason);
      return;
    }
    // CI runs the cheap case; the others (nodejs, python3, perl from apt) with KILN_REALWORLD=1 and in bench:realworld.
    if (c.ci !== true && process.env.KILN_REALWORLD !== '1') {
      t.skip('runs with KILN_REALWORLD=1');
      return;
    }
    const dir = path.join(work, c.name);
    const root = path.join(dir, 'store');
    await prepareDebianBase(root, peer, dir);
    const { context, dockerfile } = await writeRealWorldCase(c, dir);
    const tag = `kiln-realworld/${c.name}:latest`;
    const common = { context, dockerfile, network: REALWORLD_NETWORK, ...(c.secrets ? { secrets: c.secrets } : {}) };
    const [k, d] = await Promise.all([
      buildWithKiln({ ...common, root, dest: path.join(dir, 'kiln.tar') }),
      buildWithDocker(peer, { ...common, tag, dest: path.join(dir, 'buildkit.tar') }),
    ]);
    assert.ok(d.ok, `BuildKit failed: ${d.ok ? '' : d.error}`);
    assert.ok(k.ok, `kiln failed: ${k.ok ? '' : k.error}`);
    t.diagnostic(`kiln ${(k.ms / 1000).toFixed(1)} s, BuildKit ${(d.ms / 1000).toFixed(1)} s (built at the same time)`);
    const lines = unexplained(diffFacts(await dockerArchiveFacts(k.archive), await dockerArchiveFacts(d.archive), NAMES, { contentIgnored: c.noisy }));
    assert.deepEqual(lines, [], `kiln and BuildKit differ on ${c.name}:\n${lines.slice(0, 40).join('\n')}`);

    // Both run what they built: kiln from its store, docker from its own.
    const { importImage } = await import('../../src/image/import.js');
    const { LayerStore } = await import('../../src/store/layer-store.js');
    await importImage({ type: 'docker-archive', path: k.archive }, await LayerStore.open(root), { tag });
    assert.equal(await runWithKiln(root, tag), c.expectOutput);
    assert.equal(await runWithDocker(peer, tag), c.expectOutput);
    await rm(dir, { recursive: true, force: true });
  });
}
