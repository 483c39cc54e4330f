/**
 * Instruction flags (`--from=build`, `--link`, `--mount=…`), with BuildKit's `BFlags` semantics:
 * an instruction declares the flags it knows, then parses the raw `--x[=y]` words of its line.
 * Unknown flags are errors (with a "did you mean" suggestion), never ignored.
 */
import { withSuggestion } from './suggest.js';

/** How a flag takes its value: a string (`--from=x`), a boolean (`--link`, `--link=false`) or a repeatable string. */
export type FlagType = 'string' | 'bool' | 'strings';

/** One declared flag and, after {@link BFlags.parse}, its value. */
export interface Flag {
  readonly name: string;
  readonly type: FlagType;
  /** The value (the default until parsed); `'true'`/`'false'` for booleans, unused for `strings`. */
  value: string;
  /** Every value of a repeatable flag, in order (empty and frozen for the other types). */
  readonly values: string[];
}

// Every instruction builds one BFlags and declares its flags, so this is on the parser's hot
// path: a handful of flags is kept in an array (a linear search beats a Map at this size), and
// the common line without flags returns from `parse` at once.
const NO_VALUES: string[] = Object.freeze([]) as unknown as string[];

/** The declared flags of one instruction and the raw flag words to parse. */
export class BFlags {
  readonly args: readonly string[];
  readonly #flags: Flag[] = [];
  #used: string[] | undefined;

  /** @param args the raw flag words of the line, e.g. `['--from=build', '--link']` */
  constructor(args: readonly string[]) {
    this.args = args;
  }

  #find(name: string): Flag | undefined {
    for (const flag of this.#flags) if (flag.name === name) return flag;
    return undefined;
  }

  #add(name: string, type: FlagType, value: string): Flag {
    if (this.#find(name) !== undefined) throw new Error(`Duplicate flag defined: ${name}`);
    // Only repeatable flags collect values; the others share one frozen empty list.
    const flag: Flag = { name, type, value, values: type === 'strings' ? [] : NO_VALUES };
    this.#flags.push(flag);
    return flag;
  }

  /** Declares a string flag (`--name=value`, a value is required). */
  addString(name: string, defaultValue = ''): Flag {
    return this.#add(name, 'string', defaultValue);
  }

  /** Declares a boolean flag (`--name`, `--name=true`, `--name=false`). */
  addBool(name: string, defaultValue = false): Flag {
    return this.#add(name, 'bool', defaultValue ? 'true' : 'false');
  }

  /** Declares a repeatable string flag (`--exclude=a --exclude=b`). */
  addStrings(name: string): Flag {
    return this.#add(name, 'strings', '');
  }

  /**
   * Parses the flag words against the declared flags. A bare `--` ends the flags.
   * @throws Error with BuildKit's messages: `unknown flag: --x (did you mean y?)`,
   *   `missing a value on flag: --x`, `expecting boolean value for flag --x, not: v`, `duplicate flag specified: --x`
   */
  parse(): void {
    if (this.args.length === 0) return;
    const used: string[] = (this.#used ??= []);
    for (const raw of this.args) {
      if (!raw.startsWith('--')) throw new Error(`arg should start with -- : ${raw}`);
      if (raw === '--') return;
      const eq = raw.indexOf('=');
      const name = eq >= 0 ? raw.slice(2, eq) : raw.slice(2);
      const value = eq >= 0 ? raw.slice(eq + 1) : '';
      const flag = this.#find(name);
      if (flag === undefined) throw new Error(withSuggestion(`unknown flag: --${name}`, name, this.#flags.map((f) => f.name), true));
      if (used.includes(name)) {
        if (flag.type !== 'strings') throw new Error(`duplicate flag specified: --${name}`);
      } else used.push(name);
      switch (flag.type) {
        case 'bool': {
          // `--link=` is an error; only a flag written without `=` means true.
          if (eq >= 0 && value === '') throw new Error(`missing a value on flag: --${name}`);
          const lower = value.toLowerCase();
          if (lower === '') flag.value = 'true';
          else if (lower === 'true' || lower === 'false') flag.value = lower;
          else throw new Error(`expecting boolean value for flag --${name}, not: ${value}`);
          break;
        }
        case 'string':
          if (eq < 0) throw new Error(`missing a value on flag: --${name}`);
          flag.value = value;
          break;
        case 'strings':
          if (eq < 0) throw new Error(`missing a value on flag: --${name}`);
          flag.values.push(value);
          break;
      }
    }
  }

  /** True when the flag was written on the line (even with its default value). */
  isUsed(name: string): boolean {
    return this.#used !== undefined && this.#used.includes(name);
  }

  /** The names of the flags written on the line, in the order they first appear. */
  used(): string[] {
    return this.#used === undefined ? [] : [...this.#used];
  }
}

/** The value of a boolean flag. */
export function isTrue(flag: Flag): boolean {
  if (flag.type !== 'bool') throw new Error(`Trying to use IsTrue on a non-boolean: ${flag.name}`);
  return flag.value === 'true';
}
