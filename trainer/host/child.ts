/**
 * The training command as a supervised child (docs/python.md §2, §4): started with the channel's
 * environment, its output passed through and its last lines kept for the crash record, signals forwarded.
 *
 * It runs in its own process group, so a Ctrl-C in the terminal reaches only the host, which forwards it
 * once; otherwise the command would get the terminal's SIGINT and the host's. For the same reason stdin is
 * not passed on (a background process group reading the terminal would be stopped).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { RankLines } from './rank-failure.js';

/** How many of the command's last output lines are kept. */
export const TAIL_LINES = 50;
/** Longer lines are kept cut, so the tail stays small whatever the command prints. */
const MAX_LINE_CHARS = 500;

/** The last `max` lines of one or more streams, in arrival order, each stream's partial line held apart. */
export class LineTail {
  private readonly lines: string[] = [];
  private readonly partial = new Map<string, string>();

  constructor(
    private readonly max = TAIL_LINES,
    /** Every complete line, as it passes (the per-rank lines of a data-parallel launch, rank-failure.ts). */
    private readonly onLine: (line: string) => void = () => undefined,
  ) {}

  push(stream: string, text: string): void {
    const parts = ((this.partial.get(stream) ?? '') + text).split('\n');
    this.partial.set(stream, parts.pop()!.slice(-4 * MAX_LINE_CHARS));
    for (const line of parts) this.add(line);
  }

  /** Ends every stream's partial line (the process exited). */
  flush(): void {
    for (const rest of this.partial.values()) if (rest) this.add(rest);
    this.partial.clear();
  }

  get(): string[] {
    return [...this.lines];
  }

  private add(line: string): void {
    const clean = line.replace(/\r$/, '');
    this.onLine(clean.length > MAX_LINE_CHARS ? clean.slice(0, MAX_LINE_CHARS) : clean);
    this.lines.push(clean.length > MAX_LINE_CHARS ? `${clean.slice(0, MAX_LINE_CHARS - 1)}…` : clean);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
  }
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The command could not be started (e.g. not found). */
  error?: Error;
  /** What happened, in words, when it is not a plain exit (a process the host did not start, attached.ts). */
  description?: string;
}

export function describeExit(exit: ChildExit): string {
  if (exit.error) return `could not be started: ${exit.error.message}`;
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code}`;
}

export interface ChildOptions {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Where the command's output goes (the host's own stdout and stderr in the CLI). */
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export class SupervisedChild {
  /** Each rank's own last lines, when the command is a data-parallel launcher (torchrun). */
  readonly ranks = new RankLines();
  readonly tail = new LineTail(TAIL_LINES, (line) => this.ranks.add(line));
  /** Resolves once the process has exited and its output is read to the end. */
  readonly exited: Promise<ChildExit>;
  private readonly child: ChildProcess;
  private result: ChildExit | undefined;

  constructor(options: ChildOptions) {
    this.child = spawn(options.command, options.args, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    // A stream whose last chunk did not end its line (a process killed mid-line) gets the newline at the
    // end, so that what the host prints next starts a line of its own.
    const openLine = new Set<NodeJS.WritableStream>();
    const pass = (name: 'stdout' | 'stderr', out: NodeJS.WritableStream) =>
      this.child[name]!.on('data', (chunk: Buffer) => {
        out.write(chunk);
        if (chunk.length > 0) (chunk[chunk.length - 1] === 0x0a ? openLine.delete(out) : openLine.add(out));
        this.tail.push(name, chunk.toString('utf8'));
      });
    pass('stdout', options.stdout);
    pass('stderr', options.stderr);
    this.exited = new Promise<ChildExit>((resolve) => {
      const done = (exit: ChildExit) => {
        if (this.result) return;
        this.result = exit;
        this.tail.flush();
        for (const out of openLine) out.write('\n');
        resolve(exit);
      };
      this.child.once('error', (error) => {
        // A failed spawn emits no 'exit'; an error after a successful start (a failed kill) is not an exit.
        if (this.child.pid === undefined) done({ code: null, signal: null, error });
      });
      // 'close' comes once the output is read to the end; a grandchild that kept the pipes open must not
      // keep the run from ending, so the exit counts after a grace period.
      this.child.once('exit', (code, signal) => setTimeout(() => done({ code, signal }), 2000).unref());
      this.child.once('close', (code, signal) => done({ code, signal }));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.result === undefined && this.child.pid !== undefined;
  }

  /** Sends a signal to the command's process group, as Ctrl-C in a terminal would (data-loader workers included). */
  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(-this.child.pid!, signal);
    } catch {
      // The group is gone (or never formed): try the process itself; if that is gone too, its exit is on its way.
      try {
        this.child.kill(signal);
      } catch {
        /* already exited */
      }
    }
  }
}
