import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UntrustedJsonError, parseUntrustedJson } from '../src/untrusted-json.js';

test('a JSON parse error names what was read and quotes none of it', () => {
  for (const text of ['root:*:20200:0:99999:7:::\n', '{"a": "PRIVATE-VALUE"', '[1, 2, PRIVATE]', '']) {
    assert.throws(
      () => parseUntrustedJson(text, 'OCI index /x/index.json'),
      (err: unknown) => err instanceof UntrustedJsonError && err.message === 'OCI index /x/index.json is not valid JSON' && err.cause === undefined,
    );
  }
  assert.deepEqual(parseUntrustedJson('{"a":[1]}', 'x'), { a: [1] });
});
