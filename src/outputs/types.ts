/**
 * What the outputs write and report: the build's output list ({@link OutputSpec}, buildx's exporters), the
 * exporters' own specs ({@link ExportOutput}, for a program that exports a stored image itself) and results.
 */
import type { Writable } from 'node:stream';
import type { Descriptor, Digest } from '../oci/types.js';
import type { Compression, LayerStoreApi } from '../store/types.js';

/**
 * Where the built image goes, named as buildx names its exporters. `dest` may be a stream (the CLI's `-o -` is
 * `{ type: 'tar', dest: process.stdout }`). The image names an `oci` or `docker` archive holds are `tags` when
 * given (as buildx gives `-t` to its exporters), else `names` (`-o type=oci,name=REF`).
 */
export type OutputSpec =
  | { readonly type: 'image'; readonly names?: readonly string[] } // the local store, always written; `names` are more tags
  | {
      readonly type: 'oci';
      readonly dest: string | Writable;
      readonly names?: readonly string[];
      /** @default 'gzip' */
      readonly compression?: 'none' | 'gzip' | 'zstd';
      /** A tar (true) or a directory layout (false). @default whether `dest` ends in `.tar` (a stream: a tar) */
      readonly tar?: boolean;
    }
  | {
      readonly type: 'docker';
      readonly dest: string | Writable;
      readonly names?: readonly string[];
      /** @default 'none' (plain layer tars, as `docker save` writes) */
      readonly compression?: 'none' | 'gzip' | 'zstd';
    }
  | { readonly type: 'local'; readonly dest: string }
  | { readonly type: 'tar'; readonly dest: string | Writable }
  | { readonly type: 'registry'; readonly ref?: string };

/** What one output of a build's output list wrote. */
export interface OutputReport {
  readonly type: Exclude<OutputSpec['type'], 'image'>;
  /** The destination path (`-` for a stream); the reference pushed to for `registry`. */
  readonly dest: string;
  /** The image names the output holds, in full form (`docker.io/library/app:1`). */
  readonly names: readonly string[];
  /**
   * The digest of the manifest the output holds (an archive's, or the one pushed). It differs from the store's
   * when the output's layers are compressed otherwise (the store keeps built layers uncompressed; `oci` and
   * `registry` gzip them by default). Absent for `local` and `tar`, which hold a filesystem.
   */
  readonly manifestDigest?: Digest;
  /** The manifest's descriptor as the archive's index names it (`oci`, `docker`). */
  readonly descriptor?: Descriptor;
}

/** What an exporter gets besides the image and its output spec. */
export interface OutputContext {
  readonly store: LayerStoreApi;
  /** The build's tags (normalized): an archive's names and a push's references when the output names none. */
  readonly tags: readonly string[];
  readonly signal?: AbortSignal;
  /** Registries reached over plain HTTP (a push). */
  readonly insecureRegistries: readonly string[];
  /** Progress for the build's events: `id` groups the messages of one output. */
  readonly progress: (id: string, message: string, counts?: { readonly current: number; readonly total: number }) => void;
}

/** Where and how {@link exportImage} writes an image. */
export type ExportOutput =
  | {
      /**
       * An OCI image layout: a directory, or a tar of one (`tar`; by default when `dest` ends in `.tar`). A stream
       * `dest` (stdout for `-o -`) always gets the tar.
       */
      readonly type: 'oci';
      readonly dest: string | Writable;
      /**
       * Image names, each written as BuildKit writes them: `io.containerd.image.name` (the full name,
       * `docker.io/library/app:1`) and `org.opencontainers.image.ref.name` (its tag) on an index entry. @default []
       */
      readonly tags?: readonly string[];
      /** Layer compression. @default 'gzip' */
      readonly compression?: Compression;
      /** Write a tar (true) or a directory (false). @default whether `dest` ends in `.tar` */
      readonly tar?: boolean;
    }
  | {
      /**
       * A docker-archive tar (`docker save` format, also a valid OCI layout). `tags` become manifest.json's
       * RepoTags (docker's short form, `app:1`) and index.json's names, as for `oci`.
       */
      readonly type: 'docker';
      readonly dest: string | Writable;
      readonly tags: readonly string[];
      /** Layer compression. @default 'none' (the plain layer tars `docker save` writes) */
      readonly compression?: Compression;
    }
  | {
      /** The image's final filesystem, unpacked into a directory. */
      readonly type: 'local';
      readonly dest: string;
    }
  | {
      /** The image's final filesystem as one tar file (or stream). */
      readonly type: 'tar';
      readonly dest: string | Writable;
    };

/** Progress of an export, one event per layer handled. */
export interface ExportProgressEvent {
  readonly kind: 'layer-compress' | 'layer-write';
  readonly index: number;
  readonly total: number;
  readonly diffId: Digest;
}

/** Options of {@link exportImage}. */
export interface ExportOptions {
  readonly signal?: AbortSignal;
  readonly onProgress?: (event: ExportProgressEvent) => void;
}

/** What {@link exportImage} wrote. */
export interface ExportResult {
  /**
   * The digest of the manifest as written: it differs from the stored one when the export's layers are compressed
   * otherwise than the store's (the store keeps built layers uncompressed; an OCI export gzips them by default).
   * For `local` and `tar`, which hold no manifest, the stored image's.
   */
  readonly manifestDigest: Digest;
  /** The manifest's descriptor (media type, digest, size) as an index would name it; absent for `local` and `tar`. */
  readonly descriptor?: Descriptor;
  readonly configDigest: Digest;
  /** The image names written into the archive, in their full form (`docker.io/library/app:1`). */
  readonly names: readonly string[];
  /** The destination path, `-` for a stream. */
  readonly dest: string;
}
