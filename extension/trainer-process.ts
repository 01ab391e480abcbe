/**
 * One trainer child process: `child_process.fork` of the bundled CLI (so it runs under desktop VS Code's
 * Electron-as-Node and a plain Node host alike; `execPath` comes from the nodePath setting when set).
 *
 * Its stdout and stderr go to a file, not a pipe: with "keep running" on, the trainer must outlive this
 * extension host, and a trainer writing progress into a pipe whose reader is gone dies of EPIPE. The file
 * is tailed for lines; the first stdout line is the `listening` JSON with URL, token and run folder.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, fstatSync } from 'node:fs';
import { dirname } from 'node:path';

export interface ListeningInfo {
  url: string;
  token: string;
  runDir: string;
}

export interface LaunchOptions {
  cliPath: string;
  /** Node binary for the trainer; undefined: the editor's own runtime. */
  execPath?: string;
  args: string[];
  cwd: string;
  /** Where the trainer's stdout/stderr are written. */
  outputFile: string;
  /** Own process group, so closing the window does not take it along. */
  detached: boolean;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Parses the trainer's first stdout line; undefined if the line is anything else. */
export function parseListeningLine(line: string): ListeningInfo | undefined {
  try {
    const v = JSON.parse(line) as Record<string, unknown>;
    if (v.event === 'listening' && typeof v.url === 'string' && typeof v.token === 'string' && typeof v.runDir === 'string') {
      return { url: v.url, token: v.token, runDir: v.runDir };
    }
  } catch {
    // not the listening line
  }
  return undefined;
}

/** Follows a growing file and calls back once per complete line. */
class FileTail {
  private offset = 0;
  private partial = '';
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(private readonly fd: number, private readonly onLine: (line: string) => void, intervalMs = 200) {
    this.timer = setInterval(() => this.poll(), intervalMs);
  }

  poll(): void {
    const size = fstatSync(this.fd).size;
    while (this.offset < size) {
      const buf = Buffer.alloc(Math.min(size - this.offset, 1 << 20));
      const n = readSync(this.fd, buf, 0, buf.length, this.offset);
      if (n <= 0) break;
      this.offset += n;
      const text = this.partial + buf.toString('utf8', 0, n);
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) this.onLine(line.replace(/\r$/, ''));
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.poll();
    if (this.partial) this.onLine(this.partial);
    this.partial = '';
    closeSync(this.fd);
  }
}

export class TrainerProcess {
  readonly listening: Promise<ListeningInfo>;
  readonly exited: Promise<ExitInfo>;
  private readonly child: ChildProcess;
  private readonly tail: FileTail;
  private readonly recent: string[] = [];
  private exitInfo: ExitInfo | undefined;

  constructor(o: LaunchOptions, onLine: (line: string) => void) {
    mkdirSync(dirname(o.outputFile), { recursive: true });
    const out = openSync(o.outputFile, 'a');
    let gotListening: (info: ListeningInfo) => void;
    let noListening: (e: Error) => void;
    this.listening = new Promise((resolve, reject) => {
      gotListening = resolve;
      noListening = reject;
    });
    let listeningSeen = false;
    this.tail = new FileTail(openSync(o.outputFile, 'r'), (line) => {
      if (!listeningSeen) {
        const info = parseListeningLine(line);
        if (info) {
          listeningSeen = true;
          gotListening(info);
          return; // the token stays out of logs
        }
      }
      this.recent.push(line);
      if (this.recent.length > 200) this.recent.shift();
      onLine(line);
    });
    this.child = fork(o.cliPath, o.args, {
      cwd: o.cwd,
      execPath: o.execPath,
      stdio: ['ignore', out, out, 'ipc'],
      detached: o.detached,
      // Plain progress lines, not a terminal bar; and Electron must behave as Node.
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1', NO_COLOR: '1' },
    });
    closeSync(out);
    this.exited = new Promise((resolve) => {
      const done = (info: ExitInfo) => {
        if (this.exitInfo) return;
        this.exitInfo = info;
        this.tail.close();
        if (!listeningSeen) noListening(new Error(`the trainer exited before it was ready (${describeExit(info)})`));
        resolve(info);
      };
      this.child.once('exit', (code, signal) => done({ code, signal }));
      this.child.once('error', (e) => {
        this.recent.push(`could not start the trainer: ${e.message}`);
        onLine(`could not start the trainer: ${e.message}`);
        done({ code: null, signal: null });
      });
    });
    // The IPC channel fork opens is not used; dropping it lets either side exit on its own.
    this.child.once('spawn', () => this.child.connected && this.child.disconnect());
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  lastLines(n: number): string[] {
    return this.recent.slice(-n);
  }

  /** SIGINT: the trainer checkpoints and exits 0. */
  interrupt(): void {
    if (this.running) this.child.kill('SIGINT');
  }

  /** Lets the trainer outlive this extension host. */
  release(): void {
    this.child.unref();
  }

  /** Interrupts and waits for the exit, up to `ms`. */
  async shutdown(ms: number): Promise<void> {
    this.interrupt();
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, ms))]);
  }
}

export function describeExit(e: ExitInfo): string {
  if (e.signal) return `killed by ${e.signal}`;
  if (e.code === null) return 'did not start';
  const meaning: Record<number, string> = { 0: 'done', 1: 'crashed', 2: 'bad config', 3: 'backend unavailable', 4: 'bad arguments' };
  return `exit code ${e.code}${meaning[e.code] ? `: ${meaning[e.code]}` : ''}`;
}
