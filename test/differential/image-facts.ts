/**
 * What the differential tests compare about an image, read straight from its archive with tar-stream
 * (not with kiln's own tar code, so a bug there cannot hide itself): the config fields a Dockerfile
 * sets, the history, and every layer's entries (type, mode, owner, size, content hash, link target,
 * hardlink group, whiteouts; timestamps aside), plus the final filesystem those layers make.
 *
 * Shared by the Buildah test (which compares unpacked root filesystems) and the BuildKit fuzzer and
 * fixtures (which compare `docker save` archives with kiln's `type=docker` output).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';

/** The config fields compared (`config` of the image config). */
export const CONFIG_FIELDS = [
  'Env',
  'Cmd',
  'Entrypoint',
  'User',
  'WorkingDir',
  'ExposedPorts',
  'Volumes',
  'Labels',
  'StopSignal',
  'Shell',
  'Healthcheck',
  'OnBuild',
] as const;

export type Config = Record<string, unknown>;

/** One path of a filesystem or a layer. */
export interface Entry {
  /** file, dir, symlink, fifo, char, block, socket; in a layer also `whiteout` and `opaque`. */
  readonly type: string;
  readonly mode: string;
  readonly owner: string;
  readonly size?: number;
  readonly sha256?: string;
  readonly link?: string;
  readonly rdev?: number;
  /** The other paths of the same hardlink group (sorted), when there are any. */
  readonly hardlinks?: readonly string[];
  /** Extended attribute names (pax SCHILY.xattr.*), sorted, when there are any. */
  readonly xattrs?: readonly string[];
}

/** One history entry, as compared: what made it and whether it made a layer. */
export interface HistoryFact {
  readonly created_by: string;
  readonly empty_layer: boolean;
}

/** What is compared about an image. Layers are the image's layers in order, each as path → entry. */
export interface ImageFacts {
  readonly architecture: string;
  readonly os: string;
  readonly config: Config;
  readonly history: readonly HistoryFact[];
  readonly diffIds: readonly string[];
  readonly layers: ReadonlyArray<Record<string, Entry>>;
}

export const fmt = (e: Entry | undefined): string =>
  e === undefined
    ? 'absent'
    : `${e.type}${e.type === 'whiteout' || e.type === 'opaque' ? '' : ` ${e.mode} ${e.owner}`}` +
      `${e.size !== undefined ? ` ${e.size}B ${e.sha256?.slice(0, 12)}` : ''}${e.link !== undefined ? ` -> ${e.link}` : ''}` +
      `${e.rdev !== undefined ? ` rdev ${e.rdev}` : ''}${e.hardlinks?.length ? ` hardlinks ${e.hardlinks.join(',')}` : ''}` +
      `${e.xattrs?.length ? ` xattrs ${e.xattrs.join(',')}` : ''}`;

function typeOfStat(s: Awaited<ReturnType<typeof lstat>>): string {
  if (s.isFile()) return 'file';
  if (s.isDirectory()) return 'dir';
  if (s.isSymbolicLink()) return 'symlink';
  if (s.isFIFO()) return 'fifo';
  if (s.isCharacterDevice()) return 'char';
  if (s.isBlockDevice()) return 'block';
  return 'socket';
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Every path under an unpacked `root` (relative, with a leading `/`) and what is compared about it. */
export async function snapshotTree(root: string): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const abs = path.join(dir, name);
      const s = await lstat(abs);
      const type = typeOfStat(s);
      out.set(`/${path.relative(root, abs)}`, {
        type,
        mode: (s.mode & 0o7777).toString(8).padStart(4, '0'),
        owner: `${s.uid}:${s.gid}`,
        ...(type === 'file' ? { size: s.size, sha256: await sha256File(abs) } : {}),
        ...(type === 'symlink' ? { link: await readlink(abs) } : {}),
        ...(type === 'char' || type === 'block' ? { rdev: s.rdev } : {}),
      });
      if (type === 'dir') await walk(abs);
    }
  };
  await walk(root);
  return out;
}

/** Differences between two path → entry maps, one line each: `<prefix> <path>: <a> <entry> | <b> <entry>`. */
export function diffTrees(
  a: ReadonlyMap<string, Entry>,
  b: ReadonlyMap<string, Entry>,
  names: readonly [string, string],
  prefix = 'fs',
): string[] {
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  const out: string[] = [];
  for (const p of paths) {
    const x = fmt(a.get(p));
    const y = fmt(b.get(p));
    if (x !== y) out.push(`${prefix} ${p}: ${names[0]} ${x} | ${names[1]} ${y}`);
  }
  return out;
}

/** Empty maps and missing maps mean the same thing in an image config; arrays are kept as they are. */
function normalizeField(field: string, v: unknown): unknown {
  if ((field === 'ExposedPorts' || field === 'Volumes' || field === 'Labels') && (v === null || v === undefined)) return {};
  return v ?? null;
}

/** Differences of the compared config fields, one line each: `config <Field>: <a> X | <b> Y`. */
export function diffConfigs(a: Config, b: Config, names: readonly [string, string]): string[] {
  const out: string[] = [];
  for (const field of CONFIG_FIELDS) {
    const x = normalizeField(field, a[field]);
    const y = normalizeField(field, b[field]);
    if (field === 'Labels') {
      const la = x as Record<string, string>;
      const lb = y as Record<string, string>;
      for (const k of [...new Set([...Object.keys(la), ...Object.keys(lb)])].sort()) {
        if (la[k] !== lb[k]) out.push(`config Labels[${JSON.stringify(k)}]: ${names[0]} ${JSON.stringify(la[k])} | ${names[1]} ${JSON.stringify(lb[k])}`);
      }
      continue;
    }
    const keyed = field === 'ExposedPorts' || field === 'Volumes';
    const sa = JSON.stringify(x, keyed ? Object.keys(x as object).sort() : undefined);
    const sb = JSON.stringify(y, keyed ? Object.keys(y as object).sort() : undefined);
    if (sa === sb) continue;
    const sameEntries = field === 'Env' && Array.isArray(x) && Array.isArray(y) && JSON.stringify([...x].sort()) === JSON.stringify([...y].sort());
    out.push(`config ${field}${sameEntries ? ' (same entries, other order)' : ''}: ${names[0]} ${sa} | ${names[1]} ${sb}`);
  }
  return out;
}

/** The image config (`config` member) of the image tagged `ref` in an OCI layout directory. */
export async function layoutConfig(layout: string, ref: string): Promise<Config> {
  const blob = async (digest: string) => JSON.parse(await readFile(path.join(layout, 'blobs', 'sha256', digest.replace(/^sha256:/, '')), 'utf8')) as Record<string, unknown>;
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  const desc = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === ref);
  if (desc === undefined) throw new Error(`no manifest named ${ref} in ${layout}/index.json`);
  const manifest = (await blob(desc.digest)) as { config: { digest: string } };
  return ((await blob(manifest.config.digest)).config ?? {}) as Config;
}

/** Every member of a tar (in memory: the archives compared here are small), in order. */
async function readTarMembers(source: Buffer | string): Promise<Array<{ header: tar.Header; data: Buffer }>> {
  const out: Array<{ header: tar.Header; data: Buffer }> = [];
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      out.push({ header, data: Buffer.concat(chunks) });
      next();
    });
    stream.resume();
  });
  await pipeline(typeof source === 'string' ? createReadStream(source) : Readable.from([source]), extract);
  return out;
}

/** A path as compared: absolute, no `./`, no trailing slash. */
function cleanPath(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  return `/${parts.join('/')}`;
}

/** The entries of one layer tar, whiteouts included, with hardlink groups resolved. */
export async function layerEntries(layer: Buffer): Promise<Record<string, Entry>> {
  const members = await readTarMembers(layer);
  const entries = new Map<string, Entry>();
  // A hardlink's group: the path its chain of `link` entries ends at.
  const linkOf = new Map<string, string>();
  for (const { header, data } of members) {
    const p = cleanPath(header.name);
    if (p === '/') continue; // the layer root's own entry: engines differ on writing it, and it changes nothing
    const base = path.posix.basename(p);
    const parent = path.posix.dirname(p);
    if (base === '.wh..wh..opq') {
      entries.set(parent === '/' ? '/' : parent + '/', { type: 'opaque', mode: '', owner: '' });
      continue;
    }
    if (base.startsWith('.wh.')) {
      entries.set(path.posix.join(parent, base.slice(4)), { type: 'whiteout', mode: '', owner: '' });
      continue;
    }
    const xattrs = Object.keys(header.pax ?? {})
      .filter((k) => k.startsWith('SCHILY.xattr.'))
      .map((k) => k.slice('SCHILY.xattr.'.length))
      .sort();
    const common = {
      mode: ((header.mode ?? 0) & 0o7777).toString(8).padStart(4, '0'),
      owner: `${header.uid ?? 0}:${header.gid ?? 0}`,
      ...(xattrs.length > 0 ? { xattrs } : {}),
    };
    switch (header.type) {
      case 'file':
      case 'contiguous-file':
        entries.set(p, { type: 'file', ...common, size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
        break;
      case 'link': {
        let target = cleanPath(header.linkname ?? '');
        while (linkOf.has(target)) target = linkOf.get(target) as string;
        linkOf.set(p, target);
        const t = entries.get(target);
        entries.set(p, t ? { ...t, ...common, type: t.type } : { type: 'link-to-missing', ...common, link: target });
        break;
      }
      case 'directory':
        entries.set(p, { type: 'dir', ...common });
        break;
      case 'symlink':
        entries.set(p, { type: 'symlink', ...common, link: header.linkname ?? '' });
        break;
      case 'character-device':
      case 'block-device':
        entries.set(p, { type: header.type === 'character-device' ? 'char' : 'block', ...common, rdev: ((header.devmajor ?? 0) << 8) | (header.devminor ?? 0) });
        break;
      case 'fifo':
        entries.set(p, { type: 'fifo', ...common });
        break;
      default:
        entries.set(p, { type: String(header.type), ...common });
    }
  }
  // Groups: every path whose chain ends at the same target, the target included.
  const groups = new Map<string, string[]>();
  for (const [p, target] of linkOf) {
    const g = groups.get(target) ?? [target];
    g.push(p);
    groups.set(target, g);
  }
  for (const g of groups.values()) {
    g.sort();
    for (const p of g) {
      const e = entries.get(p);
      if (e) entries.set(p, { ...e, hardlinks: g.filter((q) => q !== p) });
    }
  }
  return Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

interface RawConfig {
  architecture?: string;
  os?: string;
  config?: Config;
  history?: Array<{ created_by?: string; empty_layer?: boolean }>;
  rootfs?: { diff_ids?: string[] };
}

/** The facts of the one image in a `docker save` / `docker load` archive (a file path or its bytes). */
export async function dockerArchiveFacts(archive: string | Buffer, options: { skipLayers?: number } = {}): Promise<ImageFacts> {
  const all = await readTarMembers(archive);
  const members = new Map(all.map((m) => [cleanPath(m.header.name).slice(1), m.data]));
  // `docker save` writes a layer that repeats an earlier one as a symlink to that one's layer.tar.
  for (const m of all) {
    if (m.header.type !== 'symlink' || m.header.linkname === undefined) continue;
    const name = cleanPath(m.header.name).slice(1);
    const target = cleanPath(path.posix.join(path.posix.dirname(name), m.header.linkname)).slice(1);
    const data = members.get(target);
    if (data !== undefined) members.set(name, data);
  }
  const manifestBytes = members.get('manifest.json');
  if (manifestBytes === undefined) throw new Error('not a docker archive: no manifest.json');
  const [entry] = JSON.parse(manifestBytes.toString('utf8')) as Array<{ Config: string; Layers: string[] }>;
  if (entry === undefined) throw new Error('docker archive with an empty manifest.json');
  const member = (name: string): Buffer => {
    const b = members.get(cleanPath(name).slice(1));
    if (b === undefined) throw new Error(`docker archive lacks ${name}`);
    return b;
  };
  const raw = JSON.parse(member(entry.Config).toString('utf8')) as RawConfig;
  const layers: Array<Record<string, Entry>> = [];
  const skip = options.skipLayers ?? 0;
  for (const [i, name] of entry.Layers.entries()) layers.push(i < skip ? {} : await layerEntries(member(name)));
  return {
    architecture: raw.architecture ?? '',
    os: raw.os ?? '',
    config: Object.fromEntries(CONFIG_FIELDS.filter((f) => raw.config?.[f] !== undefined).map((f) => [f, raw.config?.[f]])),
    history: (raw.history ?? []).map((h) => ({ created_by: h.created_by ?? '', empty_layer: h.empty_layer === true })),
    diffIds: raw.rootfs?.diff_ids ?? [],
    layers,
  };
}

/**
 * The filesystem a stack of layers makes: each layer applied over the ones before it (whiteouts delete,
 * opaque directories hide what is below). A hardlink group keeps only the paths whose final entry came
 * from the layer that made the group.
 */
export function applyLayers(layers: ReadonlyArray<Record<string, Entry>>): Map<string, Entry> {
  const fs = new Map<string, { entry: Entry; layer: number }>();
  const removeBelow = (dir: string, self: boolean): void => {
    const prefix = dir === '/' ? '/' : `${dir}/`;
    for (const k of [...fs.keys()]) if ((self && k === dir) || (k.startsWith(prefix) && k !== dir)) fs.delete(k);
  };
  for (const [i, layer] of layers.entries()) {
    for (const [p, e] of Object.entries(layer)) {
      if (e.type === 'opaque') removeBelow(p.length > 1 ? p.slice(0, -1) : '/', false);
      else if (e.type === 'whiteout') removeBelow(p, true);
      else {
        const old = fs.get(p);
        if (old?.entry.type === 'dir' && e.type !== 'dir') removeBelow(p, false);
        fs.set(p, { entry: e, layer: i });
      }
    }
  }
  const out = new Map<string, Entry>();
  for (const [p, { entry, layer }] of [...fs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (entry.hardlinks === undefined) {
      out.set(p, entry);
      continue;
    }
    const kept = entry.hardlinks.filter((q) => fs.get(q)?.layer === layer);
    const { hardlinks: _dropped, ...rest } = entry;
    out.set(p, kept.length > 0 ? { ...rest, hardlinks: kept } : rest);
  }
  return out;
}

/** Every difference between two images' facts, one line each, `names` naming the two engines. */
export function diffFacts(
  a: ImageFacts,
  b: ImageFacts,
  names: readonly [string, string],
  options: { skipLayers?: number; contentIgnored?: (path: string) => boolean } = {},
): string[] {
  const out: string[] = [];
  // Paths whose bytes carry timestamps (logs, caches): compared without size and hash.
  const ignored = options.contentIgnored;
  const strip = (m: Map<string, Entry>): Map<string, Entry> => {
    if (ignored === undefined) return m;
    for (const [p, e] of m) {
      if (e.sha256 !== undefined && ignored(p)) {
        const { size: _s, sha256: _h, ...rest } = e;
        m.set(p, rest);
      }
    }
    return m;
  };
  for (const k of ['architecture', 'os'] as const) if (a[k] !== b[k]) out.push(`image ${k}: ${names[0]} ${a[k]} | ${names[1]} ${b[k]}`);
  out.push(...diffConfigs(a.config, b.config, names));
  const ha = a.history.map((h) => `${h.empty_layer ? 'empty ' : ''}${h.created_by}`);
  const hb = b.history.map((h) => `${h.empty_layer ? 'empty ' : ''}${h.created_by}`);
  out.push(...diffHistory(ha, hb, names));
  if (a.layers.length !== b.layers.length) out.push(`layer count: ${names[0]} ${a.layers.length} | ${names[1]} ${b.layers.length}`);
  const skip = options.skipLayers ?? 0;
  if (a.layers.length === b.layers.length) {
    for (let i = skip; i < a.layers.length; i++) {
      out.push(...diffTrees(strip(new Map(Object.entries(a.layers[i] ?? {}))), strip(new Map(Object.entries(b.layers[i] ?? {}))), names, `layer ${i}`));
    }
  }
  out.push(...diffTrees(strip(applyLayers(a.layers)), strip(applyLayers(b.layers)), names, 'fs'));
  return out;
}

/**
 * History differences, aligned by a longest common subsequence so one extra entry is one line (not a
 * mismatch of every entry after it). Unmatched entries of one gap are paired in order (`history[i]: a X | b Y`,
 * i being the index in the first image, or in the second for entries only it has); the rest are `| b null` or `a null |`.
 */
function diffHistory(a: readonly string[], b: readonly string[], names: readonly [string, string]): string[] {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const row = lcs[i] as number[];
      row[j] = a[i] === b[j] ? ((lcs[i + 1] as number[])[j + 1] as number) + 1 : Math.max((lcs[i + 1] as number[])[j] as number, row[j + 1] as number);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  // In a gap, an entry pairs with the next unpaired one of the other image made by the same instruction.
  const keyword = (h: string): string => h.replace(/^empty /, '').split(' ')[0] ?? '';
  const flush = (ga: number[], gb: number[]): void => {
    const rest = [...gb];
    for (const x of ga) {
      const k = rest.findIndex((y) => keyword(b[y] as string) === keyword(a[x] as string));
      const y = k >= 0 ? rest.splice(k, 1)[0] : undefined;
      out.push(`history[${x}]: ${names[0]} ${JSON.stringify(a[x])} | ${names[1]} ${JSON.stringify(y === undefined ? null : b[y])}`);
    }
    for (const y of rest) out.push(`history[${y}]: ${names[0]} null | ${names[1]} ${JSON.stringify(b[y])}`);
  };
  let ga: number[] = [];
  let gb: number[] = [];
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      flush(ga, gb);
      ga = [];
      gb = [];
      i++;
      j++;
    } else if (j >= m || (i < n && ((lcs[i + 1] as number[])[j] as number) >= ((lcs[i] as number[])[j + 1] as number))) ga.push(i++);
    else gb.push(j++);
  }
  flush(ga, gb);
  return out;
}
