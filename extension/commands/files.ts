/** Export Run, Open Run Folder and Show Log. */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';
import { recordsToCsv, recordsToJson } from '../export.js';
import { anyRun, targetRun, type CommandDeps } from './deps.js';

export async function exportRun(d: CommandDeps, arg: unknown): Promise<void> {
  const s = await targetRun(d, arg, anyRun, 'export');
  if (!s) return;
  const format = await vscode.window.showQuickPick(
    [
      { label: 'CSV', description: 'one row per step: loss, val loss, lr, p, step time', ext: 'csv' },
      { label: 'JSON', description: 'every record of the run log', ext: 'json' },
    ],
    { placeHolder: `Export ${s.label} as` },
  );
  if (!format) return;
  const folder = existsSync(s.runDir) ? s.runDir : (vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? s.runDir);
  const file = await vscode.window.showSaveDialog({ defaultUri: vscode.Uri.file(join(folder, `${s.label}.${format.ext}`)), filters: { [format.label]: [format.ext] } });
  if (!file) return;
  await s.load();
  const records = s.fullRecords();
  const text = format.ext === 'csv' ? recordsToCsv(records) : recordsToJson(records);
  await vscode.workspace.fs.writeFile(file, Buffer.from(text, 'utf8'));
  void vscode.window.showInformationMessage(`Muonscope: exported ${records.length} records to ${basename(file.fsPath)}.`);
}

export async function openRunFolder(d: CommandDeps, arg: unknown): Promise<void> {
  const s = await targetRun(d, arg, (r) => existsSync(r.runDir), 'open the folder of');
  if (!s) return;
  const uri = vscode.Uri.file(s.runDir);
  if (vscode.workspace.getWorkspaceFolder(uri)) await vscode.commands.executeCommand('revealInExplorer', uri);
  else await vscode.commands.executeCommand('vscode.openFolder', uri, { forceNewWindow: true });
}

export async function showLog(d: CommandDeps, arg: unknown): Promise<void> {
  const s = await targetRun(d, arg, anyRun, 'show the log of');
  s?.log().show();
}
