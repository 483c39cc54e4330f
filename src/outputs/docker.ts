/** The `docker` exporter: a docker-archive tar (what `docker save` writes), also a valid OCI layout. */
import { familiarImageName } from '../image/names.js';
import { archiveNames, exportForBuild, exportResult, fullNames, type Exporter, type FileExporter } from './exporter.js';
import { OCI_LAYOUT, blobFiles, hexOf, indexJson, manifestFor, reportWrites, splitReference, tarOf, writeTar, type OutFile } from './layout.js';

/** Writes a docker archive: the plain layer tars `docker save` writes unless asked otherwise, manifest.json for `docker load`. */
export const exportDocker: FileExporter<'docker'> = async (image, store, output, options) => {
  const names = fullNames(output.tags);
  const manifest = await manifestFor(image, store, output.compression ?? 'none', options);
  // docker load reads manifest.json: RepoTags in docker's short form, as `docker save` writes them.
  const tags = names.filter((n) => !n.includes('@')).map(familiarImageName);
  const entry = {
    Config: `blobs/sha256/${hexOf(image.configDigest)}`,
    RepoTags: tags,
    Layers: manifest.layers.map((l) => `blobs/sha256/${hexOf(l.digest)}`),
  };
  const top = manifest.layers.at(-1);
  const repositories: Record<string, Record<string, string>> = {};
  for (const t of tags) {
    const { repository, tag } = splitReference(t);
    if (top) (repositories[repository] ??= {})[tag] = hexOf(top.digest);
  }
  const files: OutFile[] = [
    ...blobFiles(store, image, manifest),
    { name: 'index.json', bytes: indexJson(image, manifest, names) },
    { name: 'manifest.json', bytes: Buffer.from(`${JSON.stringify([entry])}\n`) },
    { name: 'oci-layout', bytes: OCI_LAYOUT },
    { name: 'repositories', bytes: Buffer.from(`${JSON.stringify(repositories)}\n`) },
  ];
  reportWrites(manifest.layers, options);
  await writeTar(output.dest, tarOf(files, options.signal), options.signal);
  return exportResult(image, output.dest, names, manifest);
};

/** `--output type=docker`. */
export const dockerOutput: Exporter<'docker'> = (image, out, ctx) =>
  exportForBuild(
    image,
    { type: 'docker', dest: out.dest, tags: archiveNames(out, ctx.tags), ...(out.compression ? { compression: out.compression } : {}) },
    ctx,
    exportDocker,
  );
