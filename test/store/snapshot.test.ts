import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Digest } from '../../src/oci/types.js';
import { extractLayer } from '../../src/store/extract.js';
import { LayerStore } from '../../src/store/layer-store.js';
import { snapshotDirectory } from '../../src/store/snapshot.js';
import { readTar } from '../../src/store/tar.js';
import type { LayerInfo } from '../../src/store/types.js';

// A capability set with a byte >= 0x80 (cap_setuid), to prove binary xattr values survive.
const CAP = '0x0100000280000000000000000000000000000000';

let work: string;
let store: LayerStore;
const mounts: string[] = [];
before(async () => {
  work = await fs.mkdtemp(path.join(tmpdir(), 'kiln-snap-'));
  store = await LayerStore.open(path.join(work, 'store'));
});
after(async () => {
  for (const m of mounts) execFileSync('umount', [m]);
  await fs.rm(work, { recursive: true, force: true });
});

interface Node { type: string; mode: number; size: number; hash?: string; link?: string; cap?: string; mtime?: number }

/** Walks a tree into a comparable description (type, mode, size, content hash, link target, capability). */
async function describe(root: string): Promise<Record<string, Node>> {
  const out: Record<string, Node> = {};
  async function walk(dir: string, rel: string): Promise<void> {
    for (const name of (await fs.readdir(dir)).sort()) {
      const abs = path.join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await fs.lstat(abs);
      const node: Node = { type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : 'other', mode: st.mode & 0o7777, size: st.isFile() ? st.size : 0 };
      if (st.isFile()) {
        node.hash = createHash('sha256').update(await fs.readFile(abs)).digest('hex');
        node.mtime = Math.floor(st.mtimeMs / 1000);
        try {
          node.cap = execFileSync('getfattr', ['--only-values', '-e', 'hex', '-n', 'security.capability', abs], { stdio: ['ignore', 'pipe', 'ignore'] }).toString('hex');
        } catch {
          /* no capability */
        }
      }
      if (st.isSymbolicLink()) node.link = await fs.readlink(abs);
      out[r] = node;
      if (st.isDirectory()) await walk(abs, r);
    }
  }
  await walk(root, '');
  return out;
}

const sh = (script: string, cwd: string): void => {
  execFileSync('sh', ['-ec', script], { cwd });
};

/** Builds lower + an overlay over it, applies changes in the merged dir, returns the dirs. */
async function overlayScenario(name: string): Promise<{ lower: string; upper: string; merged: string }> {
  const base = path.join(work, name);
  const [lower, upper, ovlWork, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => path.join(base, d)) as [string, string, string, string];
  for (const d of [lower, upper, ovlWork, merged]) await fs.mkdir(d, { recursive: true });
  sh(
    `mkdir -p etc/conf.d usr/lib/old/deep keep
     echo hello > etc/hostname; echo a=1 > etc/conf.d/a; echo b=2 > etc/conf.d/b
     echo old > usr/lib/old/x; echo deeper > usr/lib/old/deep/y
     echo gone > etc/gone; echo mode > keep/mode.sh; echo same > keep/untouched
     echo linked > keep/l1; ln keep/l1 keep/l2
     ln -s hostname etc/link-to-hostname`,
    lower,
  );
  execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${ovlWork}`, merged]);
  mounts.push(merged);
  sh(
    `echo more >> etc/hostname
     rm etc/gone etc/conf.d/b
     rm -rf usr/lib/old && mkdir usr/lib/old && echo new > usr/lib/old/z
     chmod 0754 keep/mode.sh
     ln -sf /etc/conf.d/a etc/link-to-a
     mkdir -p opt/app/bin && echo bin > opt/app/bin/tool && chmod 4755 opt/app/bin/tool
     ln opt/app/bin/tool opt/app/bin/tool-alias
     echo cap > opt/app/capped && setfattr -n security.capability -v ${CAP} opt/app/capped
     mkfifo opt/app/pipe
     rm -f etc/link-to-hostname && ln -s conf.d etc/link-to-hostname
     mkdir -p "opt/a long name $(printf 'x%.0s' $(seq 1 120))" && echo long > "opt/a long name $(printf 'x%.0s' $(seq 1 120))/f"`,
    merged,
  );
  return { lower, upper, merged };
}

test('an overlay upperdir snapshot applied onto the lower tree reproduces the merged tree', async () => {
  const { lower, upper, merged } = await overlayScenario('roundtrip');
  const layer = await snapshotDirectory(upper, store);
  assert.equal(layer.digest, layer.diffId);
  assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar');

  // The tar holds OCI whiteouts: a file whiteout, an opaque marker, and the hardlink as a link entry.
  const names = new Map<string, string>();
  for await (const e of readTar(store.openBlob(layer.digest))) names.set(e.header.name, e.header.type);
  assert.equal(names.get('etc/.wh.gone'), 'file');
  assert.equal(names.get('etc/conf.d/.wh.b'), 'file');
  assert.equal(names.get('usr/lib/old/.wh..wh..opq'), 'file');
  assert.equal([...names.values()].filter((t) => t === 'link').length, 1);
  assert.ok(![...names.keys()].some((n) => n.startsWith('keep/untouched')));

  const applied = path.join(work, 'roundtrip', 'applied');
  execFileSync('cp', ['-a', lower, applied]);
  await extractLayer(store.openBlob(layer.digest), applied, { mode: 'apply' });
  const want = await describe(merged);
  assert.equal(want['opt/app/capped']?.cap, CAP.slice(2));
  assert.equal(want['opt/app/pipe']?.type, 'fifo');
  assert.deepEqual(await describe(applied), want);
  const [a, b] = await Promise.all(['tool', 'tool-alias'].map((f) => fs.stat(path.join(applied, 'opt/app/bin', f))));
  assert.equal(a?.ino, b?.ino);
});

test('the same tree snapshots to the same digest, and SOURCE_DATE_EPOCH clamps mtimes', async () => {
  const dir = path.join(work, 'determinism');
  await fs.mkdir(path.join(dir, 'sub'), { recursive: true });
  await fs.writeFile(path.join(dir, 'sub', 'b'), 'b');
  await fs.writeFile(path.join(dir, 'a'), 'a');
  const first = await snapshotDirectory(dir, store);
  const second = await snapshotDirectory(dir, store);
  assert.equal(first.digest, second.digest);

  const epoch = 1_000_000;
  const clamped = await snapshotDirectory(dir, store, { sourceDateEpoch: epoch });
  assert.notEqual(clamped.digest, first.digest);
  for await (const e of readTar(store.openBlob(clamped.digest))) {
    assert.equal(e.header.mtime, epoch);
    assert.equal(e.header.uid, 0);
  }
  // Touching files (newer mtimes, all after the epoch) does not change the clamped layer.
  await fs.utimes(path.join(dir, 'a'), new Date(), new Date(Date.now() + 5000));
  assert.equal((await snapshotDirectory(dir, store, { sourceDateEpoch: epoch })).digest, clamped.digest);
});

test('umoci unpacks an image of snapshotted layers (one gzip-compressed) to the merged tree', async () => {
  const { lower, upper, merged } = await overlayScenario('umoci');
  const base = await snapshotDirectory(lower, store);
  const top = await snapshotDirectory(upper, store);
  const topGz = await store.compressLayer(top.diffId, 'gzip');
  const layout = path.join(work, 'umoci', 'layout');
  await writeOciLayout(layout, store, [base, topGz], 'v1');
  const bundle = path.join(work, 'umoci', 'bundle');
  execFileSync('umoci', ['unpack', '--image', `${layout}:v1`, bundle], { stdio: ['ignore', 'ignore', 'pipe'] });
  assert.deepEqual(await describe(path.join(bundle, 'rootfs')), await describe(merged));
});

/** A minimal OCI image layout holding `layers` (blobs copied from the store) under tag `tag`. */
async function writeOciLayout(dir: string, from: LayerStore, layers: LayerInfo[], tag: string): Promise<void> {
  const blobs = path.join(dir, 'blobs', 'sha256');
  await fs.mkdir(blobs, { recursive: true });
  const put = async (data: Buffer): Promise<{ digest: Digest; size: number }> => {
    const digest: Digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    await fs.writeFile(path.join(blobs, digest.slice(7)), data);
    return { digest, size: data.length };
  };
  for (const l of layers) await fs.copyFile(from.blobPath(l.digest), path.join(blobs, l.digest.slice(7)));
  const config = await put(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } })));
  const manifest = await put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      }),
    ),
  );
  await fs.writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(
    path.join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }] }),
  );
}

test('an unpacked layer carries overlay whiteouts and opaque markers for use as a lowerdir', async () => {
  const { upper } = await overlayScenario('unpack');
  const layer = await snapshotDirectory(upper, store);
  const rootfs = await store.unpackedLayer(layer.diffId);
  const wh = await fs.lstat(path.join(rootfs, 'etc', 'gone'));
  assert.ok(wh.isCharacterDevice());
  assert.equal(wh.rdev, 0);
  const opaque = execFileSync('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', path.join(rootfs, 'usr/lib/old')]).toString();
  assert.equal(opaque, 'y');
  // Re-snapshotting the unpacked layer gives the very same layer back.
  assert.equal((await snapshotDirectory(rootfs, store)).digest, layer.digest);
});

test('entries are ordered by the bytes of their UTF-8 names, as Go orders strings', async () => {
  // U+FFFD is EF BF BD and U+1F600 is F0 9F 98 80, so bytewise U+FFFD comes first; JS's `<` on UTF-16
  // units (FFFD against the surrogate D83D) would order them the other way. "Z" < "a" < "é" either way.
  const dir = path.join(work, 'order');
  await fs.mkdir(dir);
  for (const name of ['\u{1F600}', '\uFFFD', 'a', 'Z', 'é']) await fs.writeFile(path.join(dir, name), name);
  const layer = await snapshotDirectory(dir, store);
  const names: string[] = [];
  for await (const e of readTar(store.openBlob(layer.digest))) names.push(e.header.name);
  assert.deepEqual(names, ['Z', 'a', 'é', '\uFFFD', '\u{1F600}']);
});

test('a tree with files bigger than a read chunk gives the same diffID hashed alone as written as a blob', async () => {
  const dir = path.join(work, 'big-files');
  await fs.mkdir(dir);
  // Sizes around the 2 MiB chunk: the hash-only path reads them into reused buffers, the blob path does not.
  const sizes = [2 * 1024 * 1024, 2 * 1024 * 1024 + 1, 5 * 1024 * 1024 + 777];
  for (const [i, size] of sizes.entries()) await fs.writeFile(path.join(dir, `f${i}`), Buffer.alloc(size, i + 1));
  const hashed = await snapshotDirectory(dir, store, { blob: false });
  const written = await snapshotDirectory(dir, store);
  assert.equal(hashed.diffId, written.diffId);
  const blob = await fs.readFile(store.blobPath(written.diffId));
  assert.equal(`sha256:${createHash('sha256').update(blob).digest('hex')}`, hashed.diffId);
  const fileSizes: number[] = [];
  for await (const e of readTar(store.openBlob(written.diffId))) {
    let n = 0;
    for await (const chunk of e.body) n += chunk.length;
    if (e.header.type === 'file') fileSizes.push(n);
  }
  assert.deepEqual(fileSizes, sizes);
});

test('an empty directory, nested or not, is an entry of its own in the layer', async () => {
  const dir = path.join(work, 'empty-dirs');
  await fs.mkdir(path.join(dir, 'a', 'empty'), { recursive: true });
  await fs.mkdir(path.join(dir, 'top-empty'));
  const layer = await snapshotDirectory(dir, store);
  const names: string[] = [];
  for await (const e of readTar(store.openBlob(layer.digest))) {
    names.push(`${e.header.type} ${e.header.name}`);
    for await (const _ of e.body) void _;
  }
  assert.deepEqual(names, ['directory a', 'directory a/empty', 'directory top-empty']);
});
