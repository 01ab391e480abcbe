/** The `muonscope.*` settings, read in one place, with paths resolved against the workspace. */
import { isAbsolute, join } from 'node:path';
import * as vscode from 'vscode';

export interface Settings {
  runFolder: string;
  nodePath: string;
  /** Python for run configs with `command`; empty: the Python extension's interpreter, else python3. */
  pythonInterpreter: string;
  /** Diagnostics cadence for configs that leave `diagnostics.every` out; null: the run config's own default. */
  diagnosticsEvery: number | null;
  keepTrainerRunning: boolean;
  codeLensEnabled: boolean;
  maxHistoryPoints: number;
}

export function readSettings(scope?: vscode.ConfigurationScope): Settings {
  const c = vscode.workspace.getConfiguration('muonscope', scope);
  return {
    runFolder: c.get<string>('runFolder', 'runs') || 'runs',
    nodePath: c.get<string>('nodePath', '').trim(),
    pythonInterpreter: c.get<string>('pythonInterpreter', '').trim(),
    diagnosticsEvery: cadenceSetting(c.get<number | null>('diagnosticsEvery', null)),
    keepTrainerRunning: c.get<boolean>('keepTrainerRunning', true),
    codeLensEnabled: c.get<boolean>('codeLens.enabled', true),
    maxHistoryPoints: Math.max(1000, Math.round(c.get<number>('maxHistoryPoints', 200000))),
  };
}

/**
 * The cadence has one default, the run config schema's; the setting only overrides it, so it has no
 * number of its own (empty in the settings editor is null).
 */
function cadenceSetting(every: number | null): number | null {
  return typeof every === 'number' && Number.isFinite(every) ? Math.max(1, Math.round(every)) : null;
}

/** The run folder for a workspace folder: the setting, relative to the folder unless absolute. */
export function runRootFor(folder: vscode.WorkspaceFolder | undefined): string | undefined {
  const setting = readSettings(folder?.uri).runFolder;
  if (isAbsolute(setting)) return setting;
  return folder ? join(folder.uri.fsPath, setting) : undefined;
}

/** Every folder to scan for runs: one per workspace folder (deduplicated). */
export function allRunRoots(): string[] {
  const roots = (vscode.workspace.workspaceFolders ?? []).map((f) => runRootFor(f)).filter((r): r is string => !!r);
  return [...new Set(roots)];
}
