/**
 * The embedded base image: a minimal busybox image built from the host's static busybox binary
 * (Debian's busybox-static), so that demos and tests need no registry. The build is reproducible:
 * the same busybox binary always gives the same layer, config and manifest digests.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { RuntimeError, messageOf } from '../errors.js';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../store/tar.js';
import type { TarHeader } from '../store/tar.js';
import type { LayerInfo, LayerStoreApi, StoredImage } from '../store/types.js';
import { MEDIA_TYPES } from '../oci/types.js';
import type { Digest, ImageConfig } from '../oci/types.js';
import { DEFAULT_PATH_ENV, hostPlatform } from '../oci/platform.js';

/** Where Debian's busybox-static puts the binary. */
export const DEFAULT_BUSYBOX_PATH = '/bin/busybox';

/** The timestamp of every file and of the config: the epoch, so the image depends on the binary only. */
const EPOCH_ISO = '1970-01-01T00:00:00Z';

/** Options of {@link ensureBusyboxImage}. */
export interface BusyboxImageOptions {
  /** The tag the image gets in the store. @default 'busybox:latest' */
  readonly tag?: string;
  /** The static busybox binary to embed. @default '/bin/busybox' */
  readonly busyboxPath?: string;
  readonly signal?: AbortSignal;
}

/** sha256 of a file, streamed. */
async function hashFile(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, signal ? { signal } : {})) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The applet names `busybox --list` prints, sorted and without `busybox` itself. */
async function listApplets(busybox: string, signal?: AbortSignal): Promise<string[]> {
  const { execa } = await import('execa');
  const { stdout } = await execa(busybox, ['--list'], signal ? { cancelSignal: signal } : {});
  const names = new Set(stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '' && s !== 'busybox' && !s.includes('/')));
  return [...names].sort();
}

const dir = (name: string, mode = 0o755): TarHeader => ({ name, type: 'directory', mode, uid: 0, gid: 0, size: 0, mtime: 0 });
const file = (name: string, size: number, mode = 0o644): TarHeader => ({ name, type: 'file', mode, uid: 0, gid: 0, size, mtime: 0 });

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const GROUP = 'root:x:0:\nnobody:x:65534:\n';

/** The base image's single layer as a tar stream: fixed order, owners and mtimes. */
async function* busyboxLayerTar(busybox: string, size: number, applets: readonly string[], signal?: AbortSignal): AsyncGenerator<Buffer> {
  const small = (name: string, text: string): Buffer[] => {
    const data = Buffer.from(text);
    return [encodeHeader(file(name, data.length)), data, padding(data.length)];
  };
  yield encodeHeader(dir('bin'));
  yield encodeHeader(file('bin/busybox', size, 0o755));
  let written = 0;
  for await (const chunk of createReadStream(busybox, signal ? { signal } : {})) {
    written += (chunk as Buffer).length;
    yield chunk as Buffer;
  }
  if (written !== size) throw new RuntimeError(`${busybox} changed while it was being read`);
  yield padding(size);
  for (const applet of applets) {
    yield encodeHeader({ name: `bin/${applet}`, type: 'symlink', linkname: 'busybox', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 0 });
  }
  yield encodeHeader(dir('dev'));
  yield encodeHeader(dir('etc'));
  yield* small('etc/group', GROUP);
  yield* small('etc/passwd', PASSWD);
  yield encodeHeader(dir('proc'));
  yield encodeHeader(dir('root', 0o700));
  yield encodeHeader(dir('sbin'));
  yield encodeHeader(dir('sys'));
  yield encodeHeader(dir('tmp', 0o1777));
  yield encodeHeader(dir('usr'));
  yield encodeHeader(dir('usr/bin'));
  yield encodeHeader(dir('usr/sbin'));
  yield encodeHeader(dir('var'));
  yield END_OF_ARCHIVE;
}

/**
 * Makes sure the store has the embedded busybox base image under `tag` and returns it.
 * If the tag already names an image, that image is returned unchanged (a real busybox pulled or
 * imported earlier wins). Otherwise the image is built from the host's busybox binary, once per
 * binary (a cache record remembers the result), and tagged.
 *
 * The rootfs holds /bin/busybox, one symlink per applet in /bin, /etc/passwd (root, nobody 65534),
 * /etc/group, /tmp (1777), /root (700) and empty /dev /proc /sys /sbin /usr/bin /usr/sbin /var;
 * every timestamp is the epoch, so the digests depend on the binary only. Its layer is unpacked in the
 * store right away.
 */
export async function ensureBusyboxImage(store: LayerStoreApi, options: BusyboxImageOptions = {}): Promise<StoredImage> {
  const { tag = 'busybox:latest', busyboxPath = DEFAULT_BUSYBOX_PATH, signal } = options;
  const existing = await store.resolveTag(tag);
  if (existing !== undefined && (await store.hasBlob(existing))) return store.getImage(existing);

  let size: number;
  try {
    const st = await stat(busyboxPath);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (cause) {
    throw new RuntimeError(
      `the busybox base image needs a static busybox at ${busyboxPath} (${messageOf(cause)}); install it with \`apt-get install busybox-static\` or \`npm run bootstrap\``,
      { cause },
    );
  }
  const binaryHex = await hashFile(busyboxPath, signal);
  const cacheKey = `base-image-busybox-${binaryHex}`;

  return store.withLock('base-image-busybox', async () => {
    const cached = await store.getCache<{ manifestDigest: Digest }>(cacheKey);
    if (cached && (await store.hasBlob(cached.manifestDigest))) {
      const image = await store.getImage(cached.manifestDigest);
      if ((await Promise.all(image.manifest.layers.map((l) => store.hasBlob(l.digest)))).every(Boolean)) {
        await store.tag(tag, image.manifestDigest);
        return image;
      }
    }
    signal?.throwIfAborted();
    const applets = await listApplets(busyboxPath, signal);
    const blob = await store.writeBlob(busyboxLayerTar(busyboxPath, size, applets, signal), signal ? { signal } : {});
    const layer: LayerInfo = { diffId: blob.digest, digest: blob.digest, size: blob.size, mediaType: MEDIA_TYPES.ociLayer };
    await store.registerLayer(layer);
    const platform = hostPlatform();
    const config: ImageConfig = {
      created: EPOCH_ISO,
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
      config: { Env: [DEFAULT_PATH_ENV], Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
      history: [{ created: EPOCH_ISO, created_by: `kiln: busybox base image (busybox sha256:${binaryHex})`, comment: 'kiln embedded base image' }],
    };
    const image = await store.putImage(config, [layer]);
    // Unpacked now, as `docker pull` does, rather than by the first RUN step that uses the image: a base
    // image is kept for many builds, and its unpacking (~0.2 s) belongs to making it, not to a build.
    await store.unpackedLayer(layer.diffId, signal ? { signal } : {});
    await store.putCache(cacheKey, { manifestDigest: image.manifestDigest });
    await store.tag(tag, image.manifestDigest);
    return image;
  });
}
