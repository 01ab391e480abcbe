/**
 * Everything the extension knows about one run: its records (bounded history), the summary the views
 * show, and, while it is live, the connection to its trainer and the trainer process when this window
 * started it. Views and panels listen to its events; nothing else talks to the trainer.
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import type { RunDescriptor } from '../common/dashboard-messages.js';
import type { Command, LogRecord, RunState } from '../common/protocol.js';
import { existsSync } from 'node:fs';
import { runPaths } from '../common/run-folder/layout.js';
import { readRunLog } from '../common/run-folder/log.js';
import { LogTail } from '../common/run-folder/log-tail.js';
import { fullHistory, RunHistory } from './history.js';
import { liveTrainerInfo } from './run-discovery.js';
import type { MuonscopeOutput, SectionLog } from './output.js';
import { effectiveState, emptySummary, foldSummary, type RunSummary } from './run-summary.js';
import { TrainerClient, type CommandReply, type ConnectionState } from './trainer-client.js';
import type { TrainerProcess } from './trainer-process.js';

export class RunSession implements vscode.Disposable {
  readonly history: RunHistory;
  summary: RunSummary = emptySummary();
  client: TrainerClient | undefined;
  process: TrainerProcess | undefined;
  /** The config file this window started the run from (for its CodeLens). */
  configPath: string | undefined;
  connection: ConnectionState = 'ended';
  /** Set when the trainer died without logging a final state. */
  crashedDetail: string | undefined;
  private loadedFromDisk = false;
  private tail: LogTail | undefined;
  private readonly output: SectionLog;
  private readonly changed = new vscode.EventEmitter<void>();
  private readonly appended = new vscode.EventEmitter<LogRecord[]>();
  private readonly connectionChanged = new vscode.EventEmitter<ConnectionState>();
  readonly onDidChange = this.changed.event;
  readonly onDidAppend = this.appended.event;
  readonly onDidChangeConnection = this.connectionChanged.event;

  constructor(
    /** The id the dashboard and commands use: the run folder's name, unique under a run root. */
    readonly id: string,
    public runDir: string,
    maxHistory: number,
    output: MuonscopeOutput,
  ) {
    this.history = new RunHistory(maxHistory);
    this.output = output.section(() => this.label);
  }

  get label(): string {
    return basename(this.runDir) || this.id;
  }

  get live(): boolean {
    return this.client !== undefined && this.connection !== 'ended';
  }

  get state(): RunState | undefined {
    if (this.crashedDetail) return 'crashed';
    return effectiveState(this.summary, this.live);
  }

  descriptor(): RunDescriptor {
    return { runId: this.id, label: this.summary.name && this.summary.name !== 'run' ? `${this.summary.name} (${this.label})` : this.label, runDir: this.runDir, live: this.live };
  }

  /** Records the discovery scan summarised without loading them (a past run not yet opened). */
  setScannedSummary(summary: RunSummary): void {
    if (this.live || this.history.size > 0) return;
    this.summary = summary;
    this.changed.fire();
  }

  /** Appends records from the trainer or the log; only unseen ones are kept and announced. */
  addRecords(records: readonly LogRecord[]): void {
    const fresh = this.history.add(records);
    if (!fresh.length) return;
    this.summary = foldSummary(this.summary, fresh);
    this.appended.fire(fresh);
    this.changed.fire();
  }

  /** A past run's records, read from its folder the first time something needs them. */
  async load(): Promise<void> {
    if (this.loadedFromDisk || this.live) return;
    this.loadedFromDisk = true;
    await this.catchUpFromDisk();
  }

  /** Adds whatever the log on disk holds beyond what this session has (read by byte offset). */
  async catchUpFromDisk(): Promise<void> {
    const log = runPaths(this.runDir).log;
    if (this.tail?.path !== log) this.tail = new LogTail(log);
    try {
      this.addRecords((await this.tail.read()).records);
    } catch (e) {
      this.log().warn(`could not read the run log: ${(e as Error).message}`);
    }
  }

  /** The run's full history for a panel: from disk when memory was trimmed and the folder is here. */
  fullRecords(): readonly LogRecord[] {
    const log = runPaths(this.runDir).log;
    return fullHistory(this.history, () => (existsSync(log) ? readRunLog(log).records : undefined));
  }

  attach(url: string, token: string): TrainerClient {
    this.client?.dispose();
    this.crashedDetail = undefined;
    const client = new TrainerClient(url, token, () => this.history.lastSeq, {
      onHello: (hello) => {
        if (hello.runDir && hello.runDir !== this.runDir) {
          this.runDir = hello.runDir;
          this.changed.fire();
        }
      },
      onRecords: (records) => this.addRecords(records),
      onConnection: (state, detail) => {
        this.connection = state;
        if (detail && state === 'offline') this.log().warn(`connection: ${detail}`);
        if (state === 'offline' && client.hasConnected) void this.reconcileWithDisk();
        this.connectionChanged.fire(state);
        this.changed.fire();
      },
      onLog: (line) => this.log().warn(line),
    });
    this.client = client;
    this.connection = 'connecting';
    client.start();
    return client;
  }

  /**
   * The socket dropped: the run folder says what really happened. A log that ends stopped or finished
   * means the run is over (not "offline" for ever); a trainer.json whose process is gone with no end
   * logged means it crashed. Otherwise the trainer may be back, and the client keeps reconnecting.
   */
  private async reconcileWithDisk(): Promise<void> {
    if (!existsSync(runPaths(this.runDir).log)) return;
    await this.catchUpFromDisk();
    const state = this.summary.state;
    if (state === 'finished' || state === 'stopped' || state === 'crashed') {
      this.trainerGone();
      return;
    }
    if (this.process) return; // our own child: its exit event says how it ended
    const info = await liveTrainerInfo(this.runDir);
    if (!info && this.connection === 'offline') {
      this.markCrashed('its trainer is gone and the log does not say the run ended');
      this.trainerGone();
    }
  }

  command(command: Command, source = 'vscode'): Promise<CommandReply> {
    if (!this.client) return Promise.resolve({ type: 'error', code: 'RUN_ENDED', message: `${this.label} has no live trainer` });
    return this.client.command(command, source);
  }

  markCrashed(detail: string): void {
    this.crashedDetail = detail;
    this.changed.fire();
  }

  /** The trainer is gone: stop reconnecting; what it logged stays. */
  trainerGone(): void {
    this.client?.markEnded();
    this.changed.fire();
  }

  /** The run's section of the Muonscope output channel (its trainer's lines, connection problems). */
  log(): SectionLog {
    return this.output;
  }

  dispose(): void {
    this.client?.dispose();
    this.changed.dispose();
    this.appended.dispose();
    this.connectionChanged.dispose();
  }
}
