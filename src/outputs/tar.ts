/** The `tar` exporter: the image's final filesystem as one tar file (or stream). */
import { exportForBuild, exportResult, type Exporter, type FileExporter } from './exporter.js';
import { flattenLayers } from './flatten.js';
import { writeTar } from './layout.js';

export const exportTar: FileExporter<'tar'> = async (image, store, output, options) => {
  await writeTar(output.dest, flattenLayers(store, image.config.rootfs.diff_ids, options.signal), options.signal);
  return exportResult(image, output.dest, []);
};

/** `--output type=tar`. */
export const tarOutput: Exporter<'tar'> = (image, out, ctx) => exportForBuild(image, { type: 'tar', dest: out.dest }, ctx, exportTar);
