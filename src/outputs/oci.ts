/** The `oci` exporter: an OCI image layout, a directory or a tar of one, its layers gzipped unless asked otherwise. */
import { archiveNames, exportForBuild, exportResult, fullNames, type Exporter, type FileExporter } from './exporter.js';
import { OCI_LAYOUT, blobFiles, indexJson, manifestFor, reportWrites, tarOf, writeDirectory, writeTar, type OutFile } from './layout.js';

/**
 * Writes an OCI layout: compressed layers (gzip unless asked otherwise; compressed blobs are cached in the store),
 * a re-written manifest when the compression differs from the store's, and index.json naming the image.
 */
export const exportOci: FileExporter<'oci'> = async (image, store, output, options) => {
  const names = fullNames(output.tags);
  const manifest = await manifestFor(image, store, output.compression ?? 'gzip', options);
  const files: OutFile[] = [
    ...blobFiles(store, image, manifest),
    { name: 'index.json', bytes: indexJson(image, manifest, names) },
    { name: 'oci-layout', bytes: OCI_LAYOUT },
  ];
  reportWrites(manifest.layers, options);
  const asTar = typeof output.dest !== 'string' || (output.tar ?? output.dest.endsWith('.tar'));
  if (asTar) await writeTar(output.dest, tarOf(files, options.signal), options.signal);
  else await writeDirectory(output.dest as string, files, options.signal);
  return exportResult(image, output.dest, names, manifest);
};

/** `--output type=oci`. */
export const ociOutput: Exporter<'oci'> = (image, out, ctx) =>
  exportForBuild(
    image,
    {
      type: 'oci',
      dest: out.dest,
      tags: archiveNames(out, ctx.tags),
      ...(out.compression ? { compression: out.compression } : {}),
      ...(out.tar !== undefined ? { tar: out.tar } : {}),
    },
    ctx,
    exportOci,
  );
