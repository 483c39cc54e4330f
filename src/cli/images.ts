/**
 * The CLI's image and store commands: `images`, `inspect`, `rmi`, `prune`, `store verify`, over the images API.
 */
import { ImageNotFoundError, inspectImage, listImages, prune, removeImage, verifyStore } from '../index.js';
import { UsageError, rootOption, runStoreCommand, storeArgs } from './args.js';

export function runImagesCommand(command: string, argv: string[]): Promise<number> {
  return runStoreCommand(command, () => dispatch(command, argv));
}

async function dispatch(command: string, argv: string[]): Promise<number> {
  switch (command) {
    case 'images': {
      const { values } = storeArgs(argv);
      const rows = await listImages(rootOption(values));
      process.stdout.write(`${'REPOSITORY:TAG'.padEnd(48)} ${'MANIFEST'.padEnd(19)} SIZE\n`);
      for (const { name, manifestDigest, size } of rows.sort((a, b) => a.name.localeCompare(b.name))) {
        process.stdout.write(`${name.padEnd(48)} ${manifestDigest.slice(7, 19).padEnd(19)} ${(size / 1e6).toFixed(1)} MB\n`);
      }
      return 0;
    }
    case 'inspect': {
      const { values, positionals } = storeArgs(argv);
      if (positionals.length !== 1) throw new UsageError('inspect takes one image name');
      const image = await inspectImage(positionals[0]!, rootOption(values));
      process.stdout.write(`${JSON.stringify({ manifestDigest: image.manifestDigest, configDigest: image.configDigest, manifest: image.manifest, config: image.config }, null, 2)}\n`);
      return 0;
    }
    case 'rmi': {
      const { values, positionals } = storeArgs(argv);
      if (positionals.length === 0) throw new UsageError('rmi takes one or more image names');
      let status = 0;
      for (const name of positionals) {
        try {
          const removed = await removeImage(name, rootOption(values));
          process.stdout.write(`Untagged: ${removed.name}\n`);
        } catch (err) {
          if (!(err instanceof ImageNotFoundError)) throw err;
          process.stderr.write(`kiln rmi: no such image: ${name}\n`);
          status = 1;
        }
      }
      return status;
    }
    case 'prune': {
      const { values } = storeArgs(argv);
      const r = await prune(rootOption(values));
      process.stdout.write(`removed ${r.removedBlobs} blobs, freed ${(r.freedBytes / 1e6).toFixed(1)} MB\n`);
      return 0;
    }
    case 'store': {
      // `kiln store verify`: exit 0 when everything checked out, 1 when something was wrong (and quarantined).
      const { values, positionals } = storeArgs(argv, { 'no-quarantine': { type: 'boolean' } });
      if (positionals.length !== 1 || positionals[0] !== 'verify') throw new UsageError('store takes a subcommand: verify [--no-quarantine]');
      const report = await verifyStore({ ...rootOption(values), quarantine: values['no-quarantine'] !== true });
      for (const p of report.problems) {
        process.stdout.write(`${p.kind} ${p.path}: ${p.detail}${p.quarantinedTo === undefined ? '' : ` (moved to ${p.quarantinedTo})`}\n`);
      }
      for (const dir of report.unverifiable) process.stderr.write(`kiln store verify: ${dir}: cannot be checked (no blob, not built here)\n`);
      process.stdout.write(`checked ${report.blobs} blobs, ${report.layers} layers, ${report.records} records: ${report.problems.length} problems\n`);
      return report.problems.length === 0 ? 0 : 1;
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}
