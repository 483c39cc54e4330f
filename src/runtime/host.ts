/**
 * What kiln learns about the machine it runs on while it works: which OCI runtime works, which overlay options the
 * kernel takes, cgroup and limit facts. Kept in one object that `build()` creates (or an embedding program passes
 * in, to share it between builds or not), handed down through the builder's context to the runtime, rather than in
 * module variables: two builds in one process then share exactly what their caller decides.
 *
 * Everything here is learnt lazily, on first use, by the module that needs it.
 */
import { createCompressor, type Compressor } from '../store/compression.js';
import type { RuntimeProbes } from './oci-runtime.js';
import type { OverlayCapabilities } from './overlay.js';

/** Facts the container runner reads from the host once. */
export interface ContainerHostFacts {
  /** /sys/fs/cgroup is a pure cgroup v2 hierarchy. */
  pureCgroupV2?: boolean;
  /** umount(8)'s absolute path; null when none was found. */
  umountPath?: string | null;
  /** The open-files limit containers get (Docker's figure, capped at our hard limit). */
  nofileLimit?: number;
}

/** The host's learnt state; see the module comment. Create one with {@link createHost}. */
export interface Host {
  /** {@link detectRuntime}'s verdicts: probing spawns each runtime, which we do not want on every RUN step. */
  readonly runtimeProbes: RuntimeProbes;
  /** The overlay options the kernel accepts (`volatile` is dropped once refused). */
  readonly overlay: OverlayCapabilities;
  readonly container: ContainerHostFacts;
  /** The gzip slots, buffer pool and member compressor of the stores the builds open (src/store/compression.ts). */
  readonly compressor: Compressor;
}

/** A host record that knows nothing yet. */
export function createHost(): Host {
  return { runtimeProbes: new Map(), overlay: { volatile: true }, container: {}, compressor: createCompressor() };
}
