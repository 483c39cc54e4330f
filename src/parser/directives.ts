/**
 * Parser directives (`# syntax=`, `# escape=`, `# check=`) from the leading comment block,
 * and BuildKit's `DetectSyntax` / `ParseDirective` helpers.
 */

/** The directives BuildKit recognises; any other key ends the directive block. */
export const ALLOWED_DIRECTIVES = ['escape', 'syntax', 'check'] as const;

/** One directive as found in the text: lowercased name, raw value, 1-based line. */
export interface FoundDirective {
  readonly name: string;
  readonly value: string;
  readonly line: number;
}

// Go's \s is [\t\n\f\r ]; `.` never matches \n.
function directiveRegexp(prefix: string): RegExp {
  return new RegExp(`^${prefix}[\\t\\n\\f\\r ]*([a-zA-Z][a-zA-Z0-9]*)[\\t\\n\\f\\r ]*=[\\t\\n\\f\\r ]*([^\\n]+?)[\\t\\n\\f\\r ]*$`);
}
const RE_HASH = directiveRegexp('#');
const RE_SLASH = directiveRegexp('//');

/**
 * BuildKit's `DirectiveParser`: feed it lines in order; it returns a directive while the
 * block lasts and nothing after the first line that is not one. A repeated key throws.
 */
export class DirectiveParser {
  #line: number;
  #done = false;
  readonly #re: RegExp;
  readonly #seen = new Set<string>();
  readonly parsed: FoundDirective[] = [];

  constructor(options: { commentPrefix?: '#' | '//'; firstLine?: number } = {}) {
    this.#re = options.commentPrefix === '//' ? RE_SLASH : RE_HASH;
    this.#line = options.firstLine ?? 0;
  }

  /** True once a non-directive line ended the block. */
  get done(): boolean {
    return this.#done;
  }

  /** Parses one line (without its line break). */
  parseLine(line: string): FoundDirective | undefined {
    this.#line++;
    if (this.#done) return undefined;
    const m = this.#re.exec(line);
    if (!m) {
      this.#done = true;
      return undefined;
    }
    const name = m[1]!.toLowerCase();
    if (!(ALLOWED_DIRECTIVES as readonly string[]).includes(name)) {
      this.#done = true;
      return undefined;
    }
    if (this.#seen.has(name)) throw new Error(`only one ${name} parser directive can be used`);
    this.#seen.add(name);
    const d = { name, value: m[2]!, line: this.#line };
    this.parsed.push(d);
    return d;
  }

  /** Parses every leading directive of `text` (BuildKit's `ParseAll`). */
  parseAll(text: string): FoundDirective[] {
    for (const raw of text.split('\n')) {
      if (this.#done) break;
      this.parseLine(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
    }
    return this.parsed;
  }
}

/** Checks an `escape` directive value and returns the escape token. */
export function escapeTokenOf(value: string): '\\' | '`' {
  if (value !== '`' && value !== '\\') throw new Error(`invalid escape token '${value}' does not match \` or \\`);
  return value;
}

/** What {@link detectSyntax} and {@link parseDirective} find. */
export interface DetectedDirective {
  /** The value up to its first space (e.g. the frontend image reference). */
  readonly ref: string;
  /** The whole value. */
  readonly cmdline: string;
  /** 1-based line of the directive. */
  readonly line: number;
}

function stripBomAndShebang(text: string): { text: string; line: number } {
  let t = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let line = 0;
  if (t.startsWith('#!')) {
    const nl = t.indexOf('\n');
    t = nl < 0 ? '' : t.slice(nl + 1);
    line = 1;
  }
  return { text: t, line };
}

function fromParser(key: string, text: string, parser: DirectiveParser): DetectedDirective | undefined {
  let found: FoundDirective[];
  try {
    found = parser.parseAll(text);
  } catch {
    found = parser.parsed;
  }
  const d = found.find((x) => x.name === key);
  if (!d) return undefined;
  const sp = d.value.indexOf(' ');
  return { ref: sp < 0 ? d.value : d.value.slice(0, sp), cmdline: d.value, line: d.line };
}

/**
 * BuildKit's `ParseDirective(key, text)`: the `# key=value` directive at the top of the file,
 * after an optional BOM and `#!` line. For `syntax` it also accepts `//syntax=` and a JSON
 * document `{"syntax": "…"}`.
 */
export function parseDirective(key: string, text: string): DetectedDirective | undefined {
  const { text: t, line } = stripBomAndShebang(text);
  const hash = fromParser(key, t, new DirectiveParser({ firstLine: line }));
  if (hash) return hash;
  if (key !== 'syntax') return undefined;
  const slash = fromParser(key, t, new DirectiveParser({ commentPrefix: '//', firstLine: line }));
  if (slash) return slash;
  try {
    const json: unknown = JSON.parse(t);
    if (json && typeof json === 'object' && !Array.isArray(json)) {
      const v = (json as Record<string, unknown>)[key];
      if (typeof v === 'string') return { ref: v, cmdline: v, line };
    }
  } catch {
    // not JSON: no directive
  }
  return undefined;
}

/** BuildKit's `DetectSyntax`: the `# syntax=` frontend reference, if any. */
export function detectSyntax(text: string): DetectedDirective | undefined {
  return parseDirective('syntax', text);
}
