import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildAll } from '../../examples/monorepo/build-all.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/monorepo');

test('the monorepo plugin builds every service through one store, reusing the shared stage', async () => {
  const store = mkdtempSync(path.join(tmpdir(), 'kiln-plugin-'));
  try {
    const logs: string[] = [];
    const services = [
      { name: 'api', dockerfile: 'services/api/Dockerfile' },
      { name: 'web', dockerfile: 'services/web/Dockerfile' },
    ];
    const results = await buildAll({ root, services, version: '1.2.3', store, log: (s, line) => logs.push(`${s}: ${line}`) });
    assert.deepEqual([...results.keys()], ['api', 'web']);
    assert.deepEqual(results.get('api')?.tags, ['acme/api:1.2.3']);
    // The web build finds the base stage's COPY in the cache the api build filled.
    assert.ok(logs.includes('web: CACHED COPY shared/banner.txt /etc/banner'), logs.join('\n'));
    assert.ok(logs.some((l) => l.startsWith('api: RUN chmod 755 /app/run')), logs.join('\n'));
    // A second run of the whole monorepo is fully cached and gives the same images.
    const again = await buildAll({ root, services, version: '1.2.3', store, log: () => {} });
    for (const name of ['api', 'web']) {
      assert.equal(again.get(name)?.manifestDigest, results.get(name)?.manifestDigest);
      assert.ok(again.get(name)?.steps.every((s) => s.cached));
    }
  } finally {
    rmSync(store, { recursive: true, force: true });
  }
});
