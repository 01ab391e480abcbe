/**
 * The training process of a host started by the training itself (docs/python.md §4, "No host at all"):
 * `python train.py` runs `muonscope run --attach-pid PID` and connects back. The host did not start
 * that process, so it cannot wait on it: it watches the pid instead, and the run's end is either the
 * process saying bye and closing its connection, or the pid going away.
 *
 * Unlike SupervisedChild, the host never signals this process: it is the host's parent, not its child,
 * and a host that is asked to stop leaves the training running (the Python side then writes the log
 * itself, §4 "The host goes away").
 */
import { readFileSync } from 'node:fs';
import type { ChildExit } from './child.js';

/** How often the pid is checked. */
const POLL_MS = 200;
/** After the pid is gone, how long the connection's last bytes may still take to be read (the kernel
 * closes a dead process's socket after everything it sent, but a timer can fire before they are read). */
const DRAIN_MS = 2000;

/** Whether `pid` is a live process: it exists (EPERM counts) and is not a zombie waiting to be reaped. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/PID/stat: "pid (comm) S …"; comm may hold spaces and parentheses, the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc (macOS): kill(pid, 0) is all there is
  }
}

export interface AttachedOptions {
  pid: number;
  /** Whether the process's channel connection is still open (its last records may be on the way). */
  connected: () => boolean;
  pollMs?: number;
  drainMs?: number;
}

export class AttachedProcess {
  readonly pid: number;
  /** Resolves when the run is over for the host: bye and close, the pid gone, or the host stopped. */
  readonly exited: Promise<ChildExit>;
  private result: ChildExit | undefined;
  private resolve!: (exit: ChildExit) => void;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly options: AttachedOptions) {
    this.pid = options.pid;
    this.exited = new Promise<ChildExit>((resolve) => (this.resolve = resolve));
    const poll = options.pollMs ?? POLL_MS;
    this.timer = setInterval(() => {
      if (pidAlive(this.pid)) return;
      clearInterval(this.timer);
      const gone = { code: null, signal: null, description: `the Python process (pid ${this.pid}) ended without saying bye` };
      const deadline = Date.now() + (options.drainMs ?? DRAIN_MS);
      const drained = setInterval(() => {
        if (!this.options.connected() || Date.now() >= deadline) {
          clearInterval(drained);
          this.end(gone);
        }
      }, 20);
    }, poll);
  }

  get running(): boolean {
    return this.result === undefined;
  }

  /** The process said bye and closed its connection: the run ended cleanly. */
  saidBye(reason: string): void {
    this.end({ code: 0, signal: null, description: `the Python process (pid ${this.pid}) said bye${reason ? ` (${reason})` : ''}` });
  }

  /** The host itself was asked to stop: the training goes on without it. */
  detach(signal: NodeJS.Signals): void {
    this.end({ code: null, signal, description: `the host got ${signal}; the Python process (pid ${this.pid}) goes on and writes the log itself` });
  }

  private end(exit: ChildExit): void {
    if (this.result) return;
    clearInterval(this.timer);
    this.result = exit;
    this.resolve(exit);
  }
}
