/**
 * Size limits on the JSON documents of an image, which kiln reads into memory whole (layers stream). An image
 * from a stranger's archive or registry could otherwise make kiln allocate what it likes: a parsed JSON
 * document costs several times its size.
 *
 * - Manifests and indexes: 4 MiB, the size the OCI distribution spec says clients and registries should
 *   expect to support, and containerd's `MaxManifestSize`.
 * - Image configs: 8 MiB. Real configs are a few KiB (long histories reach a few hundred); the spec sets no
 *   number, so kiln allows twice the manifest limit.
 * - Small control files (`oci-layout`, registry error bodies): 1 MiB.
 */
export const IMAGE_JSON_LIMITS = {
  manifest: 4 << 20,
  config: 8 << 20,
  small: 1 << 20,
} as const;

/** `4 MiB` for messages. */
export function formatLimit(bytes: number): string {
  return bytes % (1 << 20) === 0 ? `${bytes >> 20} MiB` : `${bytes} bytes`;
}
