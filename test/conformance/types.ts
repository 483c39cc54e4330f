/** The contract between the conformance runner (scripts/conformance.ts) and each set's checker. */

/** The outcome of one set (one table or one directory of cases). */
export interface SetResult {
  /** e.g. `parser/testfiles`, `shell/envVarTest`, `corpus/real-world`. */
  readonly name: string;
  passed: number;
  failed: number;
  skipped: number;
  /** One line per failed case: `<case id>: <what differed>`. */
  readonly failures: string[];
  /** Why cases were skipped (e.g. a table of Go-internal helpers kiln has no equivalent of). */
  readonly skipReasons: string[];
}

/**
 * A checker reads the sets it knows under `root` (a directory laid out like ../shared:
 * `conformance/<set>/…`, `corpus/real-world/…`) and returns one result per set it found.
 * A set whose directory is absent is left out, not failed; the runner fails when nothing was found.
 */
export type Checker = (root: string) => Promise<SetResult[]>;

export function newResult(name: string): SetResult {
  return { name, passed: 0, failed: 0, skipped: 0, failures: [], skipReasons: [] };
}

/** Runs one case: a thrown error or a returned message is a failure; `undefined` is a pass. */
export function check(result: SetResult, id: string, fn: () => string | undefined): void {
  let problem: string | undefined;
  try {
    problem = fn();
  } catch (err) {
    problem = `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
  }
  if (problem === undefined) result.passed++;
  else {
    result.failed++;
    result.failures.push(`${id}: ${problem}`);
  }
}

/** Compares two JSON-able values; returns a message when they differ. */
export function diff(actual: unknown, expected: unknown): string | undefined {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  return a === e ? undefined : `expected ${e}, got ${a}`;
}
