'use strict';
/**
 * bin/kiln's entry: runs the bundled CLI (cli.cjs, next to this file once scripts/bundle.mjs has copied it
 * to dist/cli/) with a V8 code cache, so that a `kiln build` does not compile the ~600 KB bundle's functions
 * again in every process. Measured here on a cached steps10 rebuild (30 runs each, medians): 191 → 178 ms.
 *
 * The cache is what V8 compiled during one successful `kiln build` (functions compile lazily, so a cache
 * made by `kiln --version` would hold little). It lives in a root-only directory, because compiled code is
 * code: whoever could write it would choose what kiln runs. As root that is /run/kiln (tmpfs, made 0700 by
 * the runtime probe too); otherwise $XDG_RUNTIME_DIR/kiln when that is set; else there is no cache. The file
 * name carries the bundle's size and mtime and Node's version, and V8 itself rejects data that does not
 * match the source or its own version and flags; a rejected cache is written again by the next build.
 */
const { closeSync, fchmodSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

/** How many caches of other bundles stay beside the current one (several kiln installs on one host). */
const KEEP_OTHER_CACHES = 3;

const file = path.join(__dirname, 'cli.cjs');
const source = readFileSync(file, 'utf8').replace(/^#!.*/, '');
const cacheFile = codeCacheFile(statSync(file));
let cachedData;
if (cacheFile !== undefined) {
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    // none yet
  }
}

const script = new vm.Script(Module.wrap(source), {
  filename: file,
  ...(cachedData === undefined ? {} : { cachedData }),
});

if (cacheFile !== undefined && (cachedData === undefined || script.cachedDataRejected === true) && process.argv[2] === 'build') {
  process.once('exit', (code) => {
    if (code === 0) writeCache(cacheFile, script.createCachedData());
  });
}

const cli = new Module(file, module);
cli.filename = file;
cli.paths = Module._nodeModulePaths(__dirname);
cli.loaded = true;
// The bundle loads npm packages (execa is ESM-only) and some built-ins with import(), through this function
// (scripts/bundle.mjs): an import() inside the vm.Script itself fails once its code comes from the cache (Node 20
// drops the script's dynamic-import callback then). Resolved from this directory, as the bundle's own would be.
cli.kilnImport = (specifier) => import(specifier);
script.runInThisContext().call(cli.exports, cli.exports, Module.createRequire(file), cli, file, __dirname);

/** The cache file for this bundle and Node, in a directory only we can write; undefined when there is none. */
function codeCacheFile(st) {
  const uid = process.getuid();
  const dir = uid === 0 ? '/run/kiln' : process.env.XDG_RUNTIME_DIR ? path.join(process.env.XDG_RUNTIME_DIR, 'kiln') : undefined;
  if (dir === undefined) return undefined;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const d = statSync(dir);
    // Someone else's directory, or one others can write: no cache.
    if (d.uid !== uid || (d.mode & 0o022) !== 0) return undefined;
  } catch {
    return undefined;
  }
  return path.join(dir, `cli-${st.size}-${Math.trunc(st.mtimeMs)}-${process.version}-${process.arch}.v8cache`);
}

function writeCache(target, data) {
  const tmp = `${target}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      fchmodSync(fd, 0o600);
      writeSync(fd, data);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
  } catch {
    // Uncached: the next build tries again.
    return;
  }
  // Other bundles' caches (older kiln versions, other installs): the newest few stay.
  try {
    const dir = path.dirname(target);
    const others = readdirSync(dir)
      .filter((n) => /^cli-.*\.v8cache$/.test(n) && n !== path.basename(target))
      .map((n) => ({ n, t: statSync(path.join(dir, n)).mtimeMs }))
      .sort((a, b) => b.t - a.t);
    for (const { n } of others.slice(KEEP_OTHER_CACHES)) rmSync(path.join(dir, n), { force: true });
  } catch {
    // a concurrent writer removed one first
  }
}
