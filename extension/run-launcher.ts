/**
 * The trainer process manager: starts trainers (new runs and runs continued from their checkpoint),
 * connects their sessions, reports crashes with the last lines of output, re-attaches to trainers that
 * outlived a window, and on shutdown interrupts the ones it started unless "keep running" is on.
 */
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { TrainerInfo } from '../common/run-folder/layout.js';
import { cliArgs, type StartRequest } from './launch-args.js';
import { processAlive } from './run-discovery.js';
import type { RunRegistry } from './run-registry.js';
import type { RunSession } from './run-session.js';
import { readSettings } from './settings.js';
import { describeExit, TrainerProcess, type ExitInfo } from './trainer-process.js';

const READY_TIMEOUT_MS = 180_000;

export type { StartRequest } from './launch-args.js';

export class RunLauncher implements vscode.Disposable {
  private readonly processes = new Set<TrainerProcess>();
  private readonly pidWatchers = new Set<ReturnType<typeof setInterval>>();

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly registry: RunRegistry,
  ) {}

  private get cliPath(): string {
    return join(this.context.extensionPath, 'dist', 'trainer', 'cli.js');
  }

  /** Starts a trainer, waits for it to listen, and returns the connected session. */
  async start(req: StartRequest): Promise<RunSession> {
    const settings = readSettings();
    const args = cliArgs(req, settings.diagnosticsEvery);
    const outputFile = join(this.context.globalStorageUri.fsPath, 'trainer-output', `${Date.now()}-${Math.random().toString(36).slice(2, 8)}.log`);
    const early: string[] = [];
    let session: RunSession | undefined;
    const proc = new TrainerProcess(
      { cliPath: this.cliPath, execPath: settings.nodePath || undefined, args, cwd: req.cwd, outputFile, detached: settings.keepTrainerRunning },
      (line) => (session ? session.log().info(line) : early.push(line)),
    );
    this.processes.add(proc);
    void proc.exited.then(() => this.processes.delete(proc));
    let info;
    try {
      info = await Promise.race([
        proc.listening,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the trainer did not start listening within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS)),
      ]);
    } catch (e) {
      proc.interrupt();
      const exit = await Promise.race([proc.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 3000))]);
      // The tail of its output already holds the lines `early` collected: pass them once.
      throw new TrainerStartError((e as Error).message, proc.lastLines(30), exit);
    }
    session = this.registry.ensure(info.runDir);
    if (req.configPath) session.configPath = req.configPath;
    session.process = proc;
    const channel = session.log();
    channel.info(`trainer pid ${proc.pid} (${args.filter((a) => a !== req.runRoot).join(' ')}) serving ${info.url}`);
    for (const line of early) channel.info(line);
    session.attach(info.url, info.token);
    this.registry.focus(session);
    const started = session;
    void proc.exited.then((exit) => this.onExit(started, proc, exit));
    return session;
  }

  /** Attaches a session to a trainer found serving its folder (e.g. one that outlived the last window). */
  reattach(session: RunSession, info: TrainerInfo): void {
    session.log().info(`re-attaching to trainer pid ${info.pid} at ${info.url}`);
    session.attach(info.url, info.token);
    // Not our child: notice its death by polling, since no exit event will come.
    const timer = setInterval(() => {
      if (processAlive(info.pid)) return;
      clearInterval(timer);
      this.pidWatchers.delete(timer);
      void this.onExit(session, undefined, undefined);
    }, 2000);
    this.pidWatchers.add(timer);
  }

  private async onExit(session: RunSession, proc: TrainerProcess | undefined, exit: ExitInfo | undefined): Promise<void> {
    if (session.process === proc) session.process = undefined;
    // The exit can overtake the last frames on the socket; the log on disk has everything.
    await session.catchUpFromDisk();
    const terminal = session.summary.state === 'finished' || session.summary.state === 'stopped' || session.summary.state === 'crashed';
    const failed = exit ? exit.code !== 0 || exit.signal !== null : !terminal;
    const how = exit ? describeExit(exit) : 'its process is gone';
    session.log()[failed ? 'error' : 'info'](`trainer exited: ${how}`);
    if (failed) {
      session.markCrashed(how);
      const lines = (proc?.lastLines(20) ?? []).filter((l) => l.trim()).slice(-3);
      const last = lines.length ? ` Last output: ${lines.map((l) => (l.length > 160 ? `${l.slice(0, 157)}…` : l)).join(' | ')}` : '';
      void vscode.window
        .showErrorMessage(`Muonscope: run ${session.label} crashed (${how}). Everything up to the crash is in its run folder.${last}`, 'Open log', 'Open run folder')
        .then((choice) => {
          if (choice === 'Open log') session.log().show();
          if (choice === 'Open run folder') void vscode.commands.executeCommand('muonscope.openRunFolder', session.id);
        });
    }
    session.trainerGone();
  }

  /** Interrupts the trainers this window started, unless they are to keep running. */
  async shutdown(): Promise<void> {
    const keep = readSettings().keepTrainerRunning;
    const running = [...this.processes].filter((p) => p.running);
    if (keep) {
      for (const p of running) p.release();
      return;
    }
    await Promise.all(running.map((p) => p.shutdown(4000)));
  }

  dispose(): void {
    for (const t of this.pidWatchers) clearInterval(t);
  }
}

export class TrainerStartError extends Error {
  constructor(message: string, readonly lines: string[], readonly exit: ExitInfo | undefined) {
    super(message);
  }
}
