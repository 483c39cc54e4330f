/**
 * The sandboxed network a RUN step gets by default, as `docker build` gives one: a network namespace of its own
 * with outbound connectivity through user-mode networking, no route to the host's loopback services, and the
 * host's DNS resolvers.
 *
 * Why pasta (Debian's `passt`) and not slirp4netns, both measured here on a loaded 2-core VM:
 * - start-up: pasta 45-90 ms (it sets the namespace's interface up, then forks into the background; its parent's
 *   exit is the readiness signal), slirp4netns ~20-130 ms plus a readiness pipe (`--ready-fd`), which needs a
 *   third pipe our posix_spawn path does not give;
 * - throughput: pasta maps the step's connections onto host sockets (no TCP stack in user space, no NAT), which is
 *   what `apt-get` and `npm ci` downloads spend their time on; slirp4netns runs libslirp's TCP stack;
 * - clean-up: pasta quits by itself once the namespace file it serves is removed (`--no-netns-quit` is the
 *   opposite), so a step's network ends with the step's bundle even if the pasta process was never seen again;
 * - isolation: `--no-map-gw` keeps the gateway address from reaching the host's loopback, and `-t/-u/-T/-U none`
 *   forward no port in either direction (pasta's default `auto` would make the step's 127.0.0.1:PORT reach a
 *   service bound on the host).
 * The namespace is created as a bind-mounted file (`unshare --net=FILE`, ~5 ms) that the OCI runtime joins by path.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RuntimeError } from '../errors.js';
import { MNT_DETACH, nativeSys } from '../native/sys.js';
import { startProcess } from './process.js';

/**
 * How a RUN step (or `kiln run`) is networked: `default`, a sandboxed network of its own with outbound access;
 * `none`, only a loopback interface; `host`, the host's network (an entitlement: `network.host`).
 */
export type NetworkMode = 'default' | 'none' | 'host';

/** The network modes, for validating user input. */
export const NETWORK_MODES: readonly NetworkMode[] = ['default', 'none', 'host'];

/** A started sandbox network. */
export interface SandboxNetwork {
  /** The network namespace, as a file the OCI runtime joins (`linux.namespaces[].path`). */
  readonly nsPath: string;
  /** Tears it down: the namespace file is unmounted and removed, which ends pasta. Never rejects. */
  release(): Promise<void>;
}

/** Where pasta forwards DNS queries to the host's resolver from, when the host has only loopback resolvers (as podman does). */
export const DNS_FORWARD_ADDRESS = '169.254.1.1';

const SEARCH_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'] as const;

function findBinary(name: string): string | undefined {
  return SEARCH_DIRS.map((d) => `${d}/${name}`).find((p) => existsSync(p));
}

/** pasta's arguments for a namespace at `nsPath`; `dnsForward`: answer DNS at {@link DNS_FORWARD_ADDRESS} from the host's resolver. */
export function pastaArgs(nsPath: string, pidFile: string, dnsForward: boolean): string[] {
  return [
    '--config-net',
    '--quiet',
    // No port forwarding in either direction, and the gateway address is not the host: nothing the step does
    // reaches a service listening on the host's loopback.
    '--tcp-ports', 'none', '--udp-ports', 'none', '--tcp-ns', 'none', '--udp-ns', 'none',
    '--no-map-gw',
    ...(dnsForward ? ['--dns-forward', DNS_FORWARD_ADDRESS] : []),
    // As root pasta would switch to `nobody`, which then cannot join the namespace we made.
    '--runas', String(process.getuid?.() ?? 0),
    '--pid', pidFile,
    '--netns', nsPath,
  ];
}

/**
 * Creates a network namespace at `nsPath` (a file path in a directory the caller owns and removes) and connects it to
 * the outside through pasta. Resolves once the namespace's interface, address and routes are configured.
 * @throws RuntimeError when pasta or unshare is missing or fails, saying how to get them.
 */
export async function startSandboxNetwork(nsPath: string, options: { signal?: AbortSignal; dnsForward?: boolean } = {}): Promise<SandboxNetwork> {
  const { signal } = options;
  const pasta = findBinary('pasta');
  const unshare = findBinary('unshare');
  if (pasta === undefined || unshare === undefined) {
    throw new RuntimeError(
      `the default RUN network needs ${pasta === undefined ? 'pasta' : 'unshare'} (install it with \`apt-get install passt\`, or run \`npm run bootstrap\`); RUN --network=none or kiln build --network none runs without it`,
    );
  }
  writeFileSync(nsPath, '');
  const pidFile = `${nsPath}.pasta-pid`;
  let mounted = false;
  const release = async (): Promise<void> => {
    if (mounted) {
      const sys = nativeSys();
      try {
        if (sys !== undefined) sys.umount2(nsPath, MNT_DETACH);
        else await (await import('execa')).execa('umount', ['-l', nsPath], { stdin: 'ignore', reject: false });
      } catch {
        // not mounted any more
      }
      mounted = false;
    }
    // pasta watches the namespace file and quits once it is gone, but it can miss that (seen under heavy load, with
    // the directory removed right after): it is also told to quit, by the pid it wrote, if that process is still
    // the pasta serving this namespace (a pid can be reused).
    const pid = pastaPid(pidFile, nsPath);
    rmSync(nsPath, { force: true });
    rmSync(pidFile, { force: true });
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone already
      }
    }
  };
  try {
    await run(unshare, [`--net=${nsPath}`, 'true'], 'unshare', signal);
    mounted = true;
    await run(pasta, pastaArgs(nsPath, pidFile, options.dnsForward ?? false), 'pasta', signal);
  } catch (cause) {
    await release();
    throw cause;
  }
  return { nsPath, release };
}

/** The pid in pasta's pid file, if that process is a pasta serving `nsPath`. */
function pastaPid(pidFile: string, nsPath: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return path.basename(argv[0] ?? '') === 'pasta' && argv.includes(nsPath) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Runs a set-up command to its end; pasta's parent exits once the namespace is configured and its daemon runs. */
async function run(file: string, args: readonly string[], what: string, signal: AbortSignal | undefined): Promise<void> {
  const started = await startProcess(file, args, { ...(signal === undefined ? {} : { signal }), forceKillAfterMs: 1000 });
  let stderr = '';
  started.stdout.resume();
  started.stderr.setEncoding('utf8');
  started.stderr.on('data', (chunk: string) => (stderr += chunk));
  const end = await started.ended;
  signal?.throwIfAborted();
  if (end.exitCode !== 0) {
    // pasta also says on stderr that it cannot reach syslog; those lines are noise.
    const why = stderr.split('\n').filter((l) => l.trim() !== '' && !l.includes('syslog')).join('; ') || end.error || `exit ${end.exitCode ?? end.signal ?? '?'}`;
    throw new RuntimeError(`setting up the RUN network failed: ${what}: ${why}`);
  }
}

/**
 * The container's /etc/resolv.conf, as Docker writes it: the host's file without loopback nameservers (a resolver on
 * the host's 127.0.0.1 is unreachable from the step's namespace). When none is left, `nameserver` lines for
 * `fallback` replace them (the sandbox network's DNS forwarder); `forwarder` says whether that happened.
 */
export function containerResolvConf(hostText: string, fallback: string | undefined): { text: string; forwarder: boolean } {
  const lines = hostText.split('\n');
  const isLoopbackNameserver = (line: string): boolean => {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m === null) return false;
    const addr = (m[1] ?? '').toLowerCase();
    return addr.startsWith('127.') || addr === '::1' || addr === '0:0:0:0:0:0:0:1';
  };
  const kept = lines.filter((l) => !isLoopbackNameserver(l));
  const hasNameserver = kept.some((l) => /^\s*nameserver\s+\S/.test(l));
  if (hasNameserver || fallback === undefined) return { text: kept.join('\n'), forwarder: false };
  const body = kept.join('\n').replace(/\n*$/, '\n');
  return { text: `${body === '\n' ? '' : body}nameserver ${fallback}\n`, forwarder: true };
}

/** Whether a sandbox network must forward DNS: the host's resolv.conf names only loopback resolvers (see {@link containerResolvConf}). */
export function sandboxNeedsDnsForward(): boolean {
  return containerResolvConf(hostResolvConf(), DNS_FORWARD_ADDRESS).forwarder;
}

/** The host's /etc/resolv.conf, read at each step as Docker does; empty when unreadable. */
export function hostResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

/**
 * The sandbox networks of one build, reused from step to step as BuildKit's CNI provider reuses its pooled
 * namespaces: a RUN's processes are all gone when it ends, and with Docker's default capabilities (no
 * CAP_NET_ADMIN, /proc/sys read-only) a step cannot change its namespace's interfaces, routes or firewall, so
 * the next step gets the same clean network without paying pasta's start-up (~100 ms) again. A namespace used
 * with `--security=insecure` could have been changed and is torn down instead of reused.
 *
 * The namespace files live in a private directory named after this process: if kiln dies, the next kiln's
 * recovery unmounts and removes them, and pasta quits once its file is gone.
 */
export class NetworkPool {
  /** Idle namespaces by DNS set-up (`dnsForward`): only one made the same way is handed out. */
  readonly #idle = new Map<boolean, SandboxNetwork[]>();
  /** Namespaces being started ahead of the step that will want them ({@link NetworkPool.prewarm}). */
  readonly #warming = new Map<boolean, Promise<SandboxNetwork>>();
  readonly #makeDir: () => string;
  #dir: string | undefined;
  #made = 0;
  #lent = 0;
  #closed = false;

  /** @param makeDir makes the private directory for the namespace files, on first use. */
  constructor(makeDir: () => string) {
    this.#makeDir = makeDir;
  }

  /**
   * Starts a namespace for a step that is about to need one (the builder calls it once a stage's cache misses
   * with a RUN still ahead), so that RUN does not wait for pasta. Does nothing when one is idle or starting.
   */
  prewarm(dnsForward: boolean): void {
    if (this.#closed || (this.#idle.get(dnsForward)?.length ?? 0) > 0 || this.#warming.has(dnsForward)) return;
    const warming = this.#start({ dnsForward });
    warming.catch(() => {
      if (this.#warming.get(dnsForward) === warming) this.#warming.delete(dnsForward);
    });
    this.#warming.set(dnsForward, warming);
  }

  /** An idle namespace made with the same `dnsForward`, the one starting for it, or a new one. */
  async acquire(options: { signal?: AbortSignal; dnsForward: boolean }): Promise<PooledNetwork> {
    if (this.#closed) throw new RuntimeError('the build has ended: its networks are closed');
    const idle = this.#idle.get(options.dnsForward)?.pop();
    const warming = idle === undefined ? this.#warming.get(options.dnsForward) : undefined;
    // Only the one taken leaves the map: one still starting beside an idle one stays for close() to find.
    if (warming !== undefined) this.#warming.delete(options.dnsForward);
    // A failed prewarm is no reason to fail the step: it tries on its own.
    const net = idle ?? (await warming?.catch(() => undefined)) ?? (await this.#start(options));
    let returned = false;
    this.#lent++;
    return {
      nsPath: net.nsPath,
      reused: idle !== undefined || warming !== undefined,
      release: async (reusable: boolean): Promise<void> => {
        if (returned) return;
        returned = true;
        if (!reusable || this.#closed) {
          // Counted as lent until it is unmounted: the directory cannot be removed before.
          await net.release();
          this.#lent--;
          if (this.#closed) this.#removeDir();
          return;
        }
        this.#lent--;
        const list = this.#idle.get(options.dnsForward) ?? [];
        list.push(net);
        this.#idle.set(options.dnsForward, list);
      },
    };
  }

  #start(options: { signal?: AbortSignal; dnsForward: boolean }): Promise<SandboxNetwork> {
    return startSandboxNetwork(path.join((this.#dir ??= this.#makeDir()), `netns-${this.#made++}`), options);
  }

  /** Tears every idle namespace down and removes the directory (once the lent ones are back: those are torn down as they return). Never rejects. */
  async close(): Promise<void> {
    this.#closed = true;
    const warming = await Promise.all([...this.#warming.values()].map((w) => w.catch(() => undefined)));
    this.#warming.clear();
    const all = [...[...this.#idle.values()].flat(), ...warming.filter((n): n is SandboxNetwork => n !== undefined)];
    this.#idle.clear();
    await Promise.all(all.map((n) => n.release()));
    this.#removeDir();
  }

  /** Removes the directory once no namespace is lent (a mounted namespace file cannot be removed). */
  #removeDir(): void {
    if (this.#lent > 0 || this.#dir === undefined) return;
    try {
      rmSync(this.#dir, { recursive: true, force: true });
    } catch {
      // Something still mounted there: the directory carries this process' name, and the next kiln's recovery
      // (store/recovery.ts) unmounts and removes it once this process is gone.
    }
    this.#dir = undefined;
  }
}

/** A namespace lent by a {@link NetworkPool}. */
export interface PooledNetwork {
  readonly nsPath: string;
  /** Whether an earlier step used it. */
  readonly reused: boolean;
  /** Gives it back: kept for the next step when `reusable`, else torn down. Never rejects. */
  release(reusable: boolean): Promise<void>;
}
