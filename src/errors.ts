/**
 * kiln's error classes. Every error a user can see is a BuildError with a stable `code`;
 * errors about the Dockerfile carry the file and the source range so that
 * {@link formatError} can show the line with a caret.
 */

/** A position in a source text. `line` and `column` are 1-based; `offset` is a 0-based UTF-16 index. */
export interface Position {
  readonly offset: number;
  readonly line: number;
  readonly column: number;
}

/** A range in a source text; `end` is exclusive. */
export interface SourceRange {
  readonly start: Position;
  readonly end: Position;
}

/** Base class of every error kiln throws on purpose. */
export class BuildError extends Error {
  override name = 'BuildError';
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** The Dockerfile (or an ignore file) is malformed or means something kiln refuses to build. */
export class DockerfileError extends BuildError {
  override name = 'DockerfileError';
  readonly file: string;
  readonly range: SourceRange;
  constructor(message: string, file: string, range: SourceRange, options?: ErrorOptions) {
    super('DOCKERFILE', message, options);
    this.file = file;
    this.range = range;
  }
}

/** A build step ran and failed (a RUN that exited nonzero, a COPY source that is missing …). */
export class StepFailedError extends BuildError {
  override name = 'StepFailedError';
  readonly file: string;
  readonly range: SourceRange;
  readonly instruction: string;
  readonly exitCode: number | undefined;
  readonly outputTail: string;
  constructor(
    message: string,
    details: { file: string; range: SourceRange; instruction: string; exitCode?: number; outputTail?: string },
    options?: ErrorOptions,
  ) {
    super('STEP_FAILED', message, options);
    this.file = details.file;
    this.range = details.range;
    this.instruction = details.instruction;
    this.exitCode = details.exitCode;
    this.outputTail = details.outputTail ?? '';
  }
}

/** The container runtime, the layer store or an image source failed (not the user's Dockerfile). */
export class RuntimeError extends BuildError {
  override name = 'RuntimeError';
  constructor(message: string, options?: ErrorOptions) {
    super('RUNTIME', message, options);
  }
}

/** A registry answered with an error or could not be reached. */
export class RegistryError extends BuildError {
  override name = 'RegistryError';
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: ErrorOptions) {
    super('REGISTRY', message, options);
    this.status = status;
  }
}

/** No image in the store has the name or digest asked for (the images API: inspect, tag, push, run, save). */
export class ImageNotFoundError extends BuildError {
  override name = 'ImageNotFoundError';
  /** The name or digest as given. */
  readonly image: string;
  constructor(image: string, options?: ErrorOptions) {
    super('IMAGE_NOT_FOUND', `image not found: ${image}`, options);
    this.image = image;
  }
}

/** The message of anything thrown, for wrapping at a boundary. */
export function messageOf(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

/** Makes a zero-width range at a 1-based line (column 1), for errors that only know a line. */
export function lineRange(line: number, column = 1): SourceRange {
  const p = { offset: 0, line, column };
  return { start: p, end: p };
}

/**
 * Renders an error the way the CLI shows it:
 * `Dockerfile:7:1: error: message`, then the source line and a caret under the range.
 * `source` is the text of the file the error names, when the caller has it.
 */
export function formatError(err: unknown, source?: string): string {
  if (err instanceof DockerfileError || err instanceof StepFailedError) {
    const { line, column } = err.range.start;
    let out = `${err.file}:${line}:${column}: error: ${err.message}`;
    const text = source?.split(/\r?\n/)[line - 1];
    if (text !== undefined) {
      const width = err.range.end.line === line ? Math.max(1, err.range.end.column - column) : Math.max(1, text.length - column + 1);
      out += `\n ${String(line).padStart(4)} | ${text}\n      | ${' '.repeat(Math.max(0, column - 1))}${'^'.repeat(width)}`;
    }
    if (err instanceof StepFailedError && err.outputTail) out += `\n${err.outputTail.replace(/\n$/, '')}`;
    return out;
  }
  if (err instanceof Error) return `error: ${err.message}`;
  return `error: ${String(err)}`;
}

/** Exhaustiveness check for discriminated unions. */
export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(value)}`);
}
