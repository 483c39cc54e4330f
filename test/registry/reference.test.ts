import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReference, isLoopback, parseReference } from '../../src/registry/reference.js';

const D = `sha256:${'ab'.repeat(32)}`;

test('references are normalised to their full form the way Docker names them', () => {
  const cases: Array<[string, string]> = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['user/app', 'docker.io/user/app:latest'],
    ['index.docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/a/b:v1', 'localhost:5000/a/b:v1'],
    ['127.0.0.1:5000/app', '127.0.0.1:5000/app:latest'],
    ['ghcr.io/org/img:tag', 'ghcr.io/org/img:tag'],
    ['[::1]:5000/app:x', '[::1]:5000/app:x'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    [`reg.example/app:v2@${D}`, `reg.example/app:v2@${D}`],
    ['my-reg/a__b/c-d.e:v', 'docker.io/my-reg/a__b/c-d.e:v'],
  ];
  for (const [input, full] of cases) assert.equal(formatReference(parseReference(input)), full, input);
});

test('malformed references are rejected with the reason', () => {
  assert.throws(() => parseReference('Busybox'), /must be lowercase/);
  assert.throws(() => parseReference('app@sha256:1234'), /bad digest/);
  assert.throws(() => parseReference('app:bad tag'), /invalid reference format/);
  assert.throws(() => parseReference('reg.example/'), /invalid reference format/);
  assert.throws(() => parseReference('a//b'), /invalid reference format/);
  assert.throws(() => parseReference(`${'a'.repeat(256)}`), /longer than 255/);
  assert.throws(() => parseReference('app:-x'), /bad tag/);
});

test('the first component is a registry only with a dot, a colon, localhost or an uppercase letter', () => {
  assert.equal(parseReference('foo/bar').registry, 'docker.io');
  assert.equal(parseReference('foo.bar/baz').registry, 'foo.bar');
  assert.equal(parseReference('foo:1/baz').registry, 'foo:1');
  assert.equal(parseReference('Foo/bar').registry, 'Foo');
});

test('loopback hosts are localhost, 127.0.0.0/8 and ::1, with or without a port', () => {
  for (const h of ['localhost', 'localhost:5000', '127.0.0.1', '127.1.2.3:80', '[::1]:5000', '::1']) assert.equal(isLoopback(h), true, h);
  for (const h of ['10.0.0.1:5000', '128.0.0.1', 'example.com', '127.0.0.256', '[::2]:5000', 'localhost.example.com']) assert.equal(isLoopback(h), false, h);
});
