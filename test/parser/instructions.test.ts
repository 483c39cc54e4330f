import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DockerfileError } from '../../src/errors.js';
import { parse } from '../../src/parser/index.js';
import { parseDuration, parseMount, type Instruction } from '../../src/parser/instructions.js';
import { parsePort } from '../../src/parser/ports.js';
import { suggest } from '../../src/parser/suggest.js';

/** The typed instructions of a Dockerfile. */
function typed(text: string): Instruction[] {
  return [...parse(text).instructions];
}

function only<K extends Instruction['kind']>(text: string, kind: K): Extract<Instruction, { kind: K }> {
  const ins = typed(text).find((i) => i.kind === kind);
  assert.ok(ins, `no ${kind} instruction`);
  return ins as Extract<Instruction, { kind: K }>;
}

test('FROM keeps the image unexpanded and lower-cases the stage name', () => {
  const from = only('FROM --platform=$BUILDPLATFORM golang:${GO} AS Builder', 'from');
  assert.equal(from.image, 'golang:${GO}');
  assert.equal(from.name, 'builder');
  assert.equal(from.platform, '$BUILDPLATFORM');
});

test('FROM with a stage name that starts with a digit is rejected with the written name', () => {
  assert.throws(() => typed('FROM alpine AS 1st'), {
    message: 'invalid name for build stage: "1st", name can\'t start with a number or contain symbols',
  });
  assert.throws(() => typed('FROM alpine AS'), { message: 'FROM requires either one or three arguments' });
});

test('COPY reads its flags, sources and destination', () => {
  const copy = only('FROM a\nCOPY --from=build --chown=1:2 --chmod=644 --link --exclude=*.md --exclude=.git src/ lib/ /app/', 'copy');
  assert.equal(copy.from, 'build');
  assert.equal(copy.chown, '1:2');
  assert.equal(copy.chmod, '644');
  assert.equal(copy.link, true);
  assert.equal(copy.parents, false);
  assert.deepEqual(copy.excludes, ['*.md', '.git']);
  assert.deepEqual(copy.sources, ['src/', 'lib/']);
  assert.equal(copy.dest, '/app/');
});

test('ADD knows --checksum and --keep-git-dir but COPY-only --from is an unknown flag', () => {
  const add = only('FROM a\nADD --checksum=sha256:abc --keep-git-dir https://x/y.tgz /y', 'add');
  assert.equal(add.checksum, 'sha256:abc');
  assert.equal(add.keepGitDir, true);
  assert.equal(add.unpack, undefined);
  assert.equal(only('FROM a\nADD --unpack=false x.tgz /y', 'add').unpack, false);
  assert.throws(() => typed('FROM a\nADD --from=b x /y'), /unknown flag: --from/);
});

test('RUN --mount values become typed mounts with BuildKit read-only defaults', () => {
  const run = only('FROM a\nRUN --mount=type=cache,target=/root/.cache,sharing=locked,id=go --mount=source=x,target=/x make', 'run');
  assert.deepEqual(run.command, { form: 'shell', script: 'make' });
  const [cache, bind] = run.mounts;
  assert.ok(cache?.type === 'cache');
  assert.equal(cache.sharing, 'locked');
  assert.equal(cache.readOnly, false);
  assert.ok(bind?.type === 'bind');
  assert.equal(bind.readOnly, true);
  assert.deepEqual(run.flagsUsed, ['mount']);
});

test('a misspelt mount key or type is rejected with a suggestion', () => {
  assert.throws(() => parseMount('typ=tmpfs'), { message: "unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)" });
  assert.throws(() => parseMount('type=tmp'), { message: 'unsupported mount type "tmp" (did you mean tmpfs?)' });
});

test('mount options that do not fit the mount type are rejected', () => {
  assert.throws(() => parseMount('type=bind,size=10m'), { message: "unexpected key 'size' for mount type 'bind'" });
  assert.throws(() => parseMount('type=tmpfs,target=/t,mode=0700'), { message: 'mode not allowed for "tmpfs" type mounts' });
  assert.throws(() => parseMount('type=bind,sharing=locked'), { message: 'invalid cache sharing set for bind mount' });
  assert.throws(() => parseMount('type=secret,id=a,source=b'), { message: "both source and id can't be set" });
  const tmpfs = parseMount('type=tmpfs,target=/t,size=64m');
  assert.ok(tmpfs.type === 'tmpfs');
  assert.equal(tmpfs.sizeLimit, 64 * 1024 * 1024);
  const cache = parseMount('type=cache,target=/c,mode=0755');
  assert.ok(cache.type === 'cache');
  assert.equal(cache.mode, 0o755);
});

test('a variable in a mount is left for the builder, except in from', () => {
  const m = parseMount('type=cache,target=$HOME/.cache');
  assert.equal(m.needsExpansion, true);
  assert.equal(m.target, '$HOME/.cache');
  assert.equal(parseMount('type=cache,target=$HOME/.cache', (w) => w.replace('$HOME', '/root')).target, '/root/.cache');
  assert.throws(() => parseMount('from=$STAGE'), { message: "'from' doesn't support variable expansion, define alias stage instead" });
});

test('RUN --network accepts default, none and host only', () => {
  assert.equal(only('FROM a\nRUN --network=none true', 'run').network, 'none');
  assert.throws(() => typed('FROM a\nRUN --network=bridge true'), { message: 'invalid network mode "bridge"' });
});

test('exec form and heredocs are carried on RUN without chomping', () => {
  assert.deepEqual(only('FROM a\nRUN ["ls", "-l"]', 'run').command, { form: 'exec', argv: ['ls', '-l'] });
  const run = only('FROM a\nRUN <<-EOF\n\techo hi\nEOF\n', 'run');
  assert.deepEqual(run.heredocs.map((h) => [h.name, h.data, h.chomp]), [['EOF', '\techo hi\n', true]]);
});

test('a COPY heredoc becomes inline content, chomped for <<-', () => {
  const copy = only('FROM a\nCOPY <<-EOF /etc/motd\n\thello\nEOF\n', 'copy');
  assert.deepEqual(copy.contents, [{ path: 'EOF', data: 'hello\n', expand: true }]);
  assert.deepEqual(copy.sources, []);
});

test('HEALTHCHECK reads Go durations and rejects a negative retry count', () => {
  const hc = only('FROM a\nHEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD curl -f http://localhost/', 'healthcheck');
  assert.equal(hc.check.type, 'cmd');
  if (hc.check.type === 'cmd') {
    assert.equal(hc.check.interval, 90e9);
    assert.equal(hc.check.timeout, 500e6);
    assert.equal(hc.check.retries, 3);
    assert.deepEqual(hc.check.test, ['CMD-SHELL', 'curl -f http://localhost/']);
  }
  assert.deepEqual(only('FROM a\nHEALTHCHECK NONE', 'healthcheck').check, { type: 'none' });
  assert.throws(() => typed('FROM a\nHEALTHCHECK --retries=-1 CMD true'), { message: '--retries cannot be negative (-1)' });
  assert.throws(() => typed('FROM a\nHEALTHCHECK --interval=10us CMD true'), { message: 'Interval "interval" cannot be less than 1ms' });
  assert.throws(() => typed('FROM a\nHEALTHCHECK CMDX true'), { message: 'Unknown type "CMDX" in HEALTHCHECK (try CMD)' });
});

test('Go duration syntax is parsed to nanoseconds', () => {
  assert.equal(parseDuration('1.5h'), 1.5 * 3600e9);
  assert.equal(parseDuration('-2ms'), -2e6);
  assert.equal(parseDuration('0'), 0);
  assert.throws(() => parseDuration('10'), { message: 'time: missing unit in duration "10"' });
  assert.throws(() => parseDuration('5d'), { message: 'time: unknown unit "d" in duration "5d"' });
});

test('ENV and LABEL become key-value pairs and ARG keeps optional defaults with doc comments', () => {
  assert.deepEqual(only('FROM a\nENV A=1 B="two words"', 'env').pairs.map((p) => [p.key, p.value]), [['A', '1'], ['B', '"two words"']]);
  assert.equal(only('FROM a\nENV PATH /usr/bin', 'env').pairs[0]?.noDelim, true);
  const arg = only('# VERSION picks the release\nARG VERSION=1.0 OTHER', 'arg');
  assert.deepEqual(arg.args, [{ key: 'VERSION', docComment: 'picks the release', value: '1.0' }, { key: 'OTHER', docComment: '' }]);
});

test('SHELL must be written as a JSON array', () => {
  assert.deepEqual(only('FROM a\nSHELL ["/bin/bash", "-c"]', 'shell').shell, ['/bin/bash', '-c']);
  assert.throws(() => typed('FROM a\nSHELL /bin/bash -c'), { message: 'SHELL requires the arguments to be in JSON form' });
});

test('ONBUILD types its trigger and keeps the trigger text, but refuses FROM, MAINTAINER and ONBUILD', () => {
  const ob = only('FROM a\nONBUILD COPY --chown=1 . /src', 'onbuild');
  assert.equal(ob.trigger.kind, 'copy');
  assert.equal(ob.expression, 'COPY --chown=1 . /src');
  assert.throws(() => typed('ONBUILD MAINTAINER me'), { message: "MAINTAINER isn't allowed as an ONBUILD trigger" });
  assert.throws(() => typed('ONBUILD onbuild RUN x'), { message: 'Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed' });
});

test('an unknown instruction is reported as written, with a suggestion only when one is close', () => {
  assert.throws(() => typed('FROM a\nworkdri /x'), { message: 'unknown instruction: workdri (did you mean WORKDIR?)' });
  assert.throws(() => typed('FROM a\nXYZZYQUUX /x'), { message: 'unknown instruction: XYZZYQUUX' });
});

test('an instruction error is a DockerfileError at the instruction line', () => {
  const err = (() => {
    try {
      parse('FROM a\nRUN true\nEXPOSE\n', { file: 'build/Dockerfile' });
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof DockerfileError);
  assert.equal(err.message, 'EXPOSE requires at least one argument');
  assert.equal(err.file, 'build/Dockerfile');
  assert.equal(err.range.start.line, 3);
});

test('EXPOSE specs give the container ports and reject a host name as IP', () => {
  assert.deepEqual(parsePort('8080-8081/UDP'), ['8080/udp', '8081/udp']);
  assert.deepEqual(parsePort('127.0.0.1:80:8080'), ['8080/tcp']);
  assert.throws(() => parsePort('localhost:80:80'), { message: 'invalid port: "localhost:80:80": invalid IP address: localhost' });
  assert.throws(() => parsePort('80/icmp'), /invalid proto: icmp/);
  assert.throws(() => parsePort('1-3:5-6'), /invalid ranges specified/);
  assert.deepEqual(parsePort('8000-8010:80'), ['80/tcp']);
});

test('suggestions ignore case, prefer the closest candidate and never echo an exact match', () => {
  assert.equal(suggest('COPPY', ['COPY', 'CMD']), 'COPY');
  assert.equal(suggest('copy', ['COPY']), undefined);
  assert.equal(suggest('bulid', ['build', 'base']), 'build');
  assert.equal(suggest('q', ['from', 'copy']), undefined);
});
