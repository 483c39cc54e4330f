/**
 * Runs the benchmarks' shell commands (the floors, skopeo, `sync`, `cp -a`) in ONE bash process started once,
 * instead of forking the benchmark process for each.
 *
 * Why: Node's child_process forks, and after a fork every page of the parent is copy-on-write, so the parent's
 * next write to each page faults and copies it: on these VMs a 32 MiB buffer written right after
 * `execFileSync('true')` took 136 ms instead of 1.6 ms. A benchmark that timed a floor (or ran `sync`) through
 * child_process and then timed kiln in the same process charged kiln for that fork; kiln itself never forks
 * during a build (src/runtime/process.ts spawns through the addon). With this runner the benchmark process forks
 * once, at start, before anything is measured.
 *
 * Times are taken inside bash (`$EPOCHREALTIME`, no fork) around the command, so they include the command's own
 * process start-up, as `sh -c` timed from outside did, minus that of `sh`.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** What one command did: exit status, wall seconds, and its stdout and stderr together. */
export interface ShellResult {
  readonly code: number;
  readonly seconds: number;
  readonly output: string;
}

export class ShellRunner {
  private readonly bash: ChildProcessWithoutNullStreams;
  private readonly dir: string;
  private buffered = '';
  private waiting: ((line: string) => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private seq = 0;

  constructor() {
    this.dir = mkdtempSync(path.join(tmpdir(), 'kiln-bench-shell-'));
    this.bash = spawn('bash', ['--noprofile', '--norc'], { env: { ...process.env, LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.bash.stdout.setEncoding('utf8');
    this.bash.stdout.on('data', (text: string) => {
      this.buffered += text;
      const nl = this.buffered.indexOf('\n');
      if (nl < 0) return;
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.(line);
    });
    this.bash.stderr.resume();
  }

  /** Runs `script` (bash syntax) with stdin from /dev/null; commands run one at a time, in call order. */
  run(script: string): Promise<ShellResult> {
    const next = this.queue.then(() => this.runNow(script));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Like {@link run}, but throws when the command fails, with its output. */
  async check(script: string): Promise<ShellResult> {
    const r = await this.run(script);
    if (r.code !== 0) throw new Error(`${script}: exit ${r.code}\n${r.output}`);
    return r;
  }

  /** Ends the bash process and removes the output files. */
  close(): void {
    this.bash.stdin.end();
    this.bash.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private runNow(script: string): Promise<ShellResult> {
    const out = path.join(this.dir, `out-${++this.seq}`);
    const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    return new Promise<ShellResult>((resolve, reject) => {
      const onExit = () => reject(new Error('the benchmark shell exited'));
      this.bash.once('exit', onExit);
      this.waiting = (line) => {
        this.bash.off('exit', onExit);
        const [code, t0, t1] = line.split(' ').map(Number);
        const output = readFileSync(out, 'utf8');
        rmSync(out, { force: true });
        if (code === undefined || t0 === undefined || t1 === undefined || Number.isNaN(t1)) reject(new Error(`benchmark shell said: ${line}`));
        else resolve({ code, seconds: t1 - t0, output });
      };
      // eval keeps the script's syntax errors and `exit` inside a status instead of ending the runner.
      this.bash.stdin.write(`__t0=$EPOCHREALTIME; (eval ${q(script)}) </dev/null >${q(out)} 2>&1; echo "$? $__t0 $EPOCHREALTIME"\n`);
    });
  }
}

let shared: ShellRunner | undefined;

/** The benchmark process's one shell, started on first use (start it early: see the module comment). */
export function benchShell(): ShellRunner {
  return (shared ??= new ShellRunner());
}

/** Ends the shared shell, if it was started. */
export function closeBenchShell(): void {
  shared?.close();
  shared = undefined;
}
