/**
 * The image's final filesystem as one tar stream (the `local` and `tar` exporters' source): every layer read,
 * whiteouts applied.
 */
import { RuntimeError } from '../errors.js';
import type { Digest } from '../oci/types.js';
import { END_OF_ARCHIVE, encodeHeader, padding, readTar } from '../store/tar.js';
import type { TarHeader } from '../store/tar.js';
import type { LayerStoreApi } from '../store/types.js';

/**
 * Reads every layer and yields the image's final filesystem as one tar: each path's topmost version,
 * with whiteouts (`.wh.<name>`, `.wh..wh..opq`) applied and left out. Pass 1 reads only headers to
 * decide which entry wins for each path; pass 2 copies the winners in layer order.
 */
export async function* flattenLayers(store: LayerStoreApi, diffIds: readonly Digest[], signal?: AbortSignal): AsyncGenerator<Buffer> {
  const open = async (diffId: Digest): Promise<AsyncIterable<Uint8Array>> => {
    const info = await store.findLayerBlob(diffId, 'none');
    if (!info) throw new RuntimeError(`layer ${diffId} is not in the store`);
    return store.openBlob(info.digest);
  };
  const clean = (name: string): string => name.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
  interface Winner { layer: number; ordinal: number; directory: boolean }
  const final = new Map<string, Winner>();
  const removeBelow = (path: string, layer: number, self: boolean): void => {
    const prefix = path === '' ? '' : `${path}/`;
    for (const [key, w] of final) {
      if (w.layer < layer && ((self && key === path) || key.startsWith(prefix))) final.delete(key);
    }
  };
  for (const [layer, diffId] of diffIds.entries()) {
    let ordinal = 0;
    for await (const { header } of readTar(await open(diffId), signal)) {
      const name = clean(header.name);
      const slash = name.lastIndexOf('/');
      const parent = slash === -1 ? '' : name.slice(0, slash);
      const base = name.slice(slash + 1);
      if (base === '.wh..wh..opq') removeBelow(parent, layer, false);
      else if (base.startsWith('.wh.')) removeBelow(parent === '' ? base.slice(4) : `${parent}/${base.slice(4)}`, layer, true);
      else if (name !== '') {
        const old = final.get(name);
        // A non-directory replacing a directory hides everything the lower layers had under it.
        if (old?.directory && header.type !== 'directory') removeBelow(name, layer, false);
        final.set(name, { layer, ordinal, directory: header.type === 'directory' });
      }
      ordinal++;
    }
  }
  for (const [layer, diffId] of diffIds.entries()) {
    let ordinal = 0;
    for await (const { header, body } of readTar(await open(diffId), signal)) {
      const name = clean(header.name);
      const w = final.get(name);
      if (w?.layer === layer && w.ordinal === ordinal) {
        const out: TarHeader = { ...header, name };
        if (header.type === 'link' && header.linkname !== undefined) out.linkname = clean(header.linkname);
        yield encodeHeader(out);
        if (header.type === 'file') {
          for await (const chunk of body) yield chunk;
          yield padding(header.size);
        }
      }
      ordinal++;
    }
  }
  yield END_OF_ARCHIVE;
}
