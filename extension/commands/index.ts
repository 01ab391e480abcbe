/**
 * The Muonscope commands. Each has one id and one small handler, reached from the palette, the runs tree,
 * the CodeLens, the editor title and the status bar; a command without a run argument acts on the
 * focused run, or asks.
 */
import * as vscode from 'vscode';
import { attachToTrainer } from './attach.js';
import { compareRuns, openDashboard } from './dashboard.js';
import type { CommandDeps } from './deps.js';
import { exportRun, openRunFolder, showLog } from './files.js';
import { checkpointRun, pauseRun, resumeRun, stopRun } from './run-control.js';
import { continueRun, newRunConfig, startRun } from './start.js';

export type { CommandDeps } from './deps.js';

const HANDLERS: Record<string, (d: CommandDeps, arg: unknown) => unknown> = {
  'muonscope.newRunConfig': () => newRunConfig(),
  'muonscope.startRun': startRun,
  'muonscope.continueRun': continueRun,
  'muonscope.attach': attachToTrainer,
  'muonscope.pause': pauseRun,
  'muonscope.resume': resumeRun,
  'muonscope.stop': stopRun,
  'muonscope.checkpoint': checkpointRun,
  'muonscope.openDashboard': openDashboard,
  'muonscope.compareRuns': compareRuns,
  'muonscope.exportRun': exportRun,
  'muonscope.openRunFolder': openRunFolder,
  'muonscope.showLog': showLog,
  'muonscope.refreshRuns': (d) => d.registry.refresh(),
};

export function registerCommands(d: CommandDeps): vscode.Disposable[] {
  return Object.entries(HANDLERS).map(([id, handler]) => vscode.commands.registerCommand(id, (arg: unknown) => handler(d, arg)));
}
