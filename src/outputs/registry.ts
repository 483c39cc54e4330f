/** The `registry` exporter: pushes the image to each reference (the output's own, else the build's tags). */
import { BuildError } from '../errors.js';
import { fullImageName } from '../image/names.js';
import type { Exporter } from './exporter.js';
import type { OutputReport } from './types.js';

/** `--output type=registry` (and `--push`). */
export const registryOutput: Exporter<'registry'> = async (image, out, ctx) => {
  const refs = out.ref ? [out.ref] : ctx.tags;
  if (refs.length === 0) throw new BuildError('USAGE', 'pushing needs a name: tag the image (-t) or give --output type=registry,name=REF');
  const { pushImage } = await import('../registry/push.js');
  const reports: OutputReport[] = [];
  for (const r of refs) {
    ctx.progress(`push ${r}`, `pushing ${r}`);
    const pushed = await pushImage(image, r, ctx.store, { ...(ctx.signal ? { signal: ctx.signal } : {}), insecureRegistries: [...ctx.insecureRegistries] });
    ctx.progress(`push ${r}`, `pushed ${r}: manifest ${pushed}`);
    reports.push({ type: 'registry', dest: r, names: [fullImageName(r)], manifestDigest: pushed });
  }
  return reports;
};
