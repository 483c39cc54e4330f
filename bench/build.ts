/**
 * Build benchmark: kiln against peer build engines (docker's built-in BuildKit, buildah, podman) on the
 * shared benchmark cases, in the same run, so the ratios are taken under the same machine load.
 *
 *   npm run bench -- [--reps 3] [--peers docker-buildkit,buildah-runc] [--cases steps10,copy-many,copy-big,multistage]
 *                    [--kiln dist|tsx] [--no-setup]
 *   npm run bench -- --summarize /tmp/kiln-bench/<stamp>/results.tsv   (re-print the tables of a run)
 *
 * The peers, cases and scenarios are those of `../shared/bench/peers/run.sh` (this is its TypeScript
 * equivalent, driving the same CLI commands; settings come from sourcing its `env.sh`):
 *   cold    = that engine's images and build cache wiped (base image kept)
 *   cached  = the identical build again
 *   change1 = one context file's content changed (copy-many, copy-big only)
 * Wall time is the whole client command; `sync`, cache wiping and context edits are outside it.
 * Within a rep every engine runs cold → cached → change1 on a case back to back; the engine order
 * rotates per rep; a ratio is the median over reps of (engine / docker-buildkit) in the same rep.
 *
 * kiln runs as users run it: the `kiln` bin, `bin/kiln` starting `dist/cli/cli.cjs` (compiled and bundled here when
 * missing or stale), or through tsx with `--kiln tsx`. Its store is private (`KILN_ROOT`); "cold" starts from a copy of a
 * store that holds only the busybox base image.
 *
 * Raw results: /tmp/kiln-bench/<stamp>/results.tsv, per-build logs next to it. Nothing here asserts a time.
 */
import { appendFile, mkdir, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { ensureBusyboxImage } from '../src/image/base-image.js';
import { LayerStore } from '../src/store/layer-store.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHARED = process.env.KILN_SHARED ? path.resolve(process.env.KILN_SHARED) : path.resolve(REPO, '..', 'shared');
const PEERS_DIR = path.join(SHARED, 'bench', 'peers');
// KILN_BENCH_ROOT moves kiln's stores and logs (with PEERS_STATE for the peers' state: see ../shared/bench/peers/env.sh),
// e.g. onto a journaled ext4 to check a result against this VM's journal-less one (README, Benchmarks).
const OUT_ROOT = process.env['KILN_BENCH_ROOT'] ?? '/tmp/kiln-bench';

/** Every peer run.sh knows. */
export const PEERS = ['docker-buildkit', 'docker-legacy', 'buildah-chroot', 'buildah-runc', 'buildah-crun', 'podman-runc'] as const;
export type Peer = (typeof PEERS)[number];
export const CASES = ['steps10', 'copy-many', 'copy-big', 'multistage'] as const;
export type Scenario = 'cold' | 'cached' | 'change1';
/** The engine every ratio is relative to. */
export const REFERENCE = 'docker-buildkit';
/** kiln/BuildKit targets per scenario (median ratio at most this). */
export const TARGETS: Readonly<Record<Scenario, number>> = { cold: 0.5, cached: 1.0, change1: 0.5 };

/** The settings of the peers' `env.sh`, read by sourcing it in bash. */
interface PeerEnv {
  readonly state: string;
  readonly dockerBin: string;
  readonly dockerHost: string;
  readonly baseRef: string;
  readonly podmanStore: readonly string[];
}

async function loadPeerEnv(): Promise<PeerEnv> {
  const script = `. "$1/env.sh"; printf '%s\\n' "$PEERS_STATE" "$DOCKER_BIN" "$DOCKER_HOST" "$BASE_REF_LOCAL"; printf '%s\\n' "\${PODMAN_STORE[@]}"`;
  const { stdout } = await execa('bash', ['-c', script, 'bash', PEERS_DIR]);
  const [state, dockerBin, dockerHost, baseRef, ...podmanStore] = stdout.split('\n');
  if (!state || !dockerBin || !dockerHost || !baseRef) throw new Error(`could not read ${PEERS_DIR}/env.sh`);
  return { state, dockerBin, dockerHost, baseRef, podmanStore };
}

/** A command to run: file, arguments and extra environment. */
interface Command {
  readonly file: string;
  readonly args: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
}

const buildahStore = (env: PeerEnv, variant: string): string[] => [
  '--root', path.join(env.state, `buildah-${variant}`, 'root'),
  '--runroot', path.join(env.state, `buildah-${variant}`, 'run'),
  '--storage-driver', 'overlay',
];

/** The build command of a peer, exactly as run.sh builds it. */
function peerBuild(env: PeerEnv, peer: Peer, c: string): Command {
  const df = path.join(PEERS_DIR, 'cases', c, 'Dockerfile');
  const ctx = path.join(env.state, 'ctx', c);
  const tail = ['--build-arg', `BASE=${env.baseRef}`, '-t', `bench/${c}:${peer}`, '-f', df, ctx];
  const dockerEnv = { DOCKER_HOST: env.dockerHost };
  switch (peer) {
    case 'docker-buildkit':
      return { file: env.dockerBin, args: ['build', '--network', 'none', '--progress', 'plain', ...tail], env: { ...dockerEnv, DOCKER_BUILDKIT: '1' } };
    case 'docker-legacy':
      return { file: env.dockerBin, args: ['build', '--network', 'none', ...tail], env: { ...dockerEnv, DOCKER_BUILDKIT: '0' } };
    case 'buildah-chroot':
      return { file: 'buildah', args: [...buildahStore(env, 'chroot'), 'build', '--layers', '--pull=never', '--isolation', 'chroot', ...tail] };
    case 'buildah-runc':
      return {
        file: 'buildah',
        args: [...buildahStore(env, 'runc'), 'build', '--layers', '--pull=never', '--isolation', 'oci', '--runtime', 'runc', '--network', 'none', ...tail],
      };
    case 'buildah-crun':
      // crun 1.8 refuses cgroup "hybrid mode": hide /sys/fs/cgroup/unified in a private mount namespace (as run.sh).
      return {
        file: 'unshare',
        args: [
          '-m', '--propagation', 'private', 'sh', '-c', 'umount /sys/fs/cgroup/unified && exec "$@"', 'sh',
          'buildah', ...buildahStore(env, 'crun'), 'build', '--layers', '--pull=never', '--isolation', 'oci', '--runtime', 'crun', '--network', 'none', ...tail,
        ],
      };
    case 'podman-runc':
      return { file: 'podman', args: [...env.podmanStore, 'build', '--layers', '--pull=never', '--runtime', 'runc', '--network', 'none', ...tail] };
  }
}

const lines = (s: string): string[] => s.split('\n').map((l) => l.trim()).filter((l) => l !== '');

/** Drops every image and cache record of a peer except the base image (run.sh's `wipe`). */
async function wipePeer(env: PeerEnv, peer: Peer, baseId: string): Promise<void> {
  const baseHex = baseId.replace(/^sha256:/, '');
  if (peer.startsWith('docker-')) {
    const d = (args: string[]) => execa(env.dockerBin, args, { env: { DOCKER_HOST: env.dockerHost } });
    const ids = [...new Set(lines((await d(['images', '-q', '--filter', 'reference=bench/*'])).stdout))];
    if (ids.length > 0) await d(['rmi', '-f', ...ids]);
    await d(['image', 'prune', '-f']);
    await d(['builder', 'prune', '-af']);
  } else if (peer.startsWith('buildah-')) {
    const st = buildahStore(env, peer.slice('buildah-'.length));
    await execa('buildah', [...st, 'rm', '-a']);
    const ids = [...new Set(lines((await execa('buildah', [...st, 'images', '-a', '-q', '--no-trunc'])).stdout).filter((id) => !id.includes(baseHex)))];
    if (ids.length > 0) await execa('buildah', [...st, 'rmi', '-f', ...ids]);
  } else {
    await execa('podman', [...env.podmanStore, 'rm', '-af']);
    const ids = [
      ...new Set(lines((await execa('podman', [...env.podmanStore, 'images', '-a', '-q', '--no-trunc'])).stdout).map((id) => id.replace(/^sha256:/, '')).filter((id) => id !== baseHex)),
    ];
    if (ids.length > 0) await execa('podman', [...env.podmanStore, 'rmi', '-f', ...ids]);
  }
}

/** Changes one context file's content, new content every call (run.sh's `change1`); false when the case has none. */
async function change1(env: PeerEnv, c: string, stamp: string): Promise<boolean> {
  if (c === 'copy-many') {
    await writeFile(path.join(env.state, 'ctx', 'copy-many', 'files', 'd17', 'f42'), `changed ${stamp}\n`);
    return true;
  }
  if (c === 'copy-big') {
    const fh = await open(path.join(env.state, 'ctx', 'copy-big', 'big.bin'), 'r+');
    try {
      await fh.write(Buffer.from(stamp.padEnd(32).slice(0, 32)), 0, 32, 100 * 1024 * 1024);
    } finally {
      await fh.close();
    }
    return true;
  }
  return false;
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && /\.(ts|ne)$/.test(e.name)) newest = Math.max(newest, (await stat(path.join(e.parentPath, e.name))).mtimeMs);
  }
  return newest;
}

/**
 * Makes sure the `kiln` bin (`bin/kiln`, which starts the bundled CLI `dist/cli/cli.cjs`) exists and is newer than src/ and grammar/
 * (compiling and bundling it if not: what `npm run build` does); returns its path.
 */
export async function ensureDist(log: (s: string) => void): Promise<string> {
  const cli = path.join(REPO, 'dist', 'cli', 'cli.cjs');
  const built = existsSync(cli) ? (await stat(cli)).mtimeMs : 0;
  const sources = Math.max(
    await newestMtime(path.join(REPO, 'src')),
    await newestMtime(path.join(REPO, 'grammar')),
    (await stat(path.join(REPO, 'scripts', 'cli-start.cjs'))).mtimeMs,
  );
  if (built > sources) return cli;
  log('compiling dist/ (npm run grammar; tsc -p tsconfig.build.json; scripts/bundle.mjs)');
  await execa('npm', ['run', 'grammar', '--silent'], { cwd: REPO });
  // tsc still emits when someone's work-in-progress file has a type error; only a missing cli.cjs is fatal.
  const tsc = await execa('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: REPO, reject: false });
  if (tsc.exitCode !== 0) log(`tsc reported errors (emitted anyway):\n${tsc.stdout.split('\n').slice(0, 5).join('\n')}`);
  await execa(process.execPath, [path.join(REPO, 'scripts', 'bundle.mjs')], { cwd: REPO });
  if (!existsSync(cli)) throw new Error(`the bundle did not produce ${cli}`);
  return cli;
}

/** Wall milliseconds of `kiln --version`, median of `n` runs, for one way of starting kiln. */
async function startupMs(cmd: Command, n: number): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await execa(cmd.file, [...cmd.args, '--version']);
    xs.push(performance.now() - t0);
  }
  return median(xs);
}

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** One timed build. */
export interface Sample {
  readonly rep: number;
  readonly case: string;
  readonly scenario: Scenario;
  readonly engine: string;
  readonly seconds: number;
  readonly ok: boolean;
}

/** The summary of samples: per case/scenario, each engine's median seconds and median same-rep ratio to {@link REFERENCE}. */
export function summarize(samples: readonly Sample[], engines: readonly string[]): string {
  const keys: string[] = [];
  for (const s of samples) if (!keys.includes(`${s.case}/${s.scenario}`)) keys.push(`${s.case}/${s.scenario}`);
  const get = (key: string, engine: string) => samples.filter((s) => `${s.case}/${s.scenario}` === key && s.engine === engine);
  const w = 22;
  const row = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(20) : ` ${c}`.padStart(w))).join('');
  const out: string[] = [];
  out.push('wall seconds, median (min-max) over reps; * = some reps failed');
  out.push(row(['case/scenario', ...engines]));
  for (const key of keys) {
    out.push(
      row([
        key,
        ...engines.map((e) => {
          const all = get(key, e);
          const ok = all.filter((s) => s.ok).map((s) => s.seconds);
          const fail = all.length > ok.length ? '*' : '';
          if (ok.length === 0) return all.length === 0 ? '-' : 'FAIL';
          const sorted = [...ok].sort((a, b) => a - b);
          return sorted.length === 1
            ? `${(sorted[0] as number).toFixed(2)}${fail}`
            : `${median(sorted).toFixed(2)} (${(sorted[0] as number).toFixed(2)}-${(sorted[sorted.length - 1] as number).toFixed(2)})${fail}`;
        }),
      ]),
    );
  }
  const ratio = (key: string, engine: string): number | undefined => {
    const ref = new Map(get(key, REFERENCE).filter((s) => s.ok).map((s) => [s.rep, s.seconds]));
    const rs = get(key, engine)
      .filter((s) => s.ok && (ref.get(s.rep) ?? 0) > 0)
      .map((s) => s.seconds / (ref.get(s.rep) as number));
    return rs.length > 0 ? median(rs) : undefined;
  };
  if (engines.includes(REFERENCE)) {
    out.push('', `ratio vs ${REFERENCE} (median over reps of the same-rep ratio); target = kiln/${REFERENCE}`);
    out.push(row(['case/scenario', ...engines, 'target']));
    for (const key of keys) {
      const scenario = key.split('/')[1] as Scenario;
      const k = ratio(key, 'kiln');
      const target = TARGETS[scenario];
      const verdict = k === undefined ? '?' : k <= target ? '✓' : '✗';
      out.push(row([key, ...engines.map((e) => ratio(key, e)?.toFixed(2).concat('x') ?? '-'), `≤ ${target.toFixed(1)}x ${verdict}`]));
    }
  }
  return out.join('\n');
}

async function peersReady(env: PeerEnv, peers: readonly Peer[]): Promise<boolean> {
  if (!existsSync(path.join(env.state, 'base', 'image-id'))) return false;
  for (const c of CASES) if (!existsSync(path.join(env.state, 'ctx', c))) return false;
  if (!existsSync(path.join(env.state, 'ctx', 'copy-big', 'big.bin'))) return false;
  if (peers.some((p) => p.startsWith('docker-'))) {
    const r = await execa(env.dockerBin, ['info'], { env: { DOCKER_HOST: env.dockerHost }, reject: false });
    if (r.exitCode !== 0) return false;
  }
  if (peers.some((p) => p.startsWith('buildah-'))) {
    const r = await execa('buildah', ['--version'], { reject: false });
    if (r.exitCode !== 0) return false;
  }
  if (peers.includes('podman-runc') && (await execa('podman', ['--version'], { reject: false })).exitCode !== 0) return false;
  return true;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '3' },
      peers: { type: 'string', default: 'docker-buildkit,buildah-runc' },
      cases: { type: 'string', default: CASES.join(',') },
      kiln: { type: 'string', default: 'dist' },
      'no-setup': { type: 'boolean', default: false },
      summarize: { type: 'string' },
    },
  });
  if (values.summarize !== undefined) {
    // Re-print the tables of an earlier run from its results.tsv.
    const rows = (await readFile(values.summarize, 'utf8')).trim().split('\n').slice(1).map((l) => l.split('\t'));
    const samples: Sample[] = rows.map(([rep, c, scenario, engine, seconds, rc]) => ({
      rep: Number(rep), case: c ?? '', scenario: scenario as Scenario, engine: engine ?? '', seconds: Number(seconds), ok: rc === '0',
    }));
    process.stdout.write(`${summarize(samples, [...new Set(samples.map((x) => x.engine))])}\n`);
    return;
  }
  const split = (s: string) => s.split(/[,\s]+/).filter((x) => x !== '');
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be a positive integer, not ${values.reps}`);
  const peers = split(values.peers);
  for (const p of peers) if (!(PEERS as readonly string[]).includes(p)) throw new Error(`unknown peer ${p} (known: ${PEERS.join(', ')})`);
  const cases = split(values.cases);
  for (const c of cases) if (!(CASES as readonly string[]).includes(c)) throw new Error(`unknown case ${c} (known: ${CASES.join(', ')})`);
  if (values.kiln !== 'dist' && values.kiln !== 'tsx') throw new Error(`--kiln must be dist or tsx`);

  const log = (s: string) => process.stderr.write(`${s}\n`);
  const env = await loadPeerEnv();
  if (!(await peersReady(env, peers as Peer[]))) {
    if (values['no-setup']) throw new Error('peers are not ready and --no-setup was given');
    log(`peers not ready: running ${PEERS_DIR}/setup.sh (idempotent; needs root and apt)`);
    await execa(path.join(PEERS_DIR, 'setup.sh'), { stdout: 'inherit', stderr: 'inherit' });
  }
  const baseId = (await readFile(path.join(env.state, 'base', 'image-id'), 'utf8')).trim();

  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  const out = path.join(OUT_ROOT, stamp);
  await mkdir(path.join(out, 'logs'), { recursive: true });

  // kiln: how it is started, and a seed store holding only the busybox base.
  const dist = await ensureDist(log);
  // The bin as users start it (bin/kiln: a sh wrapper that starts Node on the bundle; see there for why).
  const viaDist: Command = { file: path.join(REPO, 'bin', 'kiln'), args: [] };
  if (!dist.startsWith(REPO)) throw new Error(`unexpected bundle path ${dist}`);
  const viaTsx: Command = { file: process.execPath, args: ['--import', 'tsx', path.join(REPO, 'src', 'cli', 'main.ts')] };
  const [distMs, tsxMs] = [await startupMs(viaDist, 5), await startupMs(viaTsx, 5)];
  const startup = `kiln start-up (\`kiln --version\`, median of 5): dist ${distMs.toFixed(0)} ms, tsx ${tsxMs.toFixed(0)} ms; benchmarking via ${values.kiln}`;
  log(startup);
  const kilnCmd = values.kiln === 'dist' ? viaDist : viaTsx;
  // dist/ is compiled from a shared work tree: make sure it parses every case before timing anything.
  for (const c of cases) {
    const r = await execa(kilnCmd.file, [...kilnCmd.args, 'parse', path.join(PEERS_DIR, 'cases', c, 'Dockerfile')], { reject: false, all: true });
    if (r.exitCode !== 0) throw new Error(`kiln (${values.kiln}) cannot parse the ${c} case; fix or rebuild it first:\n${r.all ?? ''}`);
  }
  const seed = path.join(OUT_ROOT, 'seed-store');
  const store = path.join(OUT_ROOT, 'store');
  // Made afresh on every run, so the seed always has what the current code keeps for a base image (its
  // unpacked layer, as a docker pull would), like the peers' kept base image.
  await rm(seed, { recursive: true, force: true });
  await ensureBusyboxImage(await LayerStore.open(seed));
  const kilnBuild = (c: string): Command => ({
    file: kilnCmd.file,
    args: [
      // --network none as every peer gets: kiln's default RUN network (pasta) would add its start-up to each step.
      ...kilnCmd.args, 'build', '--network', 'none', '-t', `bench/${c}:kiln`, '--build-arg', `BASE=busybox:latest`,
      '-f', path.join(PEERS_DIR, 'cases', c, 'Dockerfile'), '--progress', 'plain', path.join(env.state, 'ctx', c),
    ],
    env: { KILN_ROOT: store },
  });
  const wipeKiln = async () => {
    await rm(store, { recursive: true, force: true });
    await execa('cp', ['-a', seed, store]);
  };

  const engines = ['kiln', ...peers];
  const tsv = path.join(out, 'results.tsv');
  await writeFile(tsv, 'rep\tcase\tscenario\tengine\tseconds\trc\n');
  const samples: Sample[] = [];
  let changes = 0;
  const timed = async (rep: number, c: string, scenario: Scenario, engine: string, cmd: Command) => {
    await execa('sync');
    const logFile = path.join(out, 'logs', `${c}.${engine}.${scenario}.${rep}.log`);
    const t0 = performance.now();
    const r = await execa(cmd.file, cmd.args, { env: cmd.env ?? {}, reject: false, all: true, stdin: 'ignore' });
    const seconds = (performance.now() - t0) / 1000;
    await writeFile(logFile, r.all ?? '');
    const ok = r.exitCode === 0;
    samples.push({ rep, case: c, scenario, engine, seconds, ok });
    await appendFile(tsv, `${rep}\t${c}\t${scenario}\t${engine}\t${seconds.toFixed(3)}\t${r.exitCode ?? -1}\n`);
    log(`  rep ${rep} ${c.padEnd(10)} ${scenario.padEnd(8)} ${engine.padEnd(16)} ${seconds.toFixed(3).padStart(8)}s rc=${r.exitCode ?? '?'}`);
    if (!ok) log(`    FAILED, last lines of ${logFile}:\n${(r.all ?? '').split('\n').slice(-5).map((l) => `    | ${l}`).join('\n')}`);
  };

  log(`results: ${tsv}`);
  for (let rep = 1; rep <= reps; rep++) {
    const rot = (rep - 1) % engines.length;
    const order = [...engines.slice(rot), ...engines.slice(0, rot)];
    for (const c of cases) {
      for (const engine of order) {
        if (engine === 'kiln') await wipeKiln();
        else await wipePeer(env, engine as Peer, baseId);
        const cmd = engine === 'kiln' ? kilnBuild(c) : peerBuild(env, engine as Peer, c);
        await timed(rep, c, 'cold', engine, cmd);
        await timed(rep, c, 'cached', engine, cmd);
        if (await change1(env, c, `${process.pid}-${++changes}-${Date.now()}`)) await timed(rep, c, 'change1', engine, cmd);
      }
    }
  }
  const load = loadavg().map((x) => x.toFixed(2)).join(' ');
  const report = `${startup}\nreps ${reps}; load average at the end ${load} (2 vCPU; other work may be running)\n\n${summarize(samples, engines)}\n`;
  await writeFile(path.join(out, 'summary.txt'), report);
  process.stdout.write(`\n${report}`);
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
