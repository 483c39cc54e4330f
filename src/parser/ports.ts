/**
 * EXPOSE port specs. Like `docker build`, EXPOSE accepts the `docker run -p` syntax
 * `[ip:][hostPort:]containerPort[/proto]` with port ranges; only the container side is exposed.
 */
import { createRequire } from 'node:module';

// node:net is required only when a spec names an IP: loading it costs a cached build ~5 ms of start-up. (A lazily
// loaded module handle: the one kind of module state allowed besides memoised constants.)
let net: typeof import('node:net') | undefined;
const isIP = (ip: string): number => (net ??= createRequire(import.meta.url)('node:net') as typeof import('node:net')).isIP(ip);

const PROTOCOLS = ['tcp', 'udp', 'sctp'] as const;

/** Splits `ip:host:container`; an IPv6 address without brackets keeps all but the last two parts. */
function splitParts(raw: string): { ip: string; host: string; container: string } {
  const parts = raw.split(':');
  const n = parts.length;
  const container = parts[n - 1] ?? '';
  if (n === 1) return { ip: '', host: '', container };
  if (n === 2) return { ip: '', host: parts[0] ?? '', container };
  return { ip: parts.slice(0, n - 2).join(':'), host: parts[n - 2] ?? '', container };
}

/** `80/udp` → udp, 80; `80` and `80/` → tcp, 80; `/tcp` → no port. */
function splitProto(raw: string): { proto: string; port: string } {
  const parts = raw.split('/');
  const first = parts[0] ?? '';
  if (raw === '' || first === '') return { proto: '', port: '' };
  const second = parts[1];
  if (second === undefined || second === '') return { proto: 'tcp', port: first };
  return { proto: second, port: first };
}

function parsePortNumber(s: string): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

/** `8000` or `8000-8010` → [start, end]; undefined when malformed. */
function parseRange(s: string): [number, number] | undefined {
  if (s === '') return undefined;
  const dash = s.indexOf('-');
  if (dash < 0) {
    const p = parsePortNumber(s);
    return p === undefined ? undefined : [p, p];
  }
  const start = parsePortNumber(s.slice(0, dash));
  const end = parsePortNumber(s.slice(dash + 1));
  if (start === undefined || end === undefined || end < start) return undefined;
  return [start, end];
}

function parsePortSpec(raw: string): string[] {
  const { ip: rawIp, host, container: containerWithProto } = splitParts(raw);
  const { proto, port } = splitProto(containerWithProto);
  let ip = rawIp;
  if (ip.startsWith('[')) {
    if (!ip.endsWith(']')) throw new Error(`invalid IP address ${ip}`);
    ip = ip.slice(1, -1);
  }
  if (ip !== '' && isIP(ip) === 0) throw new Error(`invalid IP address: ${ip}`);
  if (port === '') throw new Error('no port specified');
  const range = parseRange(port);
  if (range === undefined) throw new Error(`invalid containerPort: ${port}`);
  if (host !== '') {
    const hostRange = parseRange(host);
    if (hostRange === undefined) throw new Error(`invalid hostPort: ${host}`);
    // A host range with a single container port is allowed (Docker picks a host port from it).
    if (hostRange[1] - hostRange[0] !== range[1] - range[0] && range[1] !== range[0]) {
      throw new Error(`invalid ranges specified for container and host Ports: ${port} and ${host}`);
    }
  }
  const p = proto.toLowerCase();
  if (!(PROTOCOLS as readonly string[]).includes(p)) throw new Error(`invalid proto: ${proto}`);
  const out: string[] = [];
  for (let n = range[0]; n <= range[1]; n++) out.push(`${n}/${p}`);
  return out;
}

/**
 * The exposed ports (`port/proto`, proto lower-case, default tcp) of one EXPOSE word.
 * @throws Error `invalid port: "<spec>": <reason>`
 * @example parsePort('0.0.0.0:8000-8001:80-81/udp') // ['80/udp', '81/udp']
 */
export function parsePort(spec: string): string[] {
  try {
    return parsePortSpec(spec);
  } catch (cause) {
    throw new Error(`invalid port: ${JSON.stringify(spec)}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** The exposed ports of every word of an EXPOSE instruction, in order. */
export function parsePorts(specs: readonly string[]): string[] {
  return specs.flatMap((s) => parsePort(s));
}
