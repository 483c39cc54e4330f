/**
 * Step cache keys. A key chains: the previous step's key (the chain starts at the base image's
 * manifest digest), the canonical instruction text after expansion, the build args the step can
 * see, and a digest of the context files it reads. Anything else (mtimes, ignored files, the
 * wall clock) must not change a key, or the cache would miss; anything that changes the
 * result must, or the cache would give a wrong layer.
 *
 * Keys are sha256 so that the same key can name a record in a cache shared through a registry:
 * an xxhash-based key could be forged by a crafted collision. (File content digests inside the
 * material are xxhash64 for speed; `sharedKey` replaces them with sha256 ones before export.)
 */
import { sha256Hex } from '../oci/digest.js';

export interface KeyMaterial {
  /** The previous step's key, or `base:<manifest digest>` / `scratch` for a stage's first step. */
  readonly parent: string;
  /** The instruction kind and its canonical, expanded arguments. */
  readonly instruction: string;
  /** `K=V` pairs the step can observe (build args in scope, in a stable order). */
  readonly args?: readonly string[];
  /** Digest of the context/stage files the step reads (COPY/ADD), or a cache mount id… */
  readonly inputs?: readonly string[];
}

/** Computes a step key; the same material always gives the same key. */
export function cacheKey(material: KeyMaterial): string {
  const parts: string[] = [];
  // Length-prefixed fields: no way to shift text from one field into another and keep the key.
  const field = (s: string): void => {
    parts.push(`${Buffer.byteLength(s)}:`, s);
  };
  field('kiln-cache-v1');
  field(material.parent);
  field(material.instruction);
  for (const a of [...(material.args ?? [])].sort()) field(a);
  field('|');
  for (const i of material.inputs ?? []) field(i);
  return sha256Hex(...parts);
}
