/**
 * Muonscope's one Output channel. Every run writes into it as its own section (each line tagged with the
 * run's name), and so does a start that failed, so a user finds everything under "Muonscope" instead of
 * one channel per run and another per failed start, none of them ever disposed.
 */
import * as vscode from 'vscode';

/** What a run (or a start attempt) writes: lines at a level, and a way to bring the channel forward. */
export interface SectionLog {
  info(line: string): void;
  warn(line: string): void;
  error(line: string): void;
  show(): void;
}

export class MuonscopeOutput implements vscode.Disposable {
  private channel: vscode.LogOutputChannel | undefined;
  private lastSection: string | undefined;

  /** The section for one run or attempt; the channel itself is created on the first line. */
  section(name: () => string): SectionLog {
    const write = (level: 'info' | 'warn' | 'error', line: string) => {
      const channel = (this.channel ??= vscode.window.createOutputChannel('Muonscope', { log: true }));
      const label = name();
      if (label !== this.lastSection) {
        channel.info(`── ${label} ──`);
        this.lastSection = label;
      }
      channel[level](`[${label}] ${line}`);
    };
    return {
      info: (line) => write('info', line),
      warn: (line) => write('warn', line),
      error: (line) => write('error', line),
      show: () => (this.channel ??= vscode.window.createOutputChannel('Muonscope', { log: true })).show(true),
    };
  }

  dispose(): void {
    this.channel?.dispose();
  }
}
