import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RuntimeError } from '../../src/errors.js';
import { END_OF_ARCHIVE, TAR_LIMITS, encodeHeader, padding, readTar } from '../../src/store/tar.js';

/** A raw header block: `fields` are [offset, bytes] pairs written over a zeroed ustar block, checksum fixed. */
function block(fields: Array<[number, string | Buffer]>): Buffer {
  const b = Buffer.alloc(512);
  b.write('ustar\u000000', 257, 'latin1');
  for (const [at, v] of fields) (typeof v === 'string' ? Buffer.from(v, 'latin1') : v).copy(b, at);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'ascii');
  return b;
}
const file = (name: string, data: string, extra: Array<[number, string | Buffer]> = []): Buffer[] => [
  block([[0, name], [100, '0000644\0'], [124, `${data.length.toString(8).padStart(11, '0')}\0`], [156, '0'], ...extra]),
  Buffer.from(data),
  padding(data.length),
];

async function* once(b: Buffer): AsyncGenerator<Uint8Array> {
  yield b;
}
async function readAll(b: Buffer): Promise<Array<{ name: string; size: number; mtime: number; type: string; data: string }>> {
  const out = [];
  for await (const { header, body } of readTar(once(b))) {
    const parts: Buffer[] = [];
    for await (const p of body) parts.push(p);
    out.push({ name: header.name, size: header.size, mtime: header.mtime, type: header.type, data: Buffer.concat(parts).toString() });
  }
  return out;
}
const rejectsWith = (b: Buffer, re: RegExp): Promise<void> =>
  assert.rejects(readAll(b), (err: unknown) => err instanceof RuntimeError && re.test(err.message));

/** A header record (PAX `x`, GNU `L`) that claims `size` bytes, followed by a little data: the claim alone must be refused. */
const special = (flag: string, size: number): Buffer =>
  Buffer.concat([block([[0, 'h'], [124, `${size.toString(8).padStart(11, '0')}\0`], [156, flag]]), Buffer.alloc(1024, 0x61)]);

test('PAX and GNU long-name records over the 1 MiB limit are refused before they are read', async () => {
  const size = TAR_LIMITS.maxHeaderRecordBytes + 1;
  await rejectsWith(special('x', size), /PAX header record of 1048577 bytes exceeds the limit of 1048576/);
  await rejectsWith(special('g', size), /PAX header record/);
  await rejectsWith(special('L', size), /GNU long name header record/);
  await rejectsWith(special('K', 8 * 1024 ** 3), /GNU long name header record/);
});

test('PAX records that add up past the limit across many headers are refused', async () => {
  const record = (n: number): Buffer => {
    const body = ` SCHILY.xattr.user.k${n}=${'v'.repeat(300_000)}\n`;
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    const data = `${len}${body}`;
    return Buffer.concat([block([[0, 'g'], [124, `${data.length.toString(8).padStart(11, '0')}\0`], [156, 'g']]), Buffer.from(data), padding(data.length)]);
  };
  await rejectsWith(Buffer.concat([record(1), record(2), record(3), record(4), ...file('a', 'x'), END_OF_ARCHIVE]), /exceed the limit of 1048576 bytes/);
});

test('malformed numbers and PAX records are errors, never NaN or negative sizes', async () => {
  await rejectsWith(Buffer.concat([...file('a', 'x', [[136, '9999\0']]), END_OF_ARCHIVE]), /invalid mtime field/);
  await rejectsWith(Buffer.concat([...file('a', 'x', [[100, 'rw-r--r\0']]), END_OF_ARCHIVE]), /invalid mode field/);
  await rejectsWith(Buffer.concat([block([[0, 'a'], [124, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe])], [156, '0']]), END_OF_ARCHIVE]), /invalid size field/);
  const pax = (rec: string): Buffer => Buffer.concat([block([[0, 'p'], [124, `${rec.length.toString(8).padStart(11, '0')}\0`], [156, 'x']]), Buffer.from(rec), padding(rec.length), ...file('a', 'x'), END_OF_ARCHIVE]);
  const rec = (kv: string): string => {
    let len = kv.length + 2;
    while (String(len).length + kv.length + 2 !== len) len = String(len).length + kv.length + 2;
    return `${len} ${kv}\n`;
  };
  await rejectsWith(pax(rec('size=-5')), /invalid PAX size/);
  await rejectsWith(pax(rec('size=NaN')), /invalid PAX size/);
  await rejectsWith(pax(rec('uid=1e300')), /invalid PAX uid/);
  await rejectsWith(pax('99 path=x\n'), /malformed PAX header/);
  await rejectsWith(pax('6 abc\n'), /malformed PAX header/);
});

test('well-formed headers read as GNU tar and Go write them', async () => {
  // Numbers padded with spaces and NULs, a negative base-256 mtime, a directory whose size field is not 0.
  const negative = Buffer.alloc(12, 0xff);
  negative[11] = 0xfe; // -2
  const entries = await readAll(
    Buffer.concat([
      ...file('a', 'hello', [[100, ' 000644 '], [136, negative]]),
      block([[0, 'd/'], [100, '0000755\0'], [124, '00000001000\0'], [156, '5']]),
      ...file('b', 'after'),
      END_OF_ARCHIVE,
    ]),
  );
  assert.deepEqual(entries, [
    { name: 'a', size: 5, mtime: -2, type: 'file', data: 'hello' },
    // Go's archive/tar: directories carry no data, whatever their size field says.
    { name: 'd', size: 0, mtime: 0, type: 'directory', data: '' },
    { name: 'b', size: 5, mtime: 0, type: 'file', data: 'after' },
  ]);
});

test('what encodeHeader writes (PAX for long names) still reads back', async () => {
  const name = `${'n'.repeat(150)}/é`;
  const h = encodeHeader({ name, type: 'file', mode: 0o644, uid: 70000000, gid: 0, size: 2, mtime: 2 ** 40, xattrs: new Map([['user.a', Buffer.from([0x80, 0])]]) });
  const entries = await readAll(Buffer.concat([h, Buffer.from('hi'), padding(2), END_OF_ARCHIVE]));
  assert.deepEqual(entries, [{ name, size: 2, mtime: 2 ** 40, type: 'file', data: 'hi' }]);
});
