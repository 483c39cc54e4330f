// NODE_EXTRA_CA_CERTS through the kiln bin: bin/kiln hands it to kiln as KILN_EXTRA_CA_CERTS (so that Node does not
// parse it at start-up), and kiln trusts it before its first TLS connection (src/net/extra-ca.ts). Checked with an
// https server on 127.0.0.1 whose certificate a CA made here signed, and an `ADD <https URL>` build.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = path.join(root, 'src', 'cli', 'main.ts');
const CONTENT = 'served over TLS\n';

let work: string;
let server: Server;
let url: string;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'kiln-extra-ca-'));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: work, stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=kiln test CA');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(path.join(work, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  server = createServer({ key: readFileSync(path.join(work, 'server.key')), cert: readFileSync(path.join(work, 'server.pem')) }, (_req, res) => {
    res.end(CONTENT);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  url = `https://127.0.0.1:${String(address.port)}/hello.txt`;
  const checksum = createHash('sha256').update(CONTENT).digest('hex');
  mkdirSync(path.join(work, 'ctx'));
  writeFileSync(path.join(work, 'ctx', 'Dockerfile'), `FROM scratch\nADD --checksum=sha256:${checksum} ${url} /hello.txt\n`);
});

after(() => {
  server?.close();
  rmSync(work, { recursive: true, force: true });
});

/**
 * `kiln build` of the ADD-over-https context with `env` (nothing else of ours), its output in `out`. Not spawnSync:
 * the server answers from this process's event loop.
 */
async function buildWith(env: Record<string, string>, out: string): Promise<{ status: number | undefined; stderr: string }> {
  const base = { ...process.env };
  delete base['NODE_EXTRA_CA_CERTS'];
  delete base['KILN_EXTRA_CA_CERTS'];
  const r = await execa(process.execPath, ['--import', 'tsx', cli, 'build', '--output', `type=local,dest=${out}`, path.join(work, 'ctx')], {
    cwd: root,
    // A store of its own: the other build's ADD would be a cache hit.
    env: { ...base, KILN_ROOT: `${out}.store`, ...env },
    extendEnv: false,
    reject: false,
  });
  return { status: r.exitCode, stderr: r.stderr };
}

test('with KILN_EXTRA_CA_CERTS naming the CA (as bin/kiln passes NODE_EXTRA_CA_CERTS on), ADD of an https URL that CA vouches for works', async () => {
  const out = path.join(work, 'out-trusted');
  const r = await buildWith({ KILN_EXTRA_CA_CERTS: path.join(work, 'ca.pem') }, out);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(readFileSync(path.join(out, 'hello.txt'), 'utf8'), CONTENT);
});

test('without the extra CA the same ADD fails on the certificate, and says so', async () => {
  const r = await buildWith({}, path.join(work, 'out-untrusted'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /fetch .*hello\.txt.*(certificate|UNABLE_TO_VERIFY)/i);
});

test('bin/kiln moves NODE_EXTRA_CA_CERTS to KILN_EXTRA_CA_CERTS and starts dist/cli/cli.cjs next to it (through start.cjs), through a symlink too', () => {
  // The real bin, in a tree whose "CLI" prints what it was given.
  const tree = path.join(work, 'fake-package');
  mkdirSync(path.join(tree, 'bin'), { recursive: true });
  mkdirSync(path.join(tree, 'dist', 'cli'), { recursive: true });
  copyFileSync(path.join(root, 'bin', 'kiln'), path.join(tree, 'bin', 'kiln'));
  chmodSync(path.join(tree, 'bin', 'kiln'), 0o755);
  copyFileSync(path.join(root, 'scripts', 'cli-start.cjs'), path.join(tree, 'dist', 'cli', 'start.cjs'));
  writeFileSync(
    path.join(tree, 'dist', 'cli', 'cli.cjs'),
    'console.log(JSON.stringify([process.env.NODE_EXTRA_CA_CERTS ?? null, process.env.KILN_EXTRA_CA_CERTS ?? null, process.argv.slice(2)]));\n',
  );
  const link = path.join(work, 'linked-kiln');
  execFileSync('ln', ['-s', path.join(tree, 'bin', 'kiln'), link]);
  for (const bin of [path.join(tree, 'bin', 'kiln'), link]) {
    const moved = execFileSync(bin, ['build', 'a b'], { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '/some/ca.pem' } });
    assert.deepEqual(JSON.parse(moved), [null, '/some/ca.pem', ['build', 'a b']]);
    const env = { ...process.env };
    delete env['NODE_EXTRA_CA_CERTS'];
    delete env['KILN_EXTRA_CA_CERTS'];
    assert.deepEqual(JSON.parse(execFileSync(bin, ['--version'], { encoding: 'utf8', env })), [null, null, ['--version']]);
  }
});
