#!/usr/bin/env node
// Compiles native/kiln_sys.c (mount, umount2, mknod, xattr, posix_spawn and tree-scan syscalls for Node) into
// build/native/kiln_sys.node with the system C compiler and the headers that ship with Node, and
// native/crun-launch.c into build/native/kiln-crun-launch.
// No node-gyp: it would download headers, and these machines only reach the npm registry.
//
// Runs on `npm ci`/`npm install` (the package's install script), before tests and builds. It never
// fails the install: without a compiler or headers kiln uses the `mount`/`getfattr`/`setfattr`
// commands instead (src/native/sys.ts), which is slower but equivalent. `--required` makes a failure
// fatal (CI uses it so that a broken addon cannot hide behind the fallback).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'kiln_sys.c');
const out = join(root, 'build', 'native', 'kiln_sys.node');
const launcherSource = join(root, 'native', 'crun-launch.c');
const launcher = join(root, 'build', 'native', 'kiln-crun-launch');
const required = process.argv.includes('--required');

function give_up(why) {
  const message = `kiln: native helpers not built (${why}); using the mount/getfattr/setfattr commands instead`;
  console.error(message);
  process.exit(required ? 1 : 0);
}

if (process.platform !== 'linux') give_up('not Linux');
const newest = Math.max(...[source, launcherSource, fileURLToPath(import.meta.url)].map((f) => statSync(f).mtimeMs));
if (existsSync(out) && existsSync(launcher) && statSync(out).mtimeMs >= newest) process.exit(0);

const includeDirs = [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/include/nodejs'];
const include = includeDirs.find((d) => existsSync(join(d, 'node_api.h')));
if (include === undefined) give_up(`node_api.h not found in ${includeDirs.join(', ')}`);

const cc = process.env.CC || 'cc';
mkdirSync(dirname(out), { recursive: true });
/** Compiles into a temp file and renames it into place, so a half-written binary is never picked up. */
function compile(target, args) {
  const tmp = `${target}.${process.pid}.tmp`;
  const r = spawnSync(cc, [...args, '-o', tmp], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) give_up(`${cc}: ${r.error.message}`);
  if (r.status !== 0) give_up(`${cc} exited with ${r.status}`);
  renameSync(tmp, target);
}
// The launcher first: the addon's presence is what says "all built".
compile(launcher, ['-O2', '-std=gnu11', '-Wall', '-Werror', launcherSource]);
compile(out, ['-O2', '-std=gnu11', '-Wall', '-Werror', '-fPIC', '-shared', '-pthread', `-I${include}`, source]);
