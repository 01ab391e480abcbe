/** Pause, Resume, Stop and Checkpoint Now: one command to the run's trainer, its answer shown. */
import * as vscode from 'vscode';
import type { Command } from '../../common/protocol.js';
import { isLive, isPaused, isRunning, targetRun, type CommandDeps, type RunFilter } from './deps.js';

async function sendToRun(d: CommandDeps, arg: unknown, command: Command, filter: RunFilter, what: string): Promise<void> {
  const s = await targetRun(d, arg, filter, what);
  if (!s) return;
  d.registry.focus(s);
  const reply = await s.command(command, 'vscode');
  if (reply.type === 'error') {
    void vscode.window.showErrorMessage(`Muonscope: could not ${what} ${s.label}: ${reply.message}`, 'Show Log').then((c) => c && s.log().show());
  } else {
    vscode.window.setStatusBarMessage(`Muonscope: ${what} accepted at step ${reply.step}`, 3000);
  }
}

export const pauseRun = (d: CommandDeps, arg: unknown) => sendToRun(d, arg, { kind: 'pause', reason: 'paused from VS Code' }, isRunning, 'pause');
export const resumeRun = (d: CommandDeps, arg: unknown) => sendToRun(d, arg, { kind: 'resume', reason: 'resumed from VS Code' }, isPaused, 'resume');
export const stopRun = (d: CommandDeps, arg: unknown) => sendToRun(d, arg, { kind: 'stop', reason: 'stopped from VS Code' }, isLive, 'stop');
export const checkpointRun = (d: CommandDeps, arg: unknown) => sendToRun(d, arg, { kind: 'checkpoint', reason: 'Checkpoint Now from VS Code' }, isLive, 'checkpoint');
