/**
 * A small, binary-safe tar encoder and streaming decoder (ustar + PAX, GNU long names on read).
 *
 * Why not tar-stream for this: tar-stream encodes and decodes PAX values as UTF-8 strings, which corrupts
 * binary xattr values (`SCHILY.xattr.security.capability` holds raw bytes such as 0x80), and it writes
 * mtimes through a 32-bit `| 0`. Layer tars need both right, so the store owns its tar format code.
 */
import { RuntimeError } from '../errors.js';

/** Entry kinds a layer tar can hold. */
export type TarEntryType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

/** One tar entry's metadata, as written and as read. */
export interface TarHeader {
  /** Path inside the archive (directories without the trailing slash; the encoder adds it). */
  name: string;
  type: TarEntryType;
  /** Permission bits incl. setuid/setgid/sticky (`& 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  /** Content size; 0 for everything but files. */
  size: number;
  /** Seconds since the epoch (integer). */
  mtime: number;
  /** Target of a symlink or hardlink. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, stored as `SCHILY.xattr.<name>` PAX records. */
  xattrs?: Map<string, Buffer>;
}

const BLOCK = 512;
const TYPE_FLAGS: Record<TarEntryType, string> = {
  file: '0', link: '1', symlink: '2', char: '3', block: '4', directory: '5', fifo: '6',
};

/** Zero bytes that pad `size` up to a block boundary. */
export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - rest);
}

/** The two zero blocks that end an archive. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(BLOCK * 2);

const isAscii = (s: string): boolean => /^[\x01-\x7f]*$/.test(s);

function splitUstarName(name: string): { prefix: string; base: string } | undefined {
  if (!isAscii(name)) return undefined;
  if (name.length <= 100) return { prefix: '', base: name };
  // Split at a '/' so that base ≤ 100 and prefix ≤ 155 bytes.
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const base = name.slice(i + 1);
    if (prefix.length <= 155 && base.length <= 100 && base.length > 0) return { prefix, base };
  }
  return undefined;
}

function writeOctal(buf: Buffer, offset: number, width: number, value: number): boolean {
  const digits = value.toString(8);
  if (value < 0 || !Number.isInteger(value) || digits.length > width - 1) return false;
  buf.write(digits.padStart(width - 1, '0'), offset, 'ascii');
  buf[offset + width - 1] = 0;
  return true;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function ustarBlock(h: TarHeader, name: string, typeFlag: string, size: number, pax: Map<string, Buffer>, into?: Buffer): Buffer {
  const buf = into ? into.fill(0) : Buffer.alloc(BLOCK);
  const split = splitUstarName(name);
  if (split) {
    buf.write(split.base, 0, 'ascii');
    buf.write(split.prefix, 345, 'ascii');
  } else {
    pax.set('path', Buffer.from(name));
    buf.write(Buffer.from(name).subarray(0, 100).toString('latin1').replace(/[^\x01-\x7f]/g, '_'), 0, 'ascii');
  }
  if (!writeOctal(buf, 100, 8, h.mode & 0o7777)) throw new RuntimeError(`tar: bad mode for ${h.name}`);
  if (!writeOctal(buf, 108, 8, h.uid)) { pax.set('uid', Buffer.from(String(h.uid))); writeOctal(buf, 108, 8, 0); }
  if (!writeOctal(buf, 116, 8, h.gid)) { pax.set('gid', Buffer.from(String(h.gid))); writeOctal(buf, 116, 8, 0); }
  if (!writeOctal(buf, 124, 12, size)) { pax.set('size', Buffer.from(String(size))); writeOctal(buf, 124, 12, 0); }
  if (!writeOctal(buf, 136, 12, h.mtime)) { pax.set('mtime', Buffer.from(String(h.mtime))); writeOctal(buf, 136, 12, 0); }
  buf.write(typeFlag, 156, 'ascii');
  const link = h.linkname ?? '';
  if (link.length > 0) {
    if (isAscii(link) && link.length <= 100) buf.write(link, 157, 'ascii');
    else pax.set('linkpath', Buffer.from(link));
  }
  buf.write('ustar\u000000', 257, 'ascii');
  writeOctal(buf, 329, 8, h.devmajor ?? 0);
  writeOctal(buf, 337, 8, h.devminor ?? 0);
  return buf;
}

function checksum(buf: Buffer): void {
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += buf[i] ?? 0;
  buf.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 'ascii');
}

/**
 * Encodes one entry's header block(s): a PAX extended header only when a field does not fit ustar
 * (long or non-ASCII names, large ids/sizes/mtimes) or the entry has xattrs, then the ustar block.
 * The entry's content (for files) and {@link padding} follow it.
 */
export function encodeHeader(h: TarHeader): Buffer {
  const name = h.type === 'directory' && !h.name.endsWith('/') ? `${h.name}/` : h.name;
  const pax = new Map<string, Buffer>();
  for (const [key, value] of [...(h.xattrs ?? new Map<string, Buffer>())].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    pax.set(`SCHILY.xattr.${key}`, value);
  }
  const main = ustarBlock(h, name, TYPE_FLAGS[h.type], h.type === 'file' ? h.size : 0, pax);
  checksum(main);
  if (pax.size === 0) return main;
  const records = Buffer.concat([...pax].map(([k, v]) => paxRecord(k, v)));
  const paxHeader: TarHeader = { name: 'PaxHeader', type: 'file', mode: 0o644, uid: 0, gid: 0, size: records.length, mtime: 0 };
  const paxBlock = ustarBlock(paxHeader, 'PaxHeader', 'x', records.length, new Map());
  checksum(paxBlock);
  return Buffer.concat([paxBlock, records, padding(records.length), main]);
}

/**
 * Like {@link encodeHeader}, but writes the header block(s) into `out` at `offset` (no allocation in the common
 * case of a plain ustar header). Returns the number of bytes written, or 0 when they do not fit.
 */
export function encodeHeaderInto(h: TarHeader, out: Buffer, offset: number): number {
  if (out.length - offset < BLOCK) return 0;
  if ((h.xattrs === undefined || h.xattrs.size === 0) && plainUstarInto(h, out, offset)) return BLOCK;
  if (h.xattrs === undefined || h.xattrs.size === 0) {
    const name = h.type === 'directory' && !h.name.endsWith('/') ? `${h.name}/` : h.name;
    const pax = new Map<string, Buffer>();
    const block = ustarBlock(h, name, TYPE_FLAGS[h.type], h.type === 'file' ? h.size : 0, pax, out.subarray(offset, offset + BLOCK));
    if (pax.size === 0) {
      checksum(block);
      return BLOCK;
    }
  }
  const full = encodeHeader(h);
  if (full.length > out.length - offset) return 0;
  full.copy(out, offset);
  return full.length;
}

/**
 * The common header, written byte by byte: a name of at most 100 ASCII characters, ASCII link target of at
 * most 100, every number fitting its octal field, no xattrs. The same bytes as ustarBlock + checksum (a test
 * compares them), without the temporary strings and the Buffer calls that cost ~9 µs a header (5,000 files:
 * 45 ms of a snapshot). Returns false, having written nothing that matters, when the header does not qualify.
 */
function plainUstarInto(h: TarHeader, out: Buffer, offset: number): boolean {
  const name = h.type === 'directory' && !h.name.endsWith('/') ? `${h.name}/` : h.name;
  const link = h.linkname ?? '';
  if (name.length > 100 || link.length > 100) return false;
  const size = h.type === 'file' ? h.size : 0;
  const mode = h.mode & 0o7777;
  if (!fitsOctal(h.uid, 7) || !fitsOctal(h.gid, 7) || !fitsOctal(size, 11) || !fitsOctal(h.mtime, 11)) return false;
  const devmajor = h.devmajor ?? 0;
  const devminor = h.devminor ?? 0;
  if (!fitsOctal(devmajor, 7) || !fitsOctal(devminor, 7)) return false;
  zeroFill.call(out, 0, offset, offset + BLOCK);
  // The checksum (the sum of all bytes, its own field counted as spaces) is summed while the fields are written:
  // every other byte is zero, so no pass over the whole block is needed.
  const nameSum = asciiInto(name, out, offset);
  const linkSum = asciiInto(link, out, offset + 157);
  if (nameSum < 0 || linkSum < 0) return false;
  const type = TYPE_FLAGS[h.type].charCodeAt(0);
  out[offset + 156] = type;
  // "ustar\0" "00"
  out[offset + 257] = 0x75;
  out[offset + 258] = 0x73;
  out[offset + 259] = 0x74;
  out[offset + 260] = 0x61;
  out[offset + 261] = 0x72;
  out[offset + 263] = 0x30;
  out[offset + 264] = 0x30;
  const sum =
    8 * 0x20 + USTAR_MAGIC_SUM + nameSum + linkSum + type +
    octalInto(out, offset + 100, 8, mode) +
    octalInto(out, offset + 108, 8, h.uid) +
    octalInto(out, offset + 116, 8, h.gid) +
    octalInto(out, offset + 124, 12, size) +
    octalInto(out, offset + 136, 12, h.mtime) +
    octalInto(out, offset + 329, 8, devmajor) +
    octalInto(out, offset + 337, 8, devminor);
  octalInto(out, offset + 148, 7, sum);
  out[offset + 155] = 0x20;
  return true;
}

/** The byte sum of "ustar\0" and "00" at 257-264. */
const USTAR_MAGIC_SUM = 0x75 + 0x73 + 0x74 + 0x61 + 0x72 + 0x30 + 0x30;

/**
 * The typed-array fill, without Buffer.fill's argument checks: ~5x cheaper per 512-byte header, which counts before
 * the JIT has warmed up (a snapshot's first few thousand headers).
 */
export const zeroFill = Uint8Array.prototype.fill;

/** Whether `value` is a non-negative integer of at most `digits` octal digits. */
function fitsOctal(value: number, digits: number): boolean {
  return Number.isInteger(value) && value >= 0 && value < 8 ** digits;
}

/** Writes `value` as `width - 1` zero-padded octal digits and a NUL (what writeOctal writes); returns their byte sum. */
function octalInto(out: Buffer, at: number, width: number, value: number): number {
  let v = value;
  let sum = 0;
  for (let i = at + width - 2; i >= at; i--) {
    const digit = 0x30 + (v % 8);
    out[i] = digit;
    sum += digit;
    v = Math.floor(v / 8);
  }
  out[at + width - 1] = 0;
  return sum;
}

/** Copies an ASCII string (no NUL) byte by byte and returns its byte sum; -1 for any other character. */
function asciiInto(text: string, out: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0 || c > 0x7f) return -1;
    out[at + i] = c;
    sum += c;
  }
  return sum;
}

/** Pulls exact byte counts out of an async iterable of chunks. */
class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private chunk: Buffer = Buffer.alloc(0);
  private readonly signal: AbortSignal | undefined;
  constructor(source: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined) {
    this.it = source[Symbol.asyncIterator]();
    this.signal = signal;
  }

  private async fill(): Promise<boolean> {
    while (this.chunk.length === 0) {
      this.signal?.throwIfAborted();
      const r = await this.it.next();
      if (r.done) return false;
      this.chunk = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
    return true;
  }

  /** Exactly `n` bytes; undefined at a clean end of input, an error on a truncated one. */
  async read(n: number): Promise<Buffer | undefined> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      if (!(await this.fill())) {
        if (got === 0) return undefined;
        throw new RuntimeError('tar: unexpected end of archive');
      }
      const take = this.chunk.subarray(0, n - got);
      this.chunk = this.chunk.subarray(take.length);
      parts.push(take);
      got += take.length;
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n);
  }

  /** Yields the next `n` bytes in pieces. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw new RuntimeError('tar: unexpected end of archive');
      const take = this.chunk.subarray(0, left);
      this.chunk = this.chunk.subarray(take.length);
      left -= take.length;
      yield take;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.stream(n)) { /* discard */ }
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/**
 * Limits on header records, which the reader holds in memory (everything else streams). Go's archive/tar, which
 * docker and containerd use, refuses PAX and GNU long-name records over 1 MiB (`maxSpecialFileSize`); kiln
 * does the same, and also bounds the global PAX state and the records that accumulate for one entry.
 */
export const TAR_LIMITS = {
  /** The largest PAX extended header (`x`, `g`) or GNU long name/link (`L`, `K`) record. */
  maxHeaderRecordBytes: 1 << 20,
  /** The most bytes of PAX keys and values that may apply to one entry (its own and the global ones). */
  maxPaxStateBytes: 1 << 20,
} as const;

/** A tar header field is malformed. */
function badField(field: string): RuntimeError {
  return new RuntimeError(`tar: invalid ${field} field in a header (corrupt archive?)`);
}

/**
 * A numeric header field: octal text (leading and trailing spaces and NULs allowed, as Go and GNU tar read it)
 * or GNU base-256 (the first byte's top bit set; 0xff marks a negative number). Throws on anything else, or a
 * value that is not a safe integer.
 */
function readNumber(buf: Buffer, offset: number, width: number, field: string): number {
  const first = buf[offset] ?? 0;
  if (first & 0x80) {
    // GNU base-256: big-endian two's complement behind the marker bit (0x40 set: negative), read as Go reads it.
    const inv = first & 0x40 ? 0xff : 0;
    const negative = inv !== 0;
    let value = (first ^ inv) & 0x7f;
    for (let i = 1; i < width; i++) {
      value = value * 256 + ((buf[offset + i] ?? 0) ^ inv);
      if (value > Number.MAX_SAFE_INTEGER) throw badField(field);
    }
    return negative ? -value - 1 : value;
  }
  let start = offset;
  let end = offset + width;
  while (start < end && (buf[start] === 0x20 || buf[start] === 0)) start++;
  while (end > start && (buf[end - 1] === 0x20 || buf[end - 1] === 0)) end--;
  let value = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i] ?? 0;
    if (c < 0x30 || c > 0x37) throw badField(field);
    value = value * 8 + (c - 0x30);
  }
  return value;
}

function readString(buf: Buffer, offset: number, width: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString('utf8', offset, end === -1 || end > offset + width ? offset + width : end);
}

/** Parses PAX records strictly (`<decimal length> <key>=<value>\n`), as Go's archive/tar does. */
function parsePax(data: Buffer, into: Map<string, Buffer>): void {
  let pos = 0;
  while (pos < data.length) {
    // GNU tar and Go stop at the NUL padding some writers leave after the last record.
    if (data[pos] === 0) break;
    const space = data.indexOf(0x20, pos);
    if (space === -1 || space === pos || space - pos > 20) throw new RuntimeError('tar: malformed PAX header');
    let len = 0;
    for (let i = pos; i < space; i++) {
      const c = data[i] ?? 0;
      if (c < 0x30 || c > 0x39) throw new RuntimeError('tar: malformed PAX header');
      len = len * 10 + (c - 0x30);
    }
    if (len <= space - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) throw new RuntimeError('tar: malformed PAX header');
    const record = data.subarray(space + 1, pos + len - 1); // without the trailing '\n'
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new RuntimeError('tar: malformed PAX header');
    const key = record.toString('utf8', 0, eq);
    // An empty value deletes the key (POSIX): it no longer overrides the ustar field.
    if (eq === record.length - 1) into.delete(key);
    else into.set(key, Buffer.from(record.subarray(eq + 1)));
    pos += len;
  }
}

/** The total size of a PAX state's keys and values. */
function paxBytes(map: ReadonlyMap<string, Buffer>): number {
  let n = 0;
  for (const [k, v] of map) n += k.length + v.length;
  return n;
}

/** A PAX number (`size`, `uid`, `gid`: decimal digits; `mtime`: decimal seconds with an optional fraction and sign). */
function paxNumber(value: Buffer, key: string): number {
  const text = value.toString('latin1');
  const ok = key === 'mtime' ? /^-?[0-9]{1,16}(\.[0-9]*)?$/.test(text) : /^[0-9]{1,16}$/.test(text);
  const n = ok ? Math.floor(Number(text)) : NaN;
  if (!Number.isSafeInteger(n)) throw new RuntimeError(`tar: invalid PAX ${key} "${text.slice(0, 40)}"`);
  return n;
}

/** An entry read from a tar stream; `body` must be consumed before the next entry is requested (or it is skipped). */
export interface TarEntry {
  header: TarHeader;
  body: AsyncIterable<Buffer>;
}

const READ_TYPES: Record<string, TarEntryType> = {
  '0': 'file', '\0': 'file', '7': 'file', '1': 'link', '2': 'symlink', '3': 'char', '4': 'block', '5': 'directory', '6': 'fifo',
};

/**
 * Reads a tar stream entry by entry without buffering file contents. Understands ustar, PAX (path, linkpath,
 * size, uid, gid, mtime, SCHILY.xattr.*, global headers) and GNU long names; other entry kinds are skipped.
 * Header records are bounded by {@link TAR_LIMITS}; a malformed number, PAX record or checksum, a record over
 * the limits, or a truncated archive throws a RuntimeError.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>, signal?: AbortSignal): AsyncGenerator<TarEntry> {
  const reader = new ByteReader(source, signal);
  const globalPax = new Map<string, Buffer>();
  let pax = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    for (;;) {
      const block = await reader.read(BLOCK);
      if (!block || block.every((b) => b === 0)) return;
      const stored = readNumber(block, 148, 8, 'checksum');
      block.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of block) sum += b;
      if (sum !== stored) throw new RuntimeError('tar: bad header checksum (not a tar, or compressed?)');
      const flag = String.fromCharCode(block[156] ?? 0);
      let size = readNumber(block, 124, 12, 'size');
      if (size < 0) throw badField('size');
      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        // Header records are held in memory: refuse big ones before reading them.
        if (size > TAR_LIMITS.maxHeaderRecordBytes) {
          throw new RuntimeError(`tar: a ${flag === 'x' || flag === 'g' ? 'PAX' : 'GNU long name'} header record of ${size} bytes exceeds the limit of ${TAR_LIMITS.maxHeaderRecordBytes}`);
        }
        const data = (await reader.read(size)) ?? Buffer.alloc(0);
        if (data.length < size) throw new RuntimeError('tar: unexpected end of archive');
        await reader.skip(padding(size).length);
        if (flag === 'x') parsePax(data, pax);
        else if (flag === 'g') parsePax(data, globalPax);
        else if (flag === 'L') longName = readString(data, 0, data.length);
        else longLink = readString(data, 0, data.length);
        if (paxBytes(pax) + paxBytes(globalPax) > TAR_LIMITS.maxPaxStateBytes) {
          throw new RuntimeError(`tar: PAX records for one entry exceed the limit of ${TAR_LIMITS.maxPaxStateBytes} bytes`);
        }
        continue;
      }
      const all = new Map([...globalPax, ...pax]);
      pax = new Map();
      let name = readString(block, 0, 100);
      if (block.toString('latin1', 257, 263) === 'ustar\0' && block[345] !== 0) name = `${readString(block, 345, 155)}/${name}`;
      name = all.get('path')?.toString('utf8') ?? longName ?? name;
      const linkname = all.get('linkpath')?.toString('utf8') ?? longLink ?? readString(block, 157, 100);
      longName = undefined;
      longLink = undefined;
      const num = (key: string, fallback: () => number): number => {
        const v = all.get(key);
        return v === undefined ? fallback() : paxNumber(v, key);
      };
      const id = (key: 'uid' | 'gid', offset: number): number => {
        const n = num(key, () => readNumber(block, offset, 8, key));
        if (n < 0 || n > 0xffffffff) throw badField(key);
        return n;
      };
      size = num('size', () => size);
      let type = READ_TYPES[flag];
      if (type === 'file' && name.endsWith('/')) type = 'directory';
      const xattrs = new Map<string, Buffer>();
      for (const [k, v] of all) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
      // As in Go's archive/tar: links, devices, directories and FIFOs carry no data, whatever their size says.
      const dataSize = type === undefined || type === 'file' ? size : 0;
      if (type === undefined) {
        await reader.skip(dataSize + padding(dataSize).length);
        continue;
      }
      const header: TarHeader = {
        name: name.replace(/\/+$/, ''),
        type,
        mode: readNumber(block, 100, 8, 'mode') & 0o7777,
        uid: id('uid', 108),
        gid: id('gid', 116),
        size: type === 'file' ? size : 0,
        mtime: num('mtime', () => readNumber(block, 136, 12, 'mtime')),
        linkname,
        devmajor: type === 'char' || type === 'block' ? readNumber(block, 329, 8, 'devmajor') : 0,
        devminor: type === 'char' || type === 'block' ? readNumber(block, 337, 8, 'devminor') : 0,
        xattrs,
      };
      if (header.devmajor! < 0 || header.devminor! < 0) throw badField('device number');
      let remaining = dataSize;
      const body = (async function* () {
        for await (const piece of reader.stream(remaining)) {
          remaining -= piece.length;
          yield piece;
        }
      })();
      yield { header, body };
      // Skip whatever the consumer left unread.
      if (remaining > 0) await reader.skip(remaining);
      await reader.skip(padding(dataSize).length);
    }
  } finally {
    await reader.close();
  }
}
