import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCacheFromSpec, parseCacheToSpec, parseSshSpec } from '../../src/cli/specs.js';

/** The CLI's csv splitting, as `kiln build` applies it before the spec parsers. */
function fields(spec: string): Record<string, string> {
  return Object.fromEntries(spec.split(',').map((p) => (p.includes('=') ? [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)] : [p, ''])));
}

test('--cache-from accepts type=registry,ref=REF and a bare reference', () => {
  assert.deepEqual(parseCacheFromSpec(fields('type=registry,ref=127.0.0.1:5000/app:cache')), { type: 'registry', ref: '127.0.0.1:5000/app:cache' });
  assert.deepEqual(parseCacheFromSpec(fields('127.0.0.1:5000/app:cache')), { type: 'registry', ref: '127.0.0.1:5000/app:cache' });
  assert.throws(() => parseCacheFromSpec(fields('type=local,src=dir')), /unsupported --cache-from type: local/);
  assert.throws(() => parseCacheFromSpec(fields('type=registry')), /needs ref=REF/);
});

test('--cache-to reads mode and cache-mounts, defaults to mode=min, and accepts type=inline', () => {
  assert.deepEqual(parseCacheToSpec(fields('type=registry,ref=h:1/r:c')), { type: 'registry', ref: 'h:1/r:c', mode: 'min' });
  assert.deepEqual(parseCacheToSpec(fields('type=registry,ref=h:1/r:c,mode=max,cache-mounts=true')), { type: 'registry', ref: 'h:1/r:c', mode: 'max', cacheMounts: true });
  assert.deepEqual(parseCacheToSpec(fields('type=inline')), { type: 'inline' });
  assert.throws(() => parseCacheToSpec(fields('type=registry,ref=h:1/r:c,mode=all')), /invalid --cache-to mode: all/);
  assert.throws(() => parseCacheToSpec(fields('type=gha')), /unsupported --cache-to type: gha/);
});

test('--ssh takes ID=SOCKET, or ID alone for $SSH_AUTH_SOCK, and refuses key lists', () => {
  assert.deepEqual(parseSshSpec(fields('default=/run/agent.sock'), {}), { id: 'default', socket: '/run/agent.sock' });
  assert.deepEqual(parseSshSpec(fields('default'), { SSH_AUTH_SOCK: '/tmp/ssh-x/agent.1' }), { id: 'default', socket: '/tmp/ssh-x/agent.1' });
  assert.deepEqual(parseSshSpec(fields('gitlab'), { SSH_AUTH_SOCK: '/s' }), { id: 'gitlab', socket: '/s' });
  assert.throws(() => parseSshSpec(fields('default'), {}), /SSH_AUTH_SOCK is not set/);
  assert.throws(() => parseSshSpec(fields('default=/k1,/k2'), {}), /does not load key files/);
});
