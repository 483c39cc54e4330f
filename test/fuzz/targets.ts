/**
 * Fuzz targets: for each untrusted-input surface, a fast-check arbitrary of hostile inputs and a check that
 * runs kiln's code on one input. A check passes when kiln returns normally or throws one of the target's
 * documented error types; anything else (a TypeError, a RangeError from a huge allocation, a stack overflow, a
 * header with a NaN size) fails the case. Hangs and memory growth are caught by the runner (scripts/fuzz.ts),
 * which watches each case from outside.
 *
 * Documented error types: kiln's classes in src/errors.ts (BuildError and its subclasses) at every boundary a
 * user reaches (parse, resolveStages, readTar, extractLayer, importImage), plus the two helper errors that
 * their callers wrap at the boundary with a location: ShellWordError (src/parser/shell-words.ts) and
 * IgnorePatternError (src/parser/dockerignore.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { BuildError, DockerfileError, RuntimeError } from '../../src/errors.js';
import { parse } from '../../src/parser/index.js';
import { dumpAst } from '../../src/parser/dump.js';
import { ShellLex, ShellWordError } from '../../src/parser/shell-words.js';
import { IgnorePatternError, PatternMatcher, readIgnoreFile } from '../../src/parser/dockerignore.js';
import { resolveStages } from '../../src/builder/stages.js';
import { readTar, encodeHeader, padding, END_OF_ARCHIVE } from '../../src/store/tar.js';
import { extractLayer } from '../../src/store/extract.js';
import { importImage } from '../../src/image/import.js';
import type { LayerStore } from '../../src/store/layer-store.js';

/** What a check needs besides its input: a scratch directory and (for import) a store. */
export interface FuzzEnv {
  readonly scratch: string;
  readonly store: () => Promise<LayerStore>;
}

/** One fuzz target. `check` resolves with the outcome's name (`ok` or the documented error's class). */
export interface FuzzTarget<T> {
  readonly name: string;
  readonly arbitrary: fc.Arbitrary<T>;
  check(input: T, env: FuzzEnv): Promise<string> | string;
}

/** Rethrows `err` unless it is one of `allowed`; returns its class name. */
function outcomeOf(err: unknown, ...allowed: Array<abstract new (...args: never[]) => Error>): string {
  if (allowed.some((cls) => err instanceof cls)) return (err as Error).name;
  throw err;
}

// ---------------------------------------------------------------------------------------------- parser

const piece = fc.constantFrom(
  'FROM alpine', 'FROM alpine AS a', 'FROM a AS b', 'FROM b', 'FROM $X', 'FROM ${X:-y} AS c', 'ARG X=1', 'ARG X', 'RUN echo hi',
  'RUN a \\', 'RUN a `', '# comment', '#', '', '   ', '\t', 'EOF', '<<EOF', 'RUN <<EOF cat', 'COPY <<-A <<B /d', 'A', '\tA', 'B',
  'ENV A', 'ENV A=1 B', 'LABEL "x y"=z', 'CMD ["a", 1]', 'CMD ["a"', 'ONBUILD RUN <<EOF', 'HEALTHCHECK --interval=5s CMD ["x"]',
  '# escape=`', '# escape=\\', '# syntax=x', '# check=skip=all', '\\', '`', 'RUN --mount="a b" x', '\r', '\ufeff',
  'ARG X="unterminated', 'RUN <<"EOF', "RUN <<'E'F", 'COPY --from=a /x /y', 'COPY --from=0 /x /y', 'COPY --from=$X / /',
  'RUN --mount=type=bind,from=b,target=/m x', 'RUN --mount=type=cache,target=/c,id=x,sharing=locked x', 'RUN --network=none x',
  'ADD --checksum=sha256:00 http://x/y /z', 'COPY --chmod=0755 --chown=1:2 a b', 'COPY --link --parents a/ b/', 'WORKDIR $X',
  'USER 1:1', 'EXPOSE 80/tcp 1-2/udp', 'EXPOSE ${P}', 'VOLUME ["/a"]', 'STOPSIGNAL SIGKILL', 'SHELL ["/bin/sh","-c"]',
  'MAINTAINER x', 'ENTRYPOINT x', 'CMD', 'FROM', 'COPY', 'FROM --platform=$BUILDPLATFORM x', 'ONBUILD ONBUILD RUN x',
);

/** Dockerfile text: raw binary strings, or lines assembled from Dockerfile-like pieces and noise. */
export const dockerfileText: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 300, unit: 'binary' }),
  fc
    .tuple(fc.array(fc.oneof({ weight: 4, arbitrary: piece }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }), { maxLength: 40 }), fc.constantFrom('\n', '\r\n'))
    .map(([lines, nl]) => lines.join(nl)),
);

/** Parser target: parse (AST + typed instructions), dump, and resolve the stage graph. */
export const parserTarget: FuzzTarget<string> = {
  name: 'parser',
  arbitrary: dockerfileText,
  check(text) {
    let parsed;
    try {
      parsed = parse(text);
      assert.equal(typeof dumpAst(parsed.ast), 'string');
    } catch (err) {
      const outcome = outcomeOf(err, DockerfileError);
      const e = err as DockerfileError;
      assert.ok(e.range.start.line >= 0 && e.range.end.offset >= e.range.start.offset, 'error range is well-formed');
      assert.ok(!e.message.includes('\n') || e.message.length < 5000, 'error message is bounded');
      return outcome;
    }
    try {
      resolveStages(parsed, { platformArgs: { TARGETOS: 'linux' } });
      return 'ok';
    } catch (err) {
      return `stages:${outcomeOf(err, DockerfileError)}`;
    }
  },
};

// ----------------------------------------------------------------------------------------------- shell

const shellChars = fc.constantFrom(
  '$', '{', '}', ':', '-', '+', '?', '=', '#', '%', '/', '\\', "'", '"', '`', 'a', 'B', '1', '_', '*', ' ', '\t', '\n', '[', ']', '^', '.', '@',
  '$A', '${A}', '${A:-x}', '${A#*}', '${A%%?}', '${A/x/y}', '${#A}', '${A:?err}', '${A:+x}', '${A:1:2}', '${!A}', 'é', '\u0000', '\uffff',
);

/** Shell-word target: expand a word (with and without splitting) against a small environment. */
export const shellTarget: FuzzTarget<{ word: string; env: [string, string][]; escape: '\\' | '`' }> = {
  name: 'shell',
  arbitrary: fc.record({
    word: fc.oneof(fc.array(shellChars, { maxLength: 40 }).map((a) => a.join('')), fc.string({ maxLength: 60, unit: 'binary' })),
    env: fc.array(fc.tuple(fc.constantFrom('A', 'B', '_', 'PATH', 'a1'), fc.array(shellChars, { maxLength: 8 }).map((a) => a.join(''))), { maxLength: 4 }),
    escape: fc.constantFrom('\\' as const, '`' as const),
  }),
  check({ word, env, escape }) {
    const lex = new ShellLex(escape);
    const vars = new Map(env);
    try {
      const one = lex.processWord(word, vars);
      assert.equal(typeof one, 'string');
      const many = lex.processWords(word, vars);
      assert.ok(Array.isArray(many) && many.every((w) => typeof w === 'string'));
      return 'ok';
    } catch (err) {
      return outcomeOf(err, ShellWordError);
    }
  },
};

// ------------------------------------------------------------------------------------------ dockerignore

const globChars = fc.constantFrom('*', '**', '?', '[', ']', '[!a]', '[a-z]', '[^', '\\', '/', '!', '.', '..', 'a', 'b', 'é', ' ', '#', '-', '{', '}');
const pathPart = fc.constantFrom('a', 'b', '.git', 'node_modules', 'x.txt', '..', '.', '', 'é', '*', '[', 'a b');

/** .dockerignore target: read an ignore file, compile it, and match paths. */
export const dockerignoreTarget: FuzzTarget<{ lines: string[]; paths: string[] }> = {
  name: 'dockerignore',
  arbitrary: fc.record({
    lines: fc.array(fc.oneof(fc.array(globChars, { maxLength: 12 }).map((a) => a.join('')), fc.string({ maxLength: 30, unit: 'binary' })), { maxLength: 8 }),
    paths: fc.array(fc.array(pathPart, { minLength: 1, maxLength: 6 }).map((a) => a.join('/')), { minLength: 1, maxLength: 6 }),
  }),
  check({ lines, paths }) {
    try {
      const matcher = PatternMatcher.compile(readIgnoreFile(lines.join('\n')));
      for (const p of paths) assert.equal(typeof matcher.matchesOrParentMatches(p), 'boolean');
      return 'ok';
    } catch (err) {
      return outcomeOf(err, IgnorePatternError);
    }
  },
};

// ------------------------------------------------------------------------------------------------- tar

/** A numeric header field: octal text, GNU base-256, or arbitrary bytes. */
type NumField = { k: 'octal'; v: number } | { k: 'b256'; bytes: number[] } | { k: 'text'; s: string };
/** One raw tar record: a header block with the given fields, then `body` bytes (its length need not match). */
interface RawEntry {
  flag: string;
  name: string;
  link: string;
  prefix: string;
  ustar: boolean;
  mode: NumField;
  size: NumField | 'body';
  uid: NumField;
  mtime: NumField;
  body: Uint8Array;
  badChecksum: boolean;
}
/** A tar to build: raw records (hostile ones among well-formed ones), byte flips, a cut, and a chunking. */
export interface TarCase {
  entries: RawEntry[];
  flips: Array<[number, number]>;
  cutAt: number | undefined;
  chunk: number;
  consume: boolean;
  extract: boolean;
  end: boolean;
}

const numField: fc.Arbitrary<NumField> = fc.oneof(
  { weight: 24, arbitrary: fc.nat({ max: 0o7777777 }).map((v) => ({ k: 'octal' as const, v })) },
  { weight: 1, arbitrary: fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 12 }).map((bytes) => ({ k: 'b256' as const, bytes })) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '9', '-1', '0x10', '777 7', '\u00ff', 'NaN', '1e99', '7777777777777777').map((s) => ({ k: 'text' as const, s })) },
);

const nameArb = fc.oneof(
  fc.constantFrom('a', 'a/b', 'd/', './x', '../x', '/abs', 'a/../../x', '.wh.a', 'd/.wh..wh..opq', '.wh.', '.wh...', 'l/x', 'l', '', '.', 'x'.repeat(100), 'é'),
  fc.string({ maxLength: 120, unit: 'binary' }),
);

const paxValue = fc.oneof(
  fc.constantFrom('-1', '0', 'NaN', '1e309', '99999999999999999999', '1.5', ' 3', '', '\u0000', '../../x', '/etc/passwd', 'a'.repeat(200)),
  fc.string({ maxLength: 40, unit: 'binary' }),
);
/** PAX records: well-formed ones with hostile values, and malformed records (bad lengths, no '=', no newline). */
const paxBody: fc.Arbitrary<Uint8Array> = fc
  .array(
    fc.oneof(
      fc.tuple(fc.constantFrom('path', 'linkpath', 'size', 'uid', 'gid', 'mtime', 'SCHILY.xattr.user.x', 'GNU.sparse.size', 'hdrcharset', 'x'), paxValue).map(([k, v]) => {
        const body = ` ${k}=${v}\n`;
        let len = Buffer.byteLength(body) + 1;
        while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
        return `${len}${body}`;
      }),
      fc.constantFrom('9999999999 path=x\n', '0 \n', '-5 a=b\n', '5 a\n', '10 path=x', '1e3 a=b\n', '3 =\n', 'x', ' ', '00000000011 a=b\n'),
    ),
    { maxLength: 5 },
  )
  .map((records) => Buffer.from(records.join(''), 'latin1'));

const rawEntry: fc.Arbitrary<RawEntry> = fc.record({
  flag: fc.constantFrom('0', '0', '0', '5', '5', '2', '1', '3', '4', '6', '7', '\0', 'x', 'x', 'g', 'L', 'K', 'S', 'V', 'D', 'M', 'Z'),
  name: nameArb,
  link: fc.oneof(fc.constantFrom('', 'a', '../../etc', '/', '/etc/passwd', 'a/b', '.', 'l', '..'), fc.string({ maxLength: 110, unit: 'binary' })),
  prefix: fc.constantFrom('', '', '', 'p', '../..', '/'),
  ustar: fc.boolean(),
  mode: numField,
  size: fc.oneof({ weight: 19, arbitrary: fc.constant('body' as const) }, { weight: 1, arbitrary: numField }),
  uid: numField,
  mtime: numField,
  body: fc.oneof(fc.uint8Array({ maxLength: 1200 }), paxBody),
  badChecksum: fc.nat({ max: 49 }).map((n) => n === 0),
});

/** Tar target input: built from raw records, then damaged. */
export const tarCase: fc.Arbitrary<TarCase> = fc.record({
  entries: fc.array(rawEntry, { maxLength: 8 }),
  // Mostly whole archives (hostile content, well-formed framing), some with flipped bytes or cut short.
  flips: fc.oneof({ weight: 3, arbitrary: fc.constant([] as Array<[number, number]>) }, { weight: 1, arbitrary: fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 3 }) }),
  cutAt: fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.nat() }),
  chunk: fc.constantFrom(1, 7, 512, 513, 4096, 65536),
  consume: fc.boolean(),
  extract: fc.boolean(),
  end: fc.boolean(),
});

function writeNum(block: Buffer, offset: number, width: number, f: NumField): void {
  if (f.k === 'octal') block.write(f.v.toString(8).padStart(width - 1, '0').slice(-(width - 1)), offset, 'ascii');
  else if (f.k === 'b256') for (let i = 0; i < Math.min(width, f.bytes.length); i++) block[offset + i] = i === 0 ? (f.bytes[i] ?? 0) | 0x80 : (f.bytes[i] ?? 0);
  else block.write(f.s.slice(0, width), offset, 'latin1');
}

/** The bytes of a {@link TarCase}. */
export function buildTar(c: TarCase): Buffer {
  const parts: Buffer[] = [];
  for (const e of c.entries) {
    const block = Buffer.alloc(512);
    block.write(e.name, 0, 100, 'utf8');
    writeNum(block, 100, 8, e.mode);
    writeNum(block, 108, 8, e.uid);
    writeNum(block, 116, 8, e.uid);
    writeNum(block, 124, 12, e.size === 'body' ? { k: 'octal', v: e.body.length } : e.size);
    writeNum(block, 136, 12, e.mtime);
    block.write(e.flag, 156, 1, 'latin1');
    block.write(e.link, 157, 100, 'utf8');
    if (e.ustar) {
      block.write('ustar\u000000', 257, 'latin1');
      block.write(e.prefix, 345, 155, 'utf8');
    }
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of block) sum += b;
    block.write(`${(e.badChecksum ? sum + 1 : sum).toString(8).padStart(6, '0')}\u0000 `, 148, 'ascii');
    // Links, devices, directories and FIFOs carry no data (whatever their size field says): mostly well-framed.
    if (!'123456'.includes(e.flag) || e.size !== 'body') parts.push(block, Buffer.from(e.body), padding(e.body.length));
    else parts.push(block);
  }
  if (c.end) parts.push(END_OF_ARCHIVE);
  const out = Buffer.concat(parts);
  for (const [at, byte] of c.flips) if (out.length > 0) out[at % out.length] = byte;
  return c.cutAt === undefined || out.length === 0 ? out : out.subarray(0, c.cutAt % (out.length + 1));
}

async function* chunked(bytes: Buffer, size: number): AsyncGenerator<Uint8Array> {
  // Copies: the reader may scribble on header blocks.
  for (let i = 0; i < bytes.length; i += size) yield Buffer.from(bytes.subarray(i, i + size));
}

const safeInt = (n: unknown): boolean => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** Tar target: read every entry (consuming or skipping bodies), then extract the same bytes into a sandbox. */
export const tarTarget: FuzzTarget<TarCase> = {
  name: 'tar',
  arbitrary: tarCase,
  async check(c, env) {
    const bytes = buildTar(c);
    let bodyBytes = 0;
    let outcome = 'ok';
    try {
      for await (const { header, body } of readTar(chunked(bytes, c.chunk))) {
        for (const k of ['size', 'uid', 'gid', 'mode'] as const) assert.ok(safeInt(header[k]), `header ${k} is ${String(header[k])}`);
        assert.ok(Number.isSafeInteger(header.mtime), `header mtime is ${header.mtime}`);
        assert.ok(safeInt(header.devmajor ?? 0) && safeInt(header.devminor ?? 0), 'device numbers');
        if (c.consume) for await (const piece of body) bodyBytes += piece.length;
      }
    } catch (err) {
      outcome = outcomeOf(err, RuntimeError);
    }
    // No amplification: what the entries yield is part of the input.
    assert.ok(bodyBytes <= bytes.length, `bodies yielded ${bodyBytes} bytes from a ${bytes.length}-byte tar`);
    if (!c.extract) return outcome;
    const box = join(env.scratch, 'box');
    const target = join(box, 'target');
    await rm(box, { recursive: true, force: true });
    await mkdir(join(box, 'outside'), { recursive: true });
    await mkdir(target);
    try {
      await extractLayer(chunked(bytes, c.chunk), target);
      outcome += '+extracted';
    } catch (err) {
      outcome += `+${outcomeOf(err, RuntimeError)}`;
    }
    // Nothing may land beside the target.
    assert.deepEqual((await readdir(box)).sort(), ['outside', 'target']);
    assert.deepEqual(await readdir(join(box, 'outside')), []);
    return outcome;
  },
};

// ---------------------------------------------------------------------------------------------- import

/** A JSON edit: replace the value at the `pick`-th path of the document with `value` (or delete it). */
type Edit = { pick: number; value: unknown; remove: boolean };
/** Import target input: an OCI layout or docker archive, as a directory or a tar, with edits to its JSON. */
export interface ImportCase {
  format: 'oci' | 'docker';
  packed: boolean;
  layers: Array<{ entries: number; gzip: boolean; garbage: boolean }>;
  editsConfig: Edit[];
  editsManifest: Edit[];
  editsIndex: Edit[];
  nested: boolean;
  fixDigests: boolean;
  wrongSize: boolean;
}

const edit: fc.Arbitrary<Edit> = fc.record({
  pick: fc.nat(),
  value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('sha256:' + '0'.repeat(64), '../../etc/passwd', -1, 1e308, null, [], {})),
  remove: fc.boolean(),
});

export const importCase: fc.Arbitrary<ImportCase> = fc.record({
  format: fc.constantFrom('oci' as const, 'docker' as const),
  packed: fc.boolean(),
  layers: fc.array(fc.record({ entries: fc.nat({ max: 3 }), gzip: fc.boolean(), garbage: fc.nat({ max: 3 }).map((n) => n === 0) }), { maxLength: 3 }),
  editsConfig: fc.array(edit, { maxLength: 2 }),
  editsManifest: fc.array(edit, { maxLength: 2 }),
  editsIndex: fc.array(edit, { maxLength: 2 }),
  nested: fc.boolean(),
  fixDigests: fc.boolean(),
  wrongSize: fc.nat({ max: 4 }).map((n) => n === 0),
});

/** Every path (as keys) into a JSON document, the root included. */
function paths(doc: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix);
  if (Array.isArray(doc)) doc.forEach((v, i) => paths(v, [...prefix, i], out));
  else if (doc !== null && typeof doc === 'object') for (const [k, v] of Object.entries(doc)) paths(v, [...prefix, k], out);
  return out;
}

function applyEdits(doc: unknown, edits: readonly Edit[]): unknown {
  let root = structuredClone(doc);
  for (const e of edits) {
    const all = paths(root);
    const p = all[e.pick % all.length] ?? [];
    if (p.length === 0) {
      root = e.value;
      continue;
    }
    let parent = root as Record<string | number, unknown>;
    for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
    const last = p[p.length - 1] as string | number;
    if (e.remove && !Array.isArray(parent)) delete parent[last];
    else parent[last] = e.value;
  }
  return root;
}

const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function layerTar(n: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const data = Buffer.from(`file ${i}\n`);
    parts.push(encodeHeader({ name: `f${i}`, type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 0 }), data, padding(data.length));
  }
  return Buffer.concat([...parts, END_OF_ARCHIVE]);
}

/** Writes the files of an {@link ImportCase} under `dir`; returns name → bytes. */
function importFiles(c: ImportCase): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const layers = c.layers.map((l) => {
    const tar = l.garbage ? Buffer.from('not a tar at all') : layerTar(l.entries);
    return { tar, blob: l.gzip ? gzipSync(tar) : tar };
  });
  const configDoc = applyEdits(
    { architecture: 'amd64', os: 'linux', config: { Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => sha(l.tar)) }, history: [] },
    c.editsConfig,
  );
  const config = Buffer.from(JSON.stringify(configDoc) ?? 'null');
  if (c.format === 'docker') {
    const configName = `${sha(config).slice(7)}.json`;
    files.set(configName, config);
    const names = layers.map((l, i) => {
      const name = i % 2 === 0 ? `blobs/sha256/${sha(l.blob).slice(7)}` : `l${i}/layer.tar`;
      files.set(name, l.blob);
      return name;
    });
    const manifest = applyEdits([{ Config: configName, RepoTags: ['fuzz:1'], Layers: names }], c.editsManifest);
    files.set('manifest.json', Buffer.from(JSON.stringify(manifest) ?? 'null'));
    return files;
  }
  const blob = (b: Buffer): string => {
    const d = sha(b);
    files.set(`blobs/sha256/${d.slice(7)}`, b);
    return d;
  };
  const configDigest = blob(config);
  const manifestDoc = applyEdits(
    {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length + (c.wrongSize ? 1 : 0) },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: blob(l.blob), size: l.blob.length })),
    },
    c.editsManifest,
  );
  const manifest = Buffer.from(JSON.stringify(manifestDoc) ?? 'null');
  let desc: Record<string, unknown> = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: blob(manifest), size: manifest.length };
  if (c.nested) {
    const inner = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ ...desc, platform: { os: 'linux', architecture: process.arch === 'x64' ? 'amd64' : process.arch } }] }));
    desc = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: blob(inner), size: inner.length };
  }
  const indexDoc = applyEdits({ schemaVersion: 2, manifests: [{ ...desc, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }, c.editsIndex);
  files.set('index.json', Buffer.from(JSON.stringify(indexDoc) ?? 'null'));
  files.set('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
  if (!c.fixDigests) {
    // Leave some digests stale: drop one blob's file name out of step with its content.
    const k = [...files.keys()].find((n) => n.startsWith('blobs/'));
    if (k) files.set(k, Buffer.concat([files.get(k) as Buffer, Buffer.from(' ')]));
  }
  return files;
}

function packTar(files: Map<string, Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, data] of files) {
    parts.push(encodeHeader({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 0 }), data, padding(data.length));
  }
  return Buffer.concat([...parts, END_OF_ARCHIVE]);
}

/** Import target: write the layout/archive, import it into a scratch store. */
export const importTarget: FuzzTarget<ImportCase> = {
  name: 'import',
  arbitrary: importCase,
  async check(c, env) {
    const dir = join(env.scratch, 'import');
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const files = importFiles(c);
    let path = join(dir, 'src');
    if (c.packed) {
      path = join(dir, 'src.tar');
      await writeFile(path, packTar(files));
    } else {
      for (const [name, data] of files) {
        await mkdir(join(path, name, '..'), { recursive: true });
        await writeFile(join(path, name), data);
      }
    }
    try {
      await importImage(c.format === 'oci' ? { type: 'oci-layout', path } : { type: 'docker-archive', path }, await env.store());
      return 'ok';
    } catch (err) {
      return outcomeOf(err, BuildError);
    }
  },
};

/** Every target, by name. */
export const TARGETS = {
  parser: parserTarget,
  shell: shellTarget,
  dockerignore: dockerignoreTarget,
  tar: tarTarget,
  import: importTarget,
} as const;

export type TargetName = keyof typeof TARGETS;
