// Write leases (leases.ts) as a part of their own: what a lease file holds, and which leases protect a prune.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Leases } from '../../src/store/leases.js';

const temps: string[] = [];
after(async () => {
  for (const t of temps) await rm(t, { recursive: true, force: true });
});

async function root(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kiln-leases-'));
  temps.push(dir);
  return dir;
}

test('a lease names this process, its host and the time of its first write, once', async () => {
  const dir = await root();
  const leases = new Leases(dir);
  const before = Date.now();
  await leases.take();
  const file = path.join(dir, 'leases', String(process.pid));
  const [pid, host, since] = readFileSync(file, 'utf8').trim().split(' ');
  assert.equal(pid, String(process.pid));
  assert.equal(host, hostname());
  assert.ok(Number(since) >= before && Number(since) <= Date.now());
  await writeFile(file, `${process.pid} ${hostname()} 5 0\n`); // an earlier lease of the same pid stays
  await leases.take();
  await new Leases(dir).take();
  assert.equal(readFileSync(file, 'utf8'), `${process.pid} ${hostname()} 5 0\n`);
  assert.equal(await leases.oldestForeign(), undefined, "this process's own lease does not count");
});

test("the oldest foreign lease counts; a dead process's lease on this host is deleted; an unreadable one protects everything", async () => {
  const dir = await root();
  await mkdir(path.join(dir, 'leases'));
  const leases = new Leases(dir);
  // Linux pids stop at 2^22 (pid_max's largest value): 4194305 never runs.
  await writeFile(path.join(dir, 'leases', '4194305'), `4194305 ${hostname()} 1000 0\n`);
  await writeFile(path.join(dir, 'leases', '77'), `77 some-other-host 2000 0\n`);
  await writeFile(path.join(dir, 'leases', '78'), `78 some-other-host 3000 0\n`);
  assert.equal(await leases.oldestForeign(), 2000);
  assert.equal(existsSync(path.join(dir, 'leases', '4194305')), false);
  assert.deepEqual(readdirSync(path.join(dir, 'leases')).sort(), ['77', '78']);
  await writeFile(path.join(dir, 'leases', '79'), `79 some-other-host half-written`);
  assert.equal(await leases.oldestForeign(), 0);
});
