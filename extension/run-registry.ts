/**
 * The runs this window knows: live ones (started here, re-attached, or attached by URL) and past ones
 * found in the workspace's run folders. It owns the RunSessions, decides which one is focused (the
 * status bar's and the palette commands' target), and re-scans the folders on demand.
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import type { TrainerInfo } from '../common/run-folder/layout.js';
import type { MuonscopeOutput } from './output.js';
import type { RunScanner } from './run-discovery.js';
import { RunSession } from './run-session.js';

export class RunRegistry implements vscode.Disposable {
  private readonly sessions = new Map<string, RunSession>();
  private readonly mtimes = new Map<string, number>();
  private focusedId: string | undefined;
  private scanning: Promise<void> | undefined;
  private rescanRequested = false;
  private disposed = false;
  private readonly changed = new vscode.EventEmitter<void>();
  private readonly disposables: vscode.Disposable[] = [];
  readonly onDidChange = this.changed.event;

  constructor(
    private readonly scanner: RunScanner,
    private readonly roots: () => string[],
    private readonly maxHistory: () => number,
    /** Called for a trainer found serving a run folder, so the window can (re-)attach to it. */
    private readonly onLiveTrainer: (session: RunSession, info: TrainerInfo) => void,
    private readonly output: MuonscopeOutput,
  ) {}

  all(): RunSession[] {
    return [...this.sessions.values()].sort((a, b) => Number(b.live) - Number(a.live) || (this.mtimes.get(b.runDir) ?? Infinity) - (this.mtimes.get(a.runDir) ?? Infinity));
  }

  live(): RunSession[] {
    return this.all().filter((s) => s.live);
  }

  get(id: string): RunSession | undefined {
    return this.sessions.get(id);
  }

  byRunDir(runDir: string): RunSession | undefined {
    return [...this.sessions.values()].find((s) => s.runDir === runDir);
  }

  /** The live run started from this config file, the latest if several. */
  byConfig(configPath: string): RunSession | undefined {
    return this.all().find((s) => s.live && s.configPath === configPath);
  }

  get focused(): RunSession | undefined {
    return this.focusedId ? this.sessions.get(this.focusedId) : undefined;
  }

  focus(session: RunSession | undefined): void {
    if (session?.id === this.focusedId) return;
    this.focusedId = session?.id;
    this.changed.fire();
  }

  /** The session for a run folder, created (and announced) if new. */
  ensure(runDir: string, preferredId = basename(runDir) || 'run'): RunSession {
    const existing = this.byRunDir(runDir);
    if (existing) return existing;
    let id = preferredId.slice(0, 180);
    for (let i = 2; this.sessions.has(id); i++) id = `${preferredId.slice(0, 180)}-${i}`;
    const session = new RunSession(id, runDir, this.maxHistory(), this.output);
    this.sessions.set(id, session);
    this.disposables.push(session.onDidChange(() => this.changed.fire()));
    this.changed.fire();
    return session;
  }

  /** Forgets a session (an attach that failed, or a duplicate of a run already listed). */
  remove(session: RunSession): void {
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    if (this.focusedId === session.id) this.focusedId = undefined;
    session.dispose();
    this.changed.fire();
  }

  /**
   * Re-reads the run folders (asynchronously; one scan at a time, and a request during a scan runs once
   * more after it): new runs appear, removed past runs go, live trainers get attached.
   */
  refresh(): Promise<void> {
    if (this.scanning) {
      this.rescanRequested = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.rescanRequested = false;
          await this.scanOnce();
        } while (this.rescanRequested && !this.disposed);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    const found = await this.scanner.scan(this.roots(), (runDir) => !!this.byRunDir(runDir)?.live);
    if (this.disposed) return;
    const present = new Set(found.map((r) => r.runDir));
    for (const run of found) {
      this.mtimes.set(run.runDir, run.mtimeMs);
      const session = this.ensure(run.runDir);
      if (run.summary) session.setScannedSummary(run.summary);
      if (run.trainer && !session.client) this.onLiveTrainer(session, run.trainer);
    }
    for (const session of [...this.sessions.values()]) {
      // Runs outside the scanned folders (attached by URL, started elsewhere) stay while they are live.
      if (!present.has(session.runDir) && !session.live && !session.process && this.mtimes.has(session.runDir)) {
        this.sessions.delete(session.id);
        this.mtimes.delete(session.runDir);
        if (this.focusedId === session.id) this.focusedId = undefined;
        session.dispose();
      }
    }
    this.changed.fire();
  }

  setHistoryLimit(max: number): void {
    for (const s of this.sessions.values()) s.history.setLimit(max);
  }

  dispose(): void {
    this.disposed = true;
    for (const s of this.sessions.values()) s.dispose();
    this.sessions.clear();
    for (const d of this.disposables) d.dispose();
    this.changed.dispose();
  }
}
