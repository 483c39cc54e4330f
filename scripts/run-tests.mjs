#!/usr/bin/env node
// `npm test`: the conformance sets of ../shared (Docker's behaviour as data), then every unit and
// system test under test/ with node:test. Where ../shared is absent (a clone elsewhere) the
// conformance part is skipped with a plain message, except under CI=true, where that is a failure.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const shared = resolve(process.env.KILN_SHARED ?? join(root, '..', 'shared'));
const ci = process.env.CI === 'true' || process.env.CI === '1';
let status = 0;

if (existsSync(join(shared, 'conformance'))) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/conformance.ts'), shared], {
    stdio: 'inherit',
    cwd: root,
  });
  if (r.status !== 0) status = 1;
} else if (ci) {
  console.error(`npm test: ${shared} is missing; CI needs the conformance data there`);
  status = 1;
} else {
  console.log(`npm test: no conformance data at ${shared}; skipping the conformance sets (set KILN_SHARED to run them)`);
}

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}
// The differential tests start a private dockerd (scripts/docker-peer.sh) when they need one; several test
// files share it, so the runner, not a test file, stops it afterwards if it was not running before.
const peerScript = join(root, 'scripts', 'docker-peer.sh');
const peerUp = () => spawnSync('bash', [peerScript, 'status'], { stdio: 'ignore' }).status === 0;
const peerWasUp = peerUp();

const filter = process.argv.slice(2);
let files = findTests(join(root, 'test')).sort();
if (filter.length) files = files.filter((f) => filter.some((x) => f.includes(x)));
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
  stdio: 'inherit',
  cwd: root,
});
if (r.status !== 0) status = 1;
if (!peerWasUp && peerUp()) spawnSync('bash', [peerScript, 'stop'], { stdio: 'inherit' });
process.exit(status);
