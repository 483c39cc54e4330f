/** The `local` exporter: the image's final filesystem, unpacked into a directory. */
import { mkdir } from 'node:fs/promises';
import { exportForBuild, exportResult, type Exporter, type FileExporter } from './exporter.js';
import { flattenLayers } from './flatten.js';

export const exportLocal: FileExporter<'local'> = async (image, store, output, options) => {
  const { signal } = options;
  const { extractLayer } = await import('../store/extract.js');
  await mkdir(output.dest, { recursive: true });
  await extractLayer(flattenLayers(store, image.config.rootfs.diff_ids, signal), output.dest, {
    mode: 'apply',
    ...(signal ? { signal } : {}),
  });
  return exportResult(image, output.dest, []);
};

/** `--output type=local`. */
export const localOutput: Exporter<'local'> = (image, out, ctx) => exportForBuild(image, { type: 'local', dest: out.dest }, ctx, exportLocal);
