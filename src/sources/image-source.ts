/**
 * Image sources: where a base image (or `COPY --from=IMAGE`, or a named context's image) comes from. An OCI layout
 * directory, the local store (by tag or digest), kiln's embedded busybox base, or a registry pull. The builder asks
 * for an image by source and gets a stored image; it never calls the registry itself.
 */
import { RuntimeError } from '../errors.js';
import type { Digest } from '../oci/types.js';
import { normalizeTag } from '../image/names.js';
import type { LayerStoreApi, StoredImage } from '../store/types.js';

/** An image to resolve: an OCI layout directory (`oci-layout://DIR[:TAG]`), or a reference (`docker-image://REF` or as a Dockerfile writes it). */
export type ImageSource = { readonly kind: 'oci-layout'; readonly path: string; readonly ref?: string } | { readonly kind: 'image'; readonly ref: string };

/** Options of {@link resolveImageSource}. */
export interface ImageSourceOptions {
  readonly signal?: AbortSignal;
  /** Ask the registry even when the store has the tag (`--pull`). */
  readonly pull: boolean;
  /** Registries reached over plain HTTP. */
  readonly insecureRegistries: readonly string[];
  /** Progress for the build's events: `id` groups the messages of one source. */
  readonly progress: (id: string, message: string) => void;
}

/**
 * Finds an image: a named build context's OCI layout, or an image reference (a named context's
 * `docker-image://REF`, or one the Dockerfile wrote, already checked to carry no scheme) in the local store
 * (by tag or digest), kiln's embedded busybox base, or a registry.
 */
export async function resolveImageSource(source: ImageSource, store: LayerStoreApi, options: ImageSourceOptions): Promise<StoredImage> {
  const { signal } = options;
  if (source.kind === 'oci-layout') {
    const { importImage } = await import('../image/import.js');
    return importImage({ type: 'oci-layout', path: source.path, ...(source.ref ? { ref: source.ref } : {}) }, store, signal ? { signal } : {});
  }
  const ref = source.ref;
  const name = normalizeTag(ref);
  const digestPinned = /@sha256:[0-9a-f]{64}$/.exec(ref);
  if (digestPinned) {
    const digest = ref.slice(ref.indexOf('@') + 1) as Digest;
    if (await store.hasBlob(digest)) return store.getImage(digest);
  } else if (!options.pull) {
    const local = await store.resolveTag(name);
    if (local) return store.getImage(local);
  }
  // The embedded default base: busybox made from Debian's busybox-static, no registry involved.
  if (name === 'busybox:latest' || name === 'docker.io/library/busybox:latest') {
    options.progress('base', 'creating the busybox base image from busybox-static');
    const { ensureBusyboxImage } = await import('../image/base-image.js');
    return ensureBusyboxImage(store, { tag: 'busybox:latest', ...(signal ? { signal } : {}) });
  }
  const first = ref.split('/')[0] ?? '';
  const hasRegistry = ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasRegistry) {
    throw new RuntimeError(
      `failed to resolve source metadata for ${ref}: not in the local store, and kiln has no default registry here; ` +
        `import it (kiln pull HOST/REPO:TAG, --build-context NAME=oci-layout://DIR) or name its registry`,
    );
  }
  options.progress(`pull ${ref}`, `pulling ${ref}`);
  const { pullImage } = await import('../registry/pull.js');
  return pullImage(ref, store, {
    ...(signal ? { signal } : {}),
    insecureRegistries: [...options.insecureRegistries],
    onProgress: (p: unknown) => options.progress(`pull ${ref}`, `pulling ${ref}: ${JSON.stringify(p)}`),
  });
}
