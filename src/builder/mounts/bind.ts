/**
 * `RUN --mount=type=bind` (the default type): a path of the build context, a named local context, or another
 * stage or image, read-only unless `rw` (a `rw` bind writes to a private copy-on-write view, never the source).
 */
import path from 'node:path';
import type { BindMount } from '../../parser/instructions.js';
import type { BuildContext } from '../context.js';
import { diffIds } from '../step-context.js';
import { failStep, type MountModule } from './mount.js';

/** A digest of a context path, for bind mounts from the context (the filtered context: what the mount shows). */
async function contextDigestFor(c: BuildContext, source: string): Promise<string> {
  const entry = c.resolveEntry(source);
  if (entry === undefined) throw new Error(`failed to compute cache key: "/${source.replace(/^\/+/, '')}": not found`);
  return c.digestSources([entry]);
}

export const bind: MountModule<BindMount> = {
  type: 'bind',
  async cacheKey(m, { ctx, ins }) {
    const local = m.from ? ctx.localContext(m.from) : ctx.context();
    // A stage's (or image's) part is its key, the context's the digest of what the mount shows.
    const from = m.from && !local ? await ctx.stageResult(m.from, ins) : undefined;
    return `bind ${m.target} ${m.source ?? ''} ${from ? from.key : await contextDigestFor(await local!, m.source ?? '.')} ${m.readOnly}`;
  },

  async prepare(m, setup) {
    const { ctx, ins, scratch, index } = setup;
    const target = setup.target;
    if (!target) return failStep(setup, 'mount type bind needs a target');
    let source: string;
    let privateView = false;
    const local = m.from ? ctx.localContext(m.from) : ctx.context();
    if (local === undefined) {
      const from = await ctx.stageResult(m.from!, ins);
      const { mountStageView } = await import('../../runtime/stage-view.js');
      const view = await mountStageView(ctx.store, diffIds(from), path.join(scratch, `bind-${index}`), { ...(ctx.signal ? { signal: ctx.signal } : {}), overlay: ctx.host.overlay });
      setup.defer(view.release);
      const { resolveInRoot } = await import('../../runtime/user.js');
      source = await resolveInRoot(view.rootfs, m.source ?? '/');
    } else {
      // The build context as the build sees it: resolved inside it (a symlink cannot lead out of it nor to
      // an ignored file), and a directory shown without what .dockerignore leaves out.
      const c = await local;
      const entry = c.resolveEntry(m.source ?? '/');
      if (entry === undefined) return failStep(setup, `failed to mount ${m.source ?? '/'}: not found`);
      source = entry.abs;
      const hidden = entry.type === 'dir' ? await c.hiddenBelow(entry) : [];
      if (hidden.length > 0) {
        const { mountFilteredView } = await import('../../runtime/filtered-view.js');
        const view = await mountFilteredView(entry.abs, hidden, path.join(scratch, `bind-view-${index}`), ctx.signal, ctx.host.overlay);
        setup.defer(view.release);
        source = view.dir;
        privateView = true; // writes land in the view's own upperdir
      }
    }
    const { bindSourceKind, writableBind } = await import('../../runtime/bind-mount.js');
    const kind = await bindSourceKind(source);
    if (kind === undefined) return failStep(setup, `failed to mount ${m.source ?? '/'}: not found`);
    // Binds are read-only unless `rw`: writes must never reach the context or another stage.
    if (!m.readOnly && !privateView) {
      if (kind === 'other') return failStep(setup, `bind mount source ${m.source ?? '/'} is not a regular file or directory`);
      const view = await writableBind(source, kind, path.join(scratch, `bind-rw-${index}`), ctx.host.overlay);
      setup.defer(view.release);
      source = view.source;
    }
    return { mounts: [{ type: 'bind', source, target, readonly: m.readOnly }] };
  },
};
