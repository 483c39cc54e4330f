/**
 * Renders build events on stderr: a live TTY view (running steps with their time and the tail of
 * their output, finished steps scroll up), plain lines for CI logs, or JSON lines for tools.
 */
import type { BuildEvent, StepRef } from '../index.js';

export type ProgressMode = 'auto' | 'tty' | 'plain' | 'rawjson' | 'quiet';

export interface ProgressPrinter {
  onEvent(event: BuildEvent): void;
  /** Stops the live view's timer and leaves the cursor below it. */
  done(): void;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;
const label = (s: StepRef): string => `[${s.stage} ${s.index}/${s.total}] ${s.text}`;

export function createProgressPrinter(mode: ProgressMode, out: NodeJS.WriteStream): ProgressPrinter {
  const resolved = mode === 'auto' ? (out.isTTY ? 'tty' : 'plain') : mode;
  if (resolved === 'quiet') return { onEvent: () => {}, done: () => {} };
  if (resolved === 'rawjson') {
    return {
      onEvent: (e) => out.write(`${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`),
      done: () => {},
    };
  }
  if (resolved === 'plain') return plainPrinter(out);
  return ttyPrinter(out);
}

function plainPrinter(out: NodeJS.WriteStream): ProgressPrinter {
  const partial = new Map<number, string>();
  const started = new Set<number>();
  return {
    onEvent(e) {
      switch (e.type) {
        case 'build-start':
          out.write(`#0 building with kiln: ${e.dockerfile}, ${e.steps} steps\n`);
          break;
        case 'step-start':
          started.add(e.step.index);
          out.write(`#${e.step.index} ${label(e.step)}\n`);
          break;
        case 'step-cached':
          if (!started.has(e.step.index)) out.write(`#${e.step.index} ${label(e.step)}\n`);
          out.write(`#${e.step.index} CACHED\n`);
          break;
        case 'step-output': {
          const text = (partial.get(e.step.index) ?? '') + e.chunk;
          const lines = text.split('\n');
          partial.set(e.step.index, lines.pop() ?? '');
          for (const line of lines) out.write(`#${e.step.index} ${line}\n`);
          break;
        }
        case 'step-done': {
          const rest = partial.get(e.step.index);
          if (rest) out.write(`#${e.step.index} ${rest}\n`);
          partial.delete(e.step.index);
          out.write(`#${e.step.index} DONE ${seconds(e.durationMs)}\n`);
          break;
        }
        case 'progress':
          out.write(`# ${e.message}${e.total ? ` ${e.current ?? 0}/${e.total}` : ''}\n`);
          break;
        case 'warning':
          out.write(`WARNING: ${e.message}${e.line ? ` (line ${e.line})` : ''}\n`);
          break;
        case 'build-done':
          out.write(`#${e.result.steps.length + 1} DONE ${seconds(e.result.durationMs)} ${e.result.metadata['containerimage.digest']}\n`);
          break;
      }
    },
    done() {},
  };
}

function ttyPrinter(out: NodeJS.WriteStream): ProgressPrinter {
  interface Running {
    step: StepRef;
    started: number;
    tail: string[];
  }
  const running = new Map<number, Running>();
  let drawn = 0; // lines of the live block currently on screen
  let startedAt = Date.now();
  const width = (): number => Math.max(40, (out.columns ?? 100) - 1);
  const clip = (s: string): string => (s.length > width() ? `${s.slice(0, width() - 1)}…` : s);

  const erase = (): void => {
    if (drawn > 0) out.write(`\x1b[${drawn}A\x1b[0J`);
    drawn = 0;
  };
  const draw = (): void => {
    const lines: string[] = [];
    for (const r of running.values()) {
      lines.push(clip(` => ${label(r.step)}  ${seconds(Date.now() - r.started)}`));
      for (const t of r.tail) lines.push(clip(`    \x1b[2m${t}\x1b[0m`));
    }
    lines.push(clip(`\x1b[1m[+] Building ${seconds(Date.now() - startedAt)}\x1b[0m`));
    out.write(`${lines.join('\n')}\n`);
    drawn = lines.length;
  };
  const print = (line: string): void => {
    erase();
    out.write(`${clip(line)}\n`);
    draw();
  };
  const timer = setInterval(() => {
    erase();
    draw();
  }, 100);
  timer.unref();

  return {
    onEvent(e) {
      switch (e.type) {
        case 'build-start':
          startedAt = Date.now();
          break;
        case 'step-start':
          running.set(e.step.index, { step: e.step, started: Date.now(), tail: [] });
          erase();
          draw();
          break;
        case 'step-cached':
          print(` => CACHED ${label(e.step)}`);
          break;
        case 'step-output': {
          const r = running.get(e.step.index);
          if (!r) break;
          const lines = e.chunk.split('\n').map((l) => l.replace(/\r/g, '')).filter((l) => l.length > 0);
          r.tail.push(...lines);
          r.tail.splice(0, Math.max(0, r.tail.length - 6));
          break;
        }
        case 'step-done':
          running.delete(e.step.index);
          print(` => ${label(e.step)}  ${seconds(e.durationMs)}`);
          break;
        case 'progress':
          print(` => ${e.message}${e.total ? ` ${e.current ?? 0}/${e.total}` : ''}`);
          break;
        case 'warning':
          print(`\x1b[33mWARNING: ${e.message}\x1b[0m`);
          break;
        case 'build-done':
          running.clear();
          print(` => done in ${seconds(e.result.durationMs)}: ${e.result.metadata['containerimage.digest']}`);
          break;
      }
    },
    done() {
      clearInterval(timer);
      erase();
    },
  };
}
