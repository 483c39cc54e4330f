// The pool of sandbox networks a build lends its RUN steps (src/runtime/network.ts NetworkPool), with real pasta
// namespaces: what it hands out, what it keeps, and that nothing stays mounted or running once it is closed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { NetworkPool } from '../../src/runtime/network.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const newPool = (): { pool: NetworkPool; made: () => string | undefined } => {
  let dir: string | undefined;
  const pool = new NetworkPool(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'kiln-pool-test-'));
    dirs.push(dir);
    return dir;
  });
  return { pool, made: () => dir };
};
const mounted = (p: string): boolean => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === p);
const pastaRunning = (nsPath: string): boolean =>
  execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').some((l) => l.includes('pasta') && l.includes(nsPath));

test('a released namespace is lent again; one released as not reusable is torn down', async () => {
  const { pool } = newPool();
  const a = await pool.acquire({ dnsForward: false });
  assert.equal(a.reused, false);
  assert.ok(mounted(a.nsPath), 'the namespace file is a mount of the namespace');
  // Two at once are two namespaces.
  const b = await pool.acquire({ dnsForward: false });
  assert.notEqual(b.nsPath, a.nsPath);
  await a.release(true);
  const again = await pool.acquire({ dnsForward: false });
  assert.equal(again.nsPath, a.nsPath);
  assert.equal(again.reused, true);
  // A namespace made for another DNS set-up is never handed out in its place.
  const other = await pool.acquire({ dnsForward: true });
  assert.notEqual(other.nsPath, a.nsPath);
  await other.release(true);
  await b.release(false);
  assert.ok(!mounted(b.nsPath) && !existsSync(b.nsPath), 'a namespace given back as not reusable is gone');
  await again.release(true);
  await pool.close();
  for (const p of [a.nsPath, b.nsPath, other.nsPath]) {
    assert.ok(!mounted(p), `${p} unmounted`);
    // pasta notices its namespace file is gone and quits by itself.
    for (let i = 0; i < 40 && pastaRunning(p); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(!pastaRunning(p), `pasta for ${p} quit`);
  }
});

test('prewarm starts a namespace that the next acquire gets; close tears down one still starting and the directory', async () => {
  const { pool, made } = newPool();
  pool.prewarm(false);
  pool.prewarm(false); // a second call while one is starting starts nothing more
  const n = await pool.acquire({ dnsForward: false });
  assert.equal(n.reused, true, 'the prewarmed namespace is the one lent');
  assert.match(path.basename(n.nsPath), /^netns-0$/);
  await n.release(true);
  pool.prewarm(true);
  await pool.close();
  assert.ok(!mounted(n.nsPath));
  const dir = made();
  assert.ok(dir !== undefined && !existsSync(dir), 'the pool directory is removed');
  await assert.rejects(pool.acquire({ dnsForward: false }), /networks are closed/);
});

test('a namespace lent when the pool closes is torn down when it comes back, then the directory goes', async () => {
  const { pool, made } = newPool();
  const n = await pool.acquire({ dnsForward: false });
  await pool.close();
  assert.ok(mounted(n.nsPath), 'still in use: closing does not pull it from under its step');
  await n.release(true);
  assert.ok(!mounted(n.nsPath));
  assert.ok(!existsSync(made() as string));
});

test('a namespace still starting when an idle one is lent stays the pool\'s, and close tears it down', async () => {
  const { pool } = newPool();
  const a = await pool.acquire({ dnsForward: false });
  pool.prewarm(false); // nothing idle: one starts
  await a.release(true);
  const again = await pool.acquire({ dnsForward: false });
  assert.equal(again.nsPath, a.nsPath, 'the idle one is lent first');
  const next = await pool.acquire({ dnsForward: false });
  assert.notEqual(next.nsPath, a.nsPath, 'then the one that was starting');
  assert.equal(next.reused, true);
  await Promise.all([again.release(true), next.release(true)]);
  await pool.close();
  for (const p of [a.nsPath, next.nsPath]) assert.ok(!mounted(p), `${p} unmounted`);
});
