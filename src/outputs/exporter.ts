/**
 * What every exporter has in common: the shape of an exporter of the build's output list, and running one of
 * the file exporters (`oci`, `docker`, `local`, `tar`) for a build: its progress, its report, its errors.
 */
import { RuntimeError, messageOf } from '../errors.js';
import { fullImageName } from '../image/names.js';
import type { LayerStoreApi, StoredImage } from '../store/types.js';
import type { ExportOptions, ExportOutput, ExportResult, OutputContext, OutputReport, OutputSpec } from './types.js';

/** The kinds of output an exporter writes (the store itself, `image`, is not one). */
export type OutputType = Exclude<OutputSpec['type'], 'image'>;

/** Writes one output of the build's output list. */
export type Exporter<T extends OutputType> = (image: StoredImage, output: Extract<OutputSpec, { type: T }>, ctx: OutputContext) => Promise<OutputReport[]>;

/** Writes a stored image as one kind of file output (see {@link ExportOutput}). */
export type FileExporter<T extends ExportOutput['type']> = (
  image: StoredImage,
  store: LayerStoreApi,
  output: Extract<ExportOutput, { type: T }>,
  options: ExportOptions,
) => Promise<ExportResult>;

/** The names an `oci` or `docker` archive holds: buildx gives -t to its exporters as their names; name= counts when there is no -t. */
export function archiveNames(output: { readonly names?: readonly string[] }, tags: readonly string[]): string[] {
  return tags.length > 0 ? [...tags] : [...(output.names ?? [])];
}

/** Runs `exporter` with its errors named after the image and destination (a RuntimeError or the abort passes as is). */
export async function exporting<T>(image: StoredImage, dest: unknown, signal: AbortSignal | undefined, exporter: () => Promise<T>): Promise<T> {
  try {
    return await exporter();
  } catch (cause) {
    if (signal?.aborted && cause === signal.reason) throw cause;
    if (cause instanceof RuntimeError) throw cause;
    throw new RuntimeError(`exporting image ${image.manifestDigest} to ${typeof dest === 'string' ? dest : 'a stream'}: ${messageOf(cause)}`, { cause });
  }
}

/** Runs a file exporter for a build: progress events before and per layer, the archive's digests after, and its report. */
export async function exportForBuild<T extends ExportOutput['type']>(
  image: StoredImage,
  output: Extract<ExportOutput, { type: T }>,
  ctx: OutputContext,
  exporter: FileExporter<T>,
): Promise<OutputReport[]> {
  const { signal } = ctx;
  const id = `export ${output.type}`;
  const where = typeof output.dest === 'string' ? output.dest : 'stdout';
  ctx.progress(id, `exporting to ${output.type} ${where}`);
  const written = await exporting(image, output.dest, signal, () =>
    exporter(image, ctx.store, output, {
      ...(signal ? { signal } : {}),
      onProgress: (p) => ctx.progress(id, `${p.kind} ${p.diffId.slice(7, 19)}`, { current: p.index + 1, total: p.total }),
    }),
  );
  const archive = output.type === 'oci' || output.type === 'docker';
  // Name the digest the archive holds: it is not the store's when the export compressed the layers otherwise.
  if (archive) ctx.progress(id, `exported ${output.type} ${where}: manifest ${written.manifestDigest}, config ${written.configDigest}`);
  return [
    {
      type: output.type,
      dest: written.dest,
      names: written.names,
      ...(archive ? { manifestDigest: written.manifestDigest } : {}),
      ...(archive && written.descriptor ? { descriptor: written.descriptor } : {}),
    },
  ];
}

/** The names of an archive in their full form, deduplicated (`docker.io/library/app:1`). */
export function fullNames(tags: readonly string[] | undefined): string[] {
  return [...new Set((tags ?? []).map(fullImageName))];
}

/** The result of a file export. */
export function exportResult(image: StoredImage, dest: unknown, names: readonly string[], manifest?: { digest: ExportResult['manifestDigest']; mediaType: string; bytes: Buffer }): ExportResult {
  return {
    manifestDigest: manifest?.digest ?? image.manifestDigest,
    ...(manifest ? { descriptor: { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length } } : {}),
    configDigest: image.configDigest,
    names,
    dest: typeof dest === 'string' ? dest : '-',
  };
}
