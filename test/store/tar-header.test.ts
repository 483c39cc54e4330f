import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeHeader, encodeHeaderInto, type TarHeader } from '../../src/store/tar.js';

const TYPES = ['file', 'link', 'symlink', 'char', 'block', 'directory', 'fifo'] as const;

/** Headers around every limit the fast path checks: name and link lengths, non-ASCII, octal field widths. */
const header = fc.record({
  name: fc.oneof(fc.stringMatching(/^[a-z0-9._/-]{1,120}$/), fc.string({ minLength: 1, maxLength: 30 }), fc.constant('a'.repeat(100)), fc.constant('é/x')),
  type: fc.constantFrom(...TYPES),
  mode: fc.integer({ min: 0, max: 0o177777 }),
  uid: fc.oneof(fc.integer({ min: 0, max: 0o7777777 }), fc.constant(0o10000000), fc.integer({ min: 0, max: 2 ** 32 - 1 })),
  gid: fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.constant(0o10000000)),
  size: fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.constant(0o77777777777), fc.constant(0o100000000000)),
  mtime: fc.oneof(fc.integer({ min: 0, max: 2 ** 33 }), fc.constant(0o77777777777)),
  linkname: fc.option(fc.oneof(fc.stringMatching(/^[a-z/.]{0,110}$/), fc.constant('ü')), { nil: undefined }),
  devmajor: fc.option(fc.integer({ min: 0, max: 0o7777777 }), { nil: undefined }),
  devminor: fc.option(fc.integer({ min: 0, max: 0o10000000 }), { nil: undefined }),
});

test('a header encoded into a slab has the same bytes as the reference encoder, fast path or not', () => {
  fc.assert(
    fc.property(header, (raw) => {
      const h = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)) as unknown as TarHeader;
      let reference: Buffer;
      try {
        reference = encodeHeader(h);
      } catch {
        return; // not encodable at all (e.g. a name with NUL): nothing to compare
      }
      const out = Buffer.alloc(reference.length + 700, 0xaa);
      const n = encodeHeaderInto(h, out, 7);
      assert.equal(n, reference.length);
      assert.deepEqual(out.subarray(7, 7 + n), reference);
    }),
    { numRuns: 3000 },
  );
});
