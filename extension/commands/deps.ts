/**
 * What every command handler gets, and how a command finds the run it acts on: its argument (a tree
 * item, a CodeLens, a run id, a config file), else the focused run, else the only candidate, else a pick.
 */
import * as vscode from 'vscode';
import type { AttachedTrainers } from '../attached-trainers.js';
import type { DashboardPanels } from '../dashboard-panel.js';
import type { MuonscopeOutput } from '../output.js';
import type { RunLauncher } from '../run-launcher.js';
import type { RunRegistry } from '../run-registry.js';
import { RunSession } from '../run-session.js';
import type { TokenStore } from '../token-store.js';

export interface CommandDeps {
  registry: RunRegistry;
  launcher: RunLauncher;
  panels: DashboardPanels;
  tokens: TokenStore;
  output: MuonscopeOutput;
  attached: AttachedTrainers;
}

export type RunFilter = (s: RunSession) => boolean;

export const isLive: RunFilter = (s) => s.live;
export const isRunning: RunFilter = (s) => s.live && s.state === 'running';
export const isPaused: RunFilter = (s) => s.live && s.state === 'paused';
export const anyRun: RunFilter = () => true;

export async function targetRun(d: CommandDeps, arg: unknown, filter: RunFilter, what: string): Promise<RunSession | undefined> {
  const { registry } = d;
  if (arg instanceof RunSession) return arg;
  if (typeof arg === 'string' && registry.get(arg)) return registry.get(arg);
  if (arg instanceof vscode.Uri) {
    const s = registry.byConfig(arg.fsPath);
    if (s) return s;
  }
  const focused = registry.focused;
  if (focused && filter(focused)) return focused;
  const candidates = registry.all().filter(filter);
  if (candidates.length === 1) return candidates[0];
  if (candidates.length === 0) {
    void vscode.window.showInformationMessage(`Muonscope: no run to ${what}.`);
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    candidates.map((s) => ({ label: s.descriptor().label, description: s.state ?? '', detail: s.runDir, session: s })),
    { placeHolder: `Run to ${what}` },
  );
  return pick?.session;
}

/** The workspace folder a file belongs to, else the first one. */
export function folderFor(uri: vscode.Uri | undefined): vscode.WorkspaceFolder | undefined {
  return (uri && vscode.workspace.getWorkspaceFolder(uri)) ?? vscode.workspace.workspaceFolders?.[0];
}
