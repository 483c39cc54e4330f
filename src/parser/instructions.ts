/**
 * The typed instruction model: turns each line-level {@link InstructionNode} into an
 * {@link Instruction} with typed flags and arguments, checking arguments the way BuildKit's
 * `instructions` package does and failing with its exact messages.
 *
 * Words stay unexpanded: `$VAR` in an argument or flag value is resolved by the builder with the
 * stage's environment at that step.
 */
import { DockerfileError, assertNever, messageOf, type SourceRange } from '../errors.js';
import type { ArgNode, DockerfileAst, Heredoc, InstructionNode } from './ast.js';
import { BFlags, isTrue } from './flags.js';
import { chompHeredocContent, parseHeredoc } from './heredoc.js';
import { withSuggestion } from './suggest.js';

/** Every instruction kind, the lower-case keyword. */
export const INSTRUCTION_KINDS = [
  'from', 'run', 'cmd', 'entrypoint', 'copy', 'add', 'env', 'arg', 'label', 'expose', 'user',
  'workdir', 'volume', 'stopsignal', 'healthcheck', 'shell', 'onbuild', 'maintainer',
] as const;

/** One of {@link INSTRUCTION_KINDS}. */
export type InstructionKind = (typeof INSTRUCTION_KINDS)[number];

/** What every instruction carries: where it is and how it was written. */
export interface NodeBase {
  /** The exact source span, continuations and heredoc bodies included. */
  readonly range: SourceRange;
  /** The logical line as written (continuations joined). */
  readonly source: string;
  /** Comment lines directly above the instruction. */
  readonly comments: readonly string[];
  readonly startLine: number;
  readonly endLine: number;
  /** The keyword as written (`RUN`, `run`). */
  readonly keyword: string;
}

/** Shell form (run by the stage's SHELL) or exec form (a JSON array, run directly). */
export type CommandForm =
  | { readonly form: 'shell'; readonly script: string }
  | { readonly form: 'exec'; readonly argv: readonly string[] };

/** A heredoc attached to RUN/CMD/ENTRYPOINT: a file the shell reads. Its body is not chomped yet. */
export interface HeredocFile {
  readonly name: string;
  readonly data: string;
  /** `<<-`: leading tabs are to be removed from each line. */
  readonly chomp: boolean;
  /** False when the delimiter was quoted: no variable expansion in the body. */
  readonly expand: boolean;
  readonly fileDescriptor: number;
}

/** A heredoc used as a COPY/ADD source: inline file content (already chomped for `<<-`). */
export interface InlineSource {
  /** The delimiter word, which is also the file name. */
  readonly path: string;
  readonly data: string;
  readonly expand: boolean;
}

/** The kinds of `RUN --mount`. */
export const MOUNT_TYPES = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'] as const;
export type MountType = (typeof MOUNT_TYPES)[number];
/** Cache mount sharing modes. */
export const CACHE_SHARING = ['shared', 'private', 'locked'] as const;
export type CacheSharing = (typeof CACHE_SHARING)[number];

/** What every parsed `RUN --mount=…` value carries. */
interface MountBase {
  /** Mount point in the container (`target`, `dst`, `destination`, `dest`). */
  readonly target?: string;
  /** The value as written. */
  readonly spec: string;
  /**
   * True when some value holds a `$` reference that was left unchecked: the builder must call
   * {@link parseMount} again on `spec` with an expander.
   */
  readonly needsExpansion: boolean;
}

/**
 * `type=bind` (the default): a path of the build context, a named context, a stage or an image, read-only unless `rw`.
 * @example RUN --mount=type=bind,from=build,source=/out,target=/in cp -r /in /app
 */
export interface BindMount extends MountBase {
  readonly type: 'bind';
  /** Path in `from` (`source`, `src`). */
  readonly source?: string;
  /** Stage name, stage index, named context or image to mount from; the build context when absent. */
  readonly from?: string;
  readonly readOnly: boolean;
}

/**
 * `type=cache`: a directory kept in the store across builds, shared by the steps that use the same id.
 * @example RUN --mount=type=cache,target=/root/.cache,sharing=locked go build
 */
export interface CacheMount extends MountBase {
  readonly type: 'cache';
  /** Cache id (default: the target). */
  readonly id?: string;
  /** Sharing mode; only set when written (the builder defaults cache mounts to `shared`). */
  readonly sharing?: CacheSharing;
  /** BuildKit seeds a new cache from `source` in `from`; kiln parses both and starts caches empty. */
  readonly source?: string;
  readonly from?: string;
  readonly readOnly: boolean;
  /** Permission bits of a new cache directory. */
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

/**
 * `type=tmpfs`: an empty in-memory filesystem for the step.
 * @example RUN --mount=type=tmpfs,target=/tmp,size=64m make
 */
export interface TmpfsMount extends MountBase {
  readonly type: 'tmpfs';
  /** Size limit in bytes (`size`). */
  readonly sizeLimit?: number;
  readonly readOnly: boolean;
  /** Accepted as BuildKit accepts it: it only makes the stage depend on `from`. */
  readonly from?: string;
}

/**
 * `type=secret`: a build secret as a read-only file (default `/run/secrets/<id>`) and/or an environment variable.
 * @example RUN --mount=type=secret,id=npmrc,target=/root/.npmrc npm ci
 */
export interface SecretMount extends MountBase {
  readonly type: 'secret';
  /** The secret's id (`id`; `source`/`src` is the other way to write it, never both). */
  readonly id?: string;
  readonly source?: string;
  /** Fail the step when the secret was not given. */
  readonly required: boolean;
  /** The environment variable to expose the secret as. */
  readonly env?: string;
  /** Permission bits of the secret file. */
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
}

/**
 * `type=ssh`: a socket reaching an SSH agent given with `--ssh` (default `/run/buildkit/ssh_agent.<n>`).
 * @example RUN --mount=type=ssh git clone git@example.com:repo.git
 */
export interface SshMount extends MountBase {
  readonly type: 'ssh';
  /** The agent's id (default `default`). */
  readonly id?: string;
  /** Fail the step when no agent was given for the id. */
  readonly required: boolean;
  /** Permission bits of the socket. */
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  /** Accepted as BuildKit accepts it: it only makes the stage depend on `from`. */
  readonly from?: string;
}

/** A parsed `RUN --mount=…` value; `type` is the discriminant. */
export type RunMount = BindMount | CacheMount | TmpfsMount | SecretMount | SshMount;

/** `RUN --network` modes. */
export const NETWORK_MODES = ['default', 'none', 'host'] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];
/** `RUN --security` modes. */
export const SECURITY_MODES = ['sandbox', 'insecure'] as const;
export type SecurityMode = (typeof SECURITY_MODES)[number];

/** A parsed `RUN --device=…` value (CDI device name). */
export interface RunDevice {
  readonly name: string;
  readonly required: boolean;
}

/**
 * Starts a build stage.
 * @example FROM [--platform=<platform>] <image> [AS <name>]
 */
export interface FromInstruction extends NodeBase {
  readonly kind: 'from';
  /** The base image or stage, unexpanded (`${BASE}:1.2`). */
  readonly image: string;
  /** The stage name, lower-cased (stage names are case-insensitive). */
  readonly name?: string;
  readonly platform?: string;
  /** Text of a comment line above that starts with the stage name, name removed. */
  readonly docComment: string;
}

/**
 * Runs a command in a container.
 * @example RUN [--mount=type=cache,target=/root/.cache] [--network=none] <command>
 * @example RUN ["executable", "arg"]
 */
export interface RunInstruction extends NodeBase {
  readonly kind: 'run';
  readonly command: CommandForm;
  readonly heredocs: readonly HeredocFile[];
  readonly mounts: readonly RunMount[];
  readonly network?: NetworkMode;
  readonly security?: SecurityMode;
  readonly devices: readonly RunDevice[];
  /** The flags written on the line, in order (BuildKit's FlagsUsed). */
  readonly flagsUsed: readonly string[];
}

/**
 * The image's default command.
 * @example CMD ["executable", "arg"]
 * @example CMD command arg
 */
export interface CmdInstruction extends NodeBase {
  readonly kind: 'cmd';
  readonly command: CommandForm;
  readonly heredocs: readonly HeredocFile[];
}

/**
 * The image's entrypoint. An empty exec form (`ENTRYPOINT []`) clears it.
 * @example ENTRYPOINT ["executable", "arg"]
 */
export interface EntrypointInstruction extends NodeBase {
  readonly kind: 'entrypoint';
  readonly command: CommandForm;
  readonly heredocs: readonly HeredocFile[];
}

interface CopyLike extends NodeBase {
  /** Source paths (or URLs for ADD), unexpanded. */
  readonly sources: readonly string[];
  /** Heredoc sources (`COPY <<EOF /dest`). */
  readonly contents: readonly InlineSource[];
  readonly dest: string;
  readonly chown?: string;
  readonly chmod?: string;
  readonly link: boolean;
  readonly parents: boolean;
  readonly excludes: readonly string[];
}

/**
 * Copies files from the context, a stage or an image.
 * @example COPY [--from=<stage>] [--chown=<user>:<group>] [--chmod=<perms>] [--link] [--parents] [--exclude=<path>] <src>... <dest>
 */
export interface CopyInstruction extends CopyLike {
  readonly kind: 'copy';
  readonly from?: string;
}

/**
 * Copies files, URLs or git repositories; unpacks local archives.
 * @example ADD [--checksum=<hash>] [--keep-git-dir] [--unpack] [--chown=…] [--chmod=…] [--link] <src>... <dest>
 */
export interface AddInstruction extends CopyLike {
  readonly kind: 'add';
  readonly checksum?: string;
  readonly keepGitDir: boolean;
  /** Whether to unpack archives; undefined = the default (local archives yes, URLs no). */
  readonly unpack?: boolean;
}

/** One `key=value` of ENV or LABEL. */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** True for the legacy `ENV key value` form (no `=`). */
  readonly noDelim: boolean;
}

/**
 * Sets environment variables.
 * @example ENV <key>=<value> ...
 */
export interface EnvInstruction extends NodeBase {
  readonly kind: 'env';
  readonly pairs: readonly KeyValue[];
}

/** One ARG declaration. */
export interface ArgDeclaration {
  readonly key: string;
  /** The default, unexpanded; undefined when none was given. */
  readonly value?: string;
  /** Text of a comment line above that starts with the key, key removed. */
  readonly docComment: string;
}

/**
 * Declares build arguments.
 * @example ARG <name>[=<default>] ...
 */
export interface ArgInstruction extends NodeBase {
  readonly kind: 'arg';
  readonly args: readonly ArgDeclaration[];
}

/**
 * Adds image labels.
 * @example LABEL <key>=<value> ...
 */
export interface LabelInstruction extends NodeBase {
  readonly kind: 'label';
  readonly pairs: readonly KeyValue[];
}

/**
 * Declares exposed ports (parsed after expansion with `parsePorts` from ports.ts).
 * @example EXPOSE <port>[/<protocol>] ...
 */
export interface ExposeInstruction extends NodeBase {
  readonly kind: 'expose';
  readonly ports: readonly string[];
}

/**
 * Sets the user for later steps and the image.
 * @example USER <user>[:<group>]
 */
export interface UserInstruction extends NodeBase {
  readonly kind: 'user';
  readonly user: string;
}

/**
 * Sets the working directory.
 * @example WORKDIR /path/to/workdir
 */
export interface WorkdirInstruction extends NodeBase {
  readonly kind: 'workdir';
  readonly path: string;
}

/**
 * Declares volumes.
 * @example VOLUME ["/data"]
 * @example VOLUME /var/log /var/db
 */
export interface VolumeInstruction extends NodeBase {
  readonly kind: 'volume';
  readonly volumes: readonly string[];
}

/**
 * Sets the signal that stops the container.
 * @example STOPSIGNAL SIGTERM
 */
export interface StopsignalInstruction extends NodeBase {
  readonly kind: 'stopsignal';
  readonly signal: string;
}

/** A HEALTHCHECK's test; durations are in nanoseconds, 0 = not set (inherit the default). */
export type HealthcheckSpec =
  | { readonly type: 'none' }
  | {
      readonly type: 'cmd';
      /** The image-config form: `['CMD', ...argv]` or `['CMD-SHELL', script]`. */
      readonly test: readonly string[];
      readonly command: CommandForm;
      readonly interval: number;
      readonly timeout: number;
      readonly startPeriod: number;
      readonly startInterval: number;
      readonly retries: number;
    };

/**
 * Sets or disables the container health check.
 * @example HEALTHCHECK [--interval=30s] [--timeout=30s] [--start-period=0s] [--start-interval=5s] [--retries=3] CMD <command>
 * @example HEALTHCHECK NONE
 */
export interface HealthcheckInstruction extends NodeBase {
  readonly kind: 'healthcheck';
  readonly check: HealthcheckSpec;
}

/**
 * Sets the shell used by shell-form instructions.
 * @example SHELL ["/bin/bash", "-c"]
 */
export interface ShellInstruction extends NodeBase {
  readonly kind: 'shell';
  readonly shell: readonly string[];
}

/**
 * Registers an instruction to run when the image is used as a base.
 * @example ONBUILD RUN make
 */
export interface OnbuildInstruction extends NodeBase {
  readonly kind: 'onbuild';
  /** The trigger, typed. */
  readonly trigger: Instruction;
  /** The trigger's text as stored in the image config (`RUN make`), heredoc bodies appended. */
  readonly expression: string;
}

/**
 * Deprecated author field.
 * @example MAINTAINER <name>
 */
export interface MaintainerInstruction extends NodeBase {
  readonly kind: 'maintainer';
  readonly maintainer: string;
}

/** Any typed instruction; switch on `kind`. */
export type Instruction =
  | FromInstruction | RunInstruction | CmdInstruction | EntrypointInstruction | CopyInstruction
  | AddInstruction | EnvInstruction | ArgInstruction | LabelInstruction | ExposeInstruction
  | UserInstruction | WorkdirInstruction | VolumeInstruction | StopsignalInstruction
  | HealthcheckInstruction | ShellInstruction | OnbuildInstruction | MaintainerInstruction;

// ---------------------------------------------------------------------------------------------
// Small Go-compatible helpers (the messages users see come from Go's strconv/time/csv).

/** Go's `strconv.ParseBool`; undefined when the text is not a boolean. */
export function parseGoBool(s: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return undefined;
}

function parseUint(s: string, base: 8 | 10, max = 0xffffffff): number | undefined {
  const re = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(s)) return undefined;
  const n = parseInt(s, base);
  return n <= max ? n : undefined;
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9,
};

/**
 * Go's `time.ParseDuration`, in nanoseconds (`1m30s`, `1.5h`, `-2ms`, `0`).
 * @throws Error `time: invalid duration "x"` and friends
 */
export function parseDuration(text: string): number {
  const quoted = JSON.stringify(text);
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw new Error(`time: invalid duration ${quoted}`);
  let total = 0;
  while (s !== '') {
    const num = /^([0-9]*)(\.[0-9]*)?/.exec(s);
    const whole = num?.[1] ?? '';
    const frac = num?.[2] ?? '';
    if (whole === '' && frac.length <= 1) throw new Error(`time: invalid duration ${quoted}`);
    s = s.slice(whole.length + frac.length);
    const unitMatch = /^[^0-9.]*/.exec(s);
    const unit = unitMatch?.[0] ?? '';
    if (unit === '') throw new Error(`time: missing unit in duration ${quoted}`);
    const scale = DURATION_UNITS[unit];
    if (scale === undefined) throw new Error(`time: unknown unit ${JSON.stringify(unit)} in duration ${quoted}`);
    s = s.slice(unit.length);
    total += Number(`${whole === '' ? '0' : whole}${frac === '.' ? '' : frac}`) * scale;
  }
  if (total > 2 ** 63) throw new Error(`time: invalid duration ${quoted}`);
  return sign * Math.round(total);
}

/** Renders nanoseconds the way Go's `time.Duration.String` does, for the common cases. */
function formatDuration(ns: number): string {
  if (ns % 1e9 === 0 && ns >= 1e9) return `${ns / 1e9}s`;
  if (ns % 1e6 === 0 && ns >= 1e6) return `${ns / 1e6}ms`;
  if (ns % 1e3 === 0 && ns >= 1e3) return `${ns / 1e3}µs`;
  return `${ns}ns`;
}

const MINIMUM_DURATION = 1e6;

/**
 * A HEALTHCHECK duration flag: empty and exactly 0 mean unset (0), anything else must be at least 1ms.
 * @throws Error `Interval "interval" cannot be less than 1ms`
 */
export function parseOptInterval(name: string, value: string): number {
  if (value === '') return 0;
  const d = parseDuration(value);
  if (d === 0) return 0;
  if (d < MINIMUM_DURATION) throw new Error(`Interval ${JSON.stringify(name)} cannot be less than ${formatDuration(MINIMUM_DURATION)}`);
  return d;
}

/**
 * One record of Go's `encoding/csv` (the format of `--mount` and `--device` values):
 * comma-separated fields, a field may be double-quoted with `""` for a quote inside.
 */
export function readCsvRecord(text: string): string[] {
  if (text === '') throw new Error('EOF');
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new Error(`parse error on line 1, column ${i + 1}: extraneous or missing " in quoted-field`);
        const c = text[i] as string;
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          if (i < text.length && text[i] !== ',') {
            throw new Error(`parse error on line 1, column ${i + 1}: extraneous or missing " in quoted-field`);
          }
          break;
        }
        field += c;
        i++;
      }
    } else {
      while (i < text.length && text[i] !== ',') {
        if (text[i] === '"') throw new Error(`parse error on line 1, column ${i + 1}: bare " in non-quoted field`);
        field += text[i];
        i++;
      }
    }
    fields.push(field);
    if (i >= text.length) return fields;
    i++; // the comma
  }
}

/** docker's `units.RAMInBytes`: `64m`, `1g`, `512k`, `1.5GiB`, plain bytes (binary multiples). */
function ramInBytes(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$/.exec(s);
  if (m === null) return undefined;
  const n = Number(m[1]);
  if (!Number.isFinite(n)) return undefined;
  const unit = (m[2] ?? '').toLowerCase();
  const power = ['', 'k', 'm', 'g', 't', 'p'].indexOf(unit);
  return Math.floor(n * 1024 ** power);
}

/** True when the word references a variable (`$X`, `${X}`); a trailing lone `$` is literal. */
function hasVariable(value: string): boolean {
  const i = value.indexOf('$');
  return i !== -1 && i !== value.length - 1;
}

const MOUNT_KEYS = [
  'type', 'from', 'source', 'target', 'readonly', 'id', 'sharing', 'required', 'size', 'mode', 'uid', 'gid',
  'src', 'dst', 'destination', 'ro', 'rw', 'readwrite', 'env',
];

/**
 * Parses a `RUN --mount` value.
 * @param expand expands a value with the step's environment; without it, values holding a variable
 *   are left unchecked (except `from`, which never supports variables) and `needsExpansion` is set
 * @throws Error with BuildKit's messages, e.g. `unexpected key 'typ' in 'typ=tmpfs' (did you mean type?)`
 * @example parseMount('type=cache,target=/root/.cache,sharing=locked')
 */
export function parseMount(spec: string, expand?: (word: string) => string): RunMount {
  let fields: string[];
  try {
    fields = readCsvRecord(spec);
  } catch (cause) {
    throw new Error(`failed to parse csv mounts: ${messageOf(cause)}`, { cause });
  }
  let type: MountType = 'bind';
  let target: string | undefined;
  let source: string | undefined;
  let from: string | undefined;
  let readOnly = false;
  let roAuto = true;
  let sizeLimit: number | undefined;
  let id: string | undefined;
  let sharing: CacheSharing | undefined;
  let required = false;
  let mode: number | undefined;
  let uid: number | undefined;
  let gid: number | undefined;
  let env: string | undefined;
  let needsExpansion = false;

  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq >= 0 ? field.slice(0, eq) : field).toLowerCase();
    if (eq < 0) {
      switch (key) {
        case 'readonly':
        case 'ro':
          readOnly = true;
          roAuto = false;
          continue;
        case 'readwrite':
        case 'rw':
          readOnly = false;
          roAuto = false;
          continue;
        case 'required':
          if (type === 'secret' || type === 'ssh') {
            required = true;
            continue;
          }
          throw new Error(`unexpected key '${key}' for mount type '${type}'`);
        default:
          throw new Error(`invalid field '${field}' must be a key=value pair`);
      }
    }
    let value = field.slice(eq + 1);
    if (expand !== undefined) value = expand(value);
    else if (hasVariable(value)) {
      if (key === 'from') throw new Error(`'${key}' doesn't support variable expansion, define alias stage instead`);
      // Checked again by the builder once the step's environment is known.
      needsExpansion = true;
      if (key === 'target' || key === 'dst' || key === 'destination' || key === 'dest') target = value;
      else if (key === 'source' || key === 'src') source = value;
      else if (key === 'id') id = value;
      else if (key === 'env') env = value;
      continue;
    }
    const invalid = (): Error => new Error(`invalid value for ${key}: ${value}`);
    switch (key) {
      case 'type': {
        const t = value.toLowerCase();
        if (!(MOUNT_TYPES as readonly string[]).includes(t)) {
          throw new Error(withSuggestion(`unsupported mount type ${JSON.stringify(value)}`, value, MOUNT_TYPES, true));
        }
        type = t as MountType;
        break;
      }
      case 'target':
      case 'dst':
      case 'destination':
      case 'dest':
        target = value;
        break;
      case 'src':
      case 'source':
        source = value;
        break;
      case 'from':
        from = value;
        break;
      case 'readonly':
      case 'ro': {
        const b = parseGoBool(value);
        if (b === undefined) throw invalid();
        readOnly = b;
        roAuto = false;
        break;
      }
      case 'rw':
      case 'readwrite': {
        const b = parseGoBool(value);
        if (b === undefined) throw invalid();
        readOnly = !b;
        roAuto = false;
        break;
      }
      case 'required': {
        if (type !== 'secret' && type !== 'ssh') throw new Error(`unexpected key '${key}' for mount type '${type}'`);
        const b = parseGoBool(value);
        if (b === undefined) throw invalid();
        required = b;
        break;
      }
      case 'size': {
        if (type !== 'tmpfs') throw new Error(`unexpected key '${key}' for mount type '${type}'`);
        const n = ramInBytes(value);
        if (n === undefined) throw invalid();
        sizeLimit = n;
        break;
      }
      case 'id':
        id = value;
        break;
      case 'sharing': {
        const v = value.toLowerCase();
        if (!(CACHE_SHARING as readonly string[]).includes(v)) throw new Error(`unsupported sharing value ${JSON.stringify(value)}`);
        sharing = v as CacheSharing;
        break;
      }
      case 'mode':
        mode = parseUint(value, 8);
        if (mode === undefined) throw new Error(`invalid value ${value} for mode`);
        break;
      case 'uid':
        uid = parseUint(value, 10);
        if (uid === undefined) throw new Error(`invalid value ${value} for uid`);
        break;
      case 'gid':
        gid = parseUint(value, 10);
        if (gid === undefined) throw new Error(`invalid value ${value} for gid`);
        break;
      case 'env':
        env = value;
        break;
      default:
        throw new Error(withSuggestion(`unexpected key '${key}' in '${field}'`, key, MOUNT_KEYS, true));
    }
  }

  const fileInfoAllowed = type === 'secret' || type === 'ssh' || type === 'cache';
  if (!fileInfoAllowed) {
    if (mode !== undefined) throw new Error(`mode not allowed for ${JSON.stringify(type)} type mounts`);
    if (uid !== undefined) throw new Error(`uid not allowed for ${JSON.stringify(type)} type mounts`);
    if (gid !== undefined) throw new Error(`gid not allowed for ${JSON.stringify(type)} type mounts`);
  }
  // Bind/secret/ssh mounts are read-only unless asked otherwise; cache and tmpfs are writable.
  if (roAuto) readOnly = !(type === 'cache' || type === 'tmpfs');
  if (type === 'secret') {
    if (from !== undefined) throw new Error('secret mount should not have a from');
    if (sharing !== undefined) throw new Error('secret mount should not define sharing');
    if (source === undefined && target === undefined && id === undefined) throw new Error('invalid secret mount. one of source, target required');
    if (source !== undefined && id !== undefined) throw new Error("both source and id can't be set");
  }
  if (sharing !== undefined && type !== 'cache') throw new Error(`invalid cache sharing set for ${type} mount`);

  // Each type keeps its own fields (in the order `kiln parse` has always printed them); the checks above are
  // BuildKit's and run on whatever was written.
  const optional = {
    target: target !== undefined && { target }, source: source !== undefined && { source }, from: from !== undefined && { from },
    id: id !== undefined && { id }, mode: mode !== undefined && { mode }, uid: uid !== undefined && { uid }, gid: gid !== undefined && { gid },
  };
  switch (type) {
    case 'bind':
      return { type, readOnly, spec, needsExpansion, ...optional.target, ...optional.source, ...optional.from };
    case 'cache':
      return {
        type, readOnly, spec, needsExpansion, ...optional.target, ...optional.source, ...optional.from, ...optional.id,
        ...(sharing !== undefined && { sharing }), ...optional.mode, ...optional.uid, ...optional.gid,
      };
    case 'tmpfs':
      return { type, readOnly, spec, needsExpansion, ...optional.target, ...optional.from, ...(sizeLimit !== undefined && { sizeLimit }) };
    case 'secret':
      return {
        type, required, spec, needsExpansion, ...optional.target, ...optional.source, ...optional.id,
        ...optional.mode, ...optional.uid, ...optional.gid, ...(env !== undefined && { env }),
      };
    case 'ssh':
      return { type, required, spec, needsExpansion, ...optional.target, ...optional.from, ...optional.id, ...optional.mode, ...optional.uid, ...optional.gid };
    default:
      return assertNever(type);
  }
}

/**
 * Parses a `RUN --device` value: a CDI device name, optionally `name=` and `required[=bool]`.
 * @example parseDevice('vendor1.com/device=foo,required') // { name: 'vendor1.com/device=foo', required: true }
 */
export function parseDevice(spec: string): RunDevice {
  let fields: string[];
  try {
    fields = readCsvRecord(spec);
  } catch (cause) {
    throw new Error(`failed to parse csv devices: ${messageOf(cause)}`, { cause });
  }
  let name = '';
  let required = false;
  for (const field of fields) {
    const eq = field.indexOf('=');
    const key = (eq >= 0 ? field.slice(0, eq) : field).toLowerCase();
    if (eq < 0) {
      if (key === 'required' && name !== '') {
        required = true;
        continue;
      }
      if (name === '') {
        name = field;
        continue;
      }
      throw new Error(`invalid field '${field}' must be a key=value pair`);
    }
    const value = field.slice(eq + 1);
    switch (key) {
      case 'name':
        if (name !== '') throw new Error(`device name already set to ${name}`);
        name = value;
        break;
      case 'required': {
        const b = parseGoBool(value);
        if (b === undefined) throw new Error(`invalid value for ${key}: ${value}`);
        required = b;
        break;
      }
      default:
        // A CDI name may itself contain `=` (`vendor.com/class=dev`).
        if (name === '') {
          name = field;
          break;
        }
        throw new Error(`unexpected key '${key}' in '${field}'`);
    }
  }
  return { name, required };
}

/** BuildKit's handleJSONArgs: exec-form arguments as they are, shell-form ones joined with spaces. */
export function handleJsonArgs(args: readonly string[], json: boolean): string[] {
  if (args.length === 0) return [];
  return json ? [...args] : [args.join(' ')];
}

// ---------------------------------------------------------------------------------------------

/** BuildKit's getComment: the rest of a comment line that starts with `name `. */
function docComment(comments: readonly string[], name: string): string {
  if (name === '') return '';
  for (const line of comments) if (line.startsWith(`${name} `)) return line.slice(name.length + 1);
  return '';
}

/** BuildKit's nodeArgs: argument values, with ONBUILD's nested trigger flattened to keyword + args. */
function argValues(args: readonly ArgNode[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    const child = a.children[0];
    if (a.children.length === 1 && child !== undefined) {
      out.push(child.keyword.toLowerCase(), ...argValues(child.args));
    } else out.push(a.value);
  }
  return out;
}

function heredocFiles(heredocs: readonly Heredoc[]): readonly HeredocFile[] {
  if (heredocs.length === 0) return NO_HEREDOCS;
  return heredocs.map((h) => ({ name: h.name, data: h.content, chomp: h.chomp, expand: h.expand, fileDescriptor: h.fileDescriptor }));
}

/** `args` must be a fresh array (it becomes `argv`). */
function commandForm(args: string[], json: boolean): CommandForm {
  return json ? { form: 'exec', argv: args } : { form: 'shell', script: args.length === 1 ? args[0]! : args.join(' ') };
}

function atLeastOne(name: string): Error {
  return new Error(`${name} requires at least one argument`);
}
function exactlyOne(name: string): Error {
  return new Error(`${name} requires exactly one argument`);
}

const VALID_STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

/** Checks `FROM image [AS name]`; returns the lower-cased stage name ('' when none). */
export function parseBuildStageName(args: readonly string[]): string {
  if (args.length === 3 && (args[1] ?? '').toLowerCase() === 'as') {
    const written = args[2] ?? '';
    const name = written.toLowerCase();
    if (!VALID_STAGE_NAME.test(name)) {
      throw new Error(`invalid name for build stage: ${JSON.stringify(written)}, name can't start with a number or contain symbols`);
    }
    return name;
  }
  if (args.length !== 1) throw new Error('FROM requires either one or three arguments');
  return '';
}

/** ENV/LABEL arguments come from the parser as key, value, separator triples. */
function parseKvps(args: readonly string[], name: string): KeyValue[] {
  if (args.length === 0) throw atLeastOne(name);
  if (args.length % 3 !== 0) throw new Error(`Bad input to ${name}, too many arguments`);
  const out: KeyValue[] = [];
  for (let i = 0; i < args.length; i += 3) {
    const key = args[i] ?? '';
    if (key === '') throw new Error(`${name} names can not be blank`);
    out.push({ key, value: args[i + 1] ?? '', noDelim: (args[i + 2] ?? '') === '' });
  }
  return out;
}

function parseSourcesAndDest(
  node: InstructionNode,
  args: readonly string[],
  name: string,
): { sources: string[]; contents: InlineSource[]; dest: string } {
  const dest = args[args.length - 1] ?? '';
  if (parseHeredoc(dest) !== undefined) throw new Error(`${name} cannot accept a heredoc as a destination`);
  const sources: string[] = [];
  const contents: InlineSource[] = [];
  for (const src of args.slice(0, -1)) {
    const h = parseHeredoc(src);
    if (h === undefined) {
      sources.push(src);
      continue;
    }
    const body = node.heredocs.find((d) => d.name === h.name)?.content ?? '';
    contents.push({ path: h.name, data: h.chomp ? chompHeredocContent(body) : body, expand: h.expand });
  }
  return { sources, contents, dest };
}

/** An instruction under construction: optional fields are assigned only when set. */
type Draft<T> = { -readonly [K in keyof T]: T[K] };

const NO_HEREDOCS: readonly HeredocFile[] = Object.freeze([]);
const NO_MOUNTS: readonly RunMount[] = Object.freeze([]);
const NO_DEVICES: readonly RunDevice[] = Object.freeze([]);

/**
 * Types one instruction node.
 * @throws Error with BuildKit's message (no location; {@link toInstructions} adds it)
 */
export function toInstruction(node: InstructionNode): Instruction {
  const kind = node.keyword.toLowerCase();
  const args = argValues(node.args);
  const flags = new BFlags(node.flags);
  // The NodeBase fields, written out in each literal below: object spread (`{ ...base, … }`) is
  // far slower in V8 than a plain literal, and this runs once per instruction.
  const { range, original: source, comments, startLine, endLine, keyword } = node;
  switch (kind as InstructionKind) {
    case 'from': {
      const name = parseBuildStageName(args);
      const platform = flags.addString('platform');
      flags.parse();
      const r: Draft<FromInstruction> = { range, source, comments, startLine, endLine, keyword, kind: 'from', image: args[0] ?? '', docComment: docComment(node.comments, name) };
      if (name !== '') r.name = name;
      if (platform.value !== '') r.platform = platform.value;
      return r;
    }
    case 'run': {
      const mountFlag = flags.addStrings('mount');
      const network = flags.addString('network');
      const security = flags.addString('security');
      const device = flags.addStrings('device');
      flags.parse();
      const mounts = mountFlag.values.length === 0 ? NO_MOUNTS : mountFlag.values.map((v) => parseMount(v));
      if (network.value !== '' && !(NETWORK_MODES as readonly string[]).includes(network.value)) {
        throw new Error(`invalid network mode ${JSON.stringify(network.value)}`);
      }
      if (security.value !== '' && !(SECURITY_MODES as readonly string[]).includes(security.value)) {
        throw new Error(`security ${JSON.stringify(security.value)} is not valid`);
      }
      const r: Draft<RunInstruction> = {
        range, source, comments, startLine, endLine, keyword, kind: 'run', command: commandForm(args, node.json), heredocs: heredocFiles(node.heredocs),
        mounts, devices: device.values.length === 0 ? NO_DEVICES : device.values.map((v) => parseDevice(v)), flagsUsed: flags.used(),
      };
      if (network.value !== '') r.network = network.value as NetworkMode;
      if (security.value !== '') r.security = security.value as SecurityMode;
      return r;
    }
    case 'cmd':
    case 'entrypoint':
      flags.parse();
      return { range, source, comments, startLine, endLine, keyword, kind: kind as 'cmd' | 'entrypoint', command: commandForm(args, node.json), heredocs: heredocFiles(node.heredocs) };
    case 'copy': {
      if (args.length < 2) throw new Error('COPY requires at least two arguments, but only one was provided. Destination could not be determined');
      const chown = flags.addString('chown');
      const from = flags.addString('from');
      const chmod = flags.addString('chmod');
      const link = flags.addBool('link');
      const parents = flags.addBool('parents');
      const exclude = flags.addStrings('exclude');
      flags.parse();
      const { sources, contents, dest } = parseSourcesAndDest(node, args, 'COPY');
      const r: Draft<CopyInstruction> = {
        range, source, comments, startLine, endLine, keyword, kind: 'copy', sources, contents, dest,
        link: isTrue(link), parents: isTrue(parents), excludes: exclude.values,
      };
      if (from.value !== '') r.from = from.value;
      if (chown.value !== '') r.chown = chown.value;
      if (chmod.value !== '') r.chmod = chmod.value;
      return r;
    }
    case 'add': {
      if (args.length < 2) throw new Error('ADD requires at least two arguments, but only one was provided. Destination could not be determined');
      const chown = flags.addString('chown');
      const chmod = flags.addString('chmod');
      const link = flags.addBool('link');
      const keepGitDir = flags.addBool('keep-git-dir');
      const checksum = flags.addString('checksum');
      const exclude = flags.addStrings('exclude');
      const parents = flags.addBool('parents');
      const unpack = flags.addBool('unpack');
      flags.parse();
      const { sources, contents, dest } = parseSourcesAndDest(node, args, 'ADD');
      const r: Draft<AddInstruction> = {
        range, source, comments, startLine, endLine, keyword, kind: 'add', sources, contents, dest,
        link: isTrue(link), parents: isTrue(parents), excludes: exclude.values, keepGitDir: isTrue(keepGitDir),
      };
      if (flags.isUsed('unpack')) r.unpack = isTrue(unpack);
      if (checksum.value !== '') r.checksum = checksum.value;
      if (chown.value !== '') r.chown = chown.value;
      if (chmod.value !== '') r.chmod = chmod.value;
      return r;
    }
    case 'env':
    case 'label': {
      flags.parse();
      return { range, source, comments, startLine, endLine, keyword, kind: kind as 'env' | 'label', pairs: parseKvps(args, kind.toUpperCase()) };
    }
    case 'arg': {
      if (args.length === 0) throw atLeastOne('ARG');
      flags.parse();
      const decls = args.map((word): ArgDeclaration => {
        const eq = word.indexOf('=');
        const key = eq >= 0 ? word.slice(0, eq) : word;
        if (eq >= 0 && key === '') throw new Error('ARG names can not be blank');
        const d: Draft<ArgDeclaration> = { key, docComment: docComment(node.comments, key) };
        if (eq >= 0) d.value = word.slice(eq + 1);
        return d;
      });
      return { range, source, comments, startLine, endLine, keyword, kind: 'arg', args: decls };
    }
    case 'expose':
      if (args.length === 0) throw atLeastOne('EXPOSE');
      flags.parse();
      return { range, source, comments, startLine, endLine, keyword, kind: 'expose', ports: args };
    case 'user':
    case 'workdir':
    case 'stopsignal':
    case 'maintainer': {
      if (args.length !== 1) throw exactlyOne(kind.toUpperCase());
      flags.parse();
      const value = args[0] ?? '';
      if (kind === 'user') return { range, source, comments, startLine, endLine, keyword, kind, user: value };
      if (kind === 'workdir') return { range, source, comments, startLine, endLine, keyword, kind, path: value };
      if (kind === 'stopsignal') return { range, source, comments, startLine, endLine, keyword, kind, signal: value };
      return { range, source, comments, startLine, endLine, keyword, kind: 'maintainer', maintainer: value };
    }
    case 'volume': {
      if (args.length === 0) throw atLeastOne('VOLUME');
      flags.parse();
      const volumes = args.map((v) => {
        const t = v.trim();
        if (t === '') throw new Error('VOLUME specified can not be an empty string');
        return t;
      });
      return { range, source, comments, startLine, endLine, keyword, kind: 'volume', volumes };
    }
    case 'healthcheck':
      return { range, source, comments, startLine, endLine, keyword, kind: 'healthcheck', check: parseHealthcheck(args, node.json, flags) };
    case 'shell': {
      flags.parse();
      const shell = handleJsonArgs(args, node.json);
      if (shell.length === 0) throw atLeastOne('SHELL');
      if (!node.json) throw new Error('SHELL requires the arguments to be in JSON form');
      return { range, source, comments, startLine, endLine, keyword, kind: 'shell', shell };
    }
    case 'onbuild': {
      if (args.length === 0) throw atLeastOne('ONBUILD');
      flags.parse();
      const triggerWord = (args[0] ?? '').trim().toUpperCase();
      if (triggerWord === 'ONBUILD') throw new Error('Chaining ONBUILD via `ONBUILD ONBUILD` isn\'t allowed');
      if (triggerWord === 'MAINTAINER' || triggerWord === 'FROM') throw new Error(`${triggerWord} isn't allowed as an ONBUILD trigger`);
      const child = node.args[0]?.children[0];
      if (child === undefined) throw atLeastOne('ONBUILD');
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, '');
      for (const h of node.heredocs) expression += `\n${h.content}${h.name}`;
      return { range, source, comments, startLine, endLine, keyword, kind: 'onbuild', trigger: toInstruction(child), expression };
    }
    default:
      throw new Error(withSuggestion(`unknown instruction: ${node.keyword}`, node.keyword, INSTRUCTION_KINDS.map((k) => k.toUpperCase())));
  }
}

function parseHealthcheck(args: readonly string[], json: boolean, flags: BFlags): HealthcheckSpec {
  if (args.length === 0) throw atLeastOne('HEALTHCHECK');
  const type = (args[0] ?? '').toUpperCase();
  const rest = args.slice(1);
  if (type === 'NONE') {
    if (rest.length !== 0) throw new Error('HEALTHCHECK NONE takes no arguments');
    flags.parse();
    return { type: 'none' };
  }
  const interval = flags.addString('interval');
  const timeout = flags.addString('timeout');
  const startPeriod = flags.addString('start-period');
  const startInterval = flags.addString('start-interval');
  const retries = flags.addString('retries');
  flags.parse();
  if (type !== 'CMD') throw new Error(`Unknown type ${JSON.stringify(type)} in HEALTHCHECK (try CMD)`);
  const cmd = handleJsonArgs(rest, json);
  if (cmd.length === 0) throw new Error('Missing command after HEALTHCHECK CMD');
  let retryCount = 0;
  if (retries.value !== '') {
    if (!/^[+-]?[0-9]+$/.test(retries.value)) throw new Error(`strconv.ParseInt: parsing ${JSON.stringify(retries.value)}: invalid syntax`);
    retryCount = Number(retries.value);
    if (Math.abs(retryCount) > 2 ** 31 - 1) throw new Error(`strconv.ParseInt: parsing ${JSON.stringify(retries.value)}: value out of range`);
    if (retryCount < 0) throw new Error(`--retries cannot be negative (${retryCount})`);
  }
  return {
    type: 'cmd',
    test: [json ? 'CMD' : 'CMD-SHELL', ...cmd],
    command: commandForm(rest, json),
    interval: parseOptInterval('interval', interval.value),
    timeout: parseOptInterval('timeout', timeout.value),
    startPeriod: parseOptInterval('start-period', startPeriod.value),
    startInterval: parseOptInterval('start-interval', startInterval.value),
    retries: retryCount,
  };
}

/**
 * Types every instruction of a parsed file.
 * @throws DockerfileError at the failing instruction's range, with BuildKit's inner message
 */
export function toInstructions(ast: DockerfileAst, file: string): Instruction[] {
  const out: Instruction[] = [];
  for (const node of ast.instructions) {
    try {
      out.push(toInstruction(node));
    } catch (cause) {
      throw new DockerfileError(messageOf(cause), file, node.range, { cause });
    }
  }
  return out;
}
