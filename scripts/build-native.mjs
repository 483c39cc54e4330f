#!/usr/bin/env node
// Compiles native/kiln_sys.c (mount, umount2, mknod, xattr, posix_spawn and tree-scan syscalls for Node) into
// build/native/kiln_sys.node with the system C compiler and the headers that ship with Node,
// native/crun-launch.c into build/native/kiln-crun-launch, native/run-guard.c into build/native/kiln-run-guard, and, when libdeflate's headers are installed
// (Debian: libdeflate-dev), native/kiln_deflate.c into build/native/kiln_deflate.node (gzip of layers), and, when
// libcrypto's headers are installed (Debian: libssl-dev), native/kiln_sha256.c into build/native/kiln_sha256.node.
// No node-gyp: it would download headers, and these machines only reach the npm registry.
//
// Runs on `npm ci`/`npm install` (the package's install script), before tests and builds. It never
// fails the install: without a compiler or headers kiln uses the `mount`/`getfattr`/`setfattr`
// commands instead (src/native/sys.ts), which is slower but equivalent, and without libdeflate it gzips
// with node:zlib (src/native/deflate.ts). `--required` makes any of these failures fatal (CI uses it so
// that a broken addon cannot hide behind the fallback).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native', 'kiln_sys.c');
const out = join(root, 'build', 'native', 'kiln_sys.node');
const launcherSource = join(root, 'native', 'crun-launch.c');
const launcher = join(root, 'build', 'native', 'kiln-crun-launch');
const guardSource = join(root, 'native', 'run-guard.c');
const launchStepsHeader = join(root, 'native', 'crun-launch-steps.h');
const guard = join(root, 'build', 'native', 'kiln-run-guard');
const deflateSource = join(root, 'native', 'kiln_deflate.c');
const deflateOut = join(root, 'build', 'native', 'kiln_deflate.node');
const libdeflateHeader = '/usr/include/libdeflate.h';
const sha256Source = join(root, 'native', 'kiln_sha256.c');
const sha256Out = join(root, 'build', 'native', 'kiln_sha256.node');
const libcryptoHeader = '/usr/include/openssl/evp.h';
const required = process.argv.includes('--required');
const script = fileURLToPath(import.meta.url);

const SYS_FALLBACK = 'native helpers not built (%s); using the mount/getfattr/setfattr commands instead';
const DEFLATE_FALLBACK = 'libdeflate addon not built (%s); layers are gzipped with node:zlib instead';
const SHA256_FALLBACK = 'libcrypto addon not built (%s); layers are hashed with node:crypto instead';
let failed = false;

/** Prints why an artefact was not built; the process still exits 0 unless `--required`. */
function skip(template, why) {
  console.error(`kiln: ${template.replace('%s', why)}`);
  failed = true;
}

/** Whether `target` exists and is newer than all of `sources` (and this script). */
function upToDate(target, sources) {
  const newest = Math.max(...[...sources, script].map((f) => statSync(f).mtimeMs));
  return existsSync(target) && statSync(target).mtimeMs >= newest;
}

const cc = process.env.CC || 'cc';
/**
 * Compiles into a temp file and renames it into place, so a half-written binary is never picked up.
 * Returns the reason of a failure, or undefined.
 */
function compile(target, args) {
  const tmp = `${target}.${process.pid}.tmp`;
  const r = spawnSync(cc, [...args, '-o', tmp], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) return `${cc}: ${r.error.message}`;
  if (r.status !== 0) return `${cc} exited with ${r.status}`;
  renameSync(tmp, target);
  return undefined;
}

function build() {
  if (process.platform !== 'linux') {
    skip(SYS_FALLBACK, 'not Linux');
    skip(DEFLATE_FALLBACK, 'not Linux');
    skip(SHA256_FALLBACK, 'not Linux');
    return;
  }
  const sysDone = upToDate(out, [source, launcherSource, guardSource, launchStepsHeader]) && existsSync(launcher) && existsSync(guard);
  const deflateDone = !existsSync(libdeflateHeader) || upToDate(deflateOut, [deflateSource]);
  const sha256Done = !existsSync(libcryptoHeader) || upToDate(sha256Out, [sha256Source]);
  if (sysDone && deflateDone && existsSync(deflateOut) && sha256Done && existsSync(sha256Out)) return;

  const includeDirs = [join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/include/nodejs'];
  const include = includeDirs.find((d) => existsSync(join(d, 'node_api.h')));
  if (include === undefined) {
    const why = `node_api.h not found in ${includeDirs.join(', ')}`;
    skip(SYS_FALLBACK, why);
    skip(DEFLATE_FALLBACK, why);
    skip(SHA256_FALLBACK, why);
    return;
  }
  mkdirSync(dirname(out), { recursive: true });

  if (!sysDone) {
    // The launcher and the guard first: the addon's presence is what says "all built".
    const why =
      compile(launcher, ['-O2', '-std=gnu11', '-Wall', '-Werror', launcherSource]) ??
      compile(guard, ['-O2', '-std=gnu11', '-Wall', '-Werror', guardSource]) ??
      compile(out, ['-O2', '-std=gnu11', '-Wall', '-Werror', '-fPIC', '-shared', '-pthread', `-I${include}`, source]);
    if (why !== undefined) skip(SYS_FALLBACK, why);
  }

  // Separate from kiln_sys.node, so that a machine without libdeflate still gets the syscall addon.
  if (!existsSync(libdeflateHeader)) skip(DEFLATE_FALLBACK, `${libdeflateHeader} not found; install libdeflate-dev`);
  else if (!deflateDone || !existsSync(deflateOut)) {
    const why = compile(deflateOut, ['-O2', '-std=gnu11', '-Wall', '-Werror', '-fPIC', '-shared', '-pthread', `-I${include}`, deflateSource, '-ldeflate']);
    if (why !== undefined) skip(DEFLATE_FALLBACK, why);
  }

  // The system's libcrypto hashes layers with the CPU's SHA extensions (native/kiln_sha256.c says why).
  if (!existsSync(libcryptoHeader)) skip(SHA256_FALLBACK, `${libcryptoHeader} not found; install libssl-dev`);
  else if (!sha256Done || !existsSync(sha256Out)) {
    const why = compile(sha256Out, ['-O2', '-std=gnu11', '-Wall', '-Werror', '-fPIC', '-shared', '-pthread', `-I${include}`, sha256Source, '-lcrypto']);
    if (why !== undefined) skip(SHA256_FALLBACK, why);
  }
}

build();
process.exit(required && failed ? 1 : 0);
