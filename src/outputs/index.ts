/**
 * Outputs: the exporters of a built image, one module each (`oci`, `docker`, `local`, `tar`, `registry`), chosen by
 * the build's output list through a record keyed by the output type (a missing exporter is a type error). The
 * builder hands them the stored image and the store; the registry exporter owns the push.
 */
import type { LayerStoreApi, StoredImage } from '../store/types.js';
import { dockerOutput, exportDocker } from './docker.js';
import { exporting, type Exporter, type FileExporter, type OutputType } from './exporter.js';
import { exportLocal, localOutput } from './local.js';
import { exportOci, ociOutput } from './oci.js';
import { registryOutput } from './registry.js';
import { exportTar, tarOutput } from './tar.js';
import type { ExportOptions, ExportOutput, ExportResult, OutputContext, OutputReport, OutputSpec } from './types.js';

export type { ExportOptions, ExportOutput, ExportProgressEvent, ExportResult, OutputContext, OutputReport, OutputSpec } from './types.js';
export { flattenLayers } from './flatten.js';
export { splitReference } from './layout.js';

const EXPORTERS: { readonly [T in OutputType]: Exporter<T> } = {
  oci: ociOutput,
  docker: dockerOutput,
  local: localOutput,
  tar: tarOutput,
  registry: registryOutput,
};

const FILE_EXPORTERS: { readonly [T in ExportOutput['type']]: FileExporter<T> } = {
  oci: exportOci,
  docker: exportDocker,
  local: exportLocal,
  tar: exportTar,
};

/** Writes every output of a build's output list but the store (`image`), in order; one report per output written. */
export async function writeOutputs(image: StoredImage, outputs: readonly OutputSpec[], ctx: OutputContext): Promise<OutputReport[]> {
  const reports: OutputReport[] = [];
  for (const out of outputs) {
    if (out.type === 'image') continue;
    const exporter = EXPORTERS[out.type] as Exporter<typeof out.type>;
    reports.push(...(await exporter(image, out, ctx)));
  }
  return reports;
}

/**
 * Writes a stored image to `output`. OCI layouts get compressed layers (gzip unless asked otherwise;
 * compressed blobs are cached in the store) and a re-written manifest; docker archives keep the
 * plain layer tars `docker save` writes; `local` and `tar` get the final filesystem.
 */
export async function exportImage(image: StoredImage, store: LayerStoreApi, output: ExportOutput, options: ExportOptions = {}): Promise<ExportResult> {
  const exporter = FILE_EXPORTERS[output.type] as FileExporter<typeof output.type>;
  return exporting(image, output.dest, options.signal, () => exporter(image, store, output, options));
}
