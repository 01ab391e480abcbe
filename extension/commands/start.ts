/** New Run Config, Start Run and Continue Run from Last Checkpoint. */
import { existsSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as vscode from 'vscode';
import { starterConfig, type StarterKind } from '../config-starter.js';
import { pythonExtensionInstalled, resolveInterpreter } from '../python-interpreter.js';
import { checkPythonImports, configCommand, isPythonProgram, resolveCommand } from '../python-run.js';
import { TrainerStartError, type StartRequest } from '../run-launcher.js';
import type { RunSession } from '../run-session.js';
import { readSettings, runRootFor } from '../settings.js';
import { folderFor, targetRun, type CommandDeps } from './deps.js';
import { summariseFailure } from './failure-text.js';

export async function newRunConfig(): Promise<void> {
  const folder = folderFor(vscode.window.activeTextEditor?.document.uri);
  if (!folder) {
    void vscode.window.showErrorMessage('Muonscope: open a folder first; the run config is written into it.');
    return;
  }
  const choice = await vscode.window.showQuickPick(
    [
      { label: 'MLP on teacher–student regression', description: 'seconds on a CPU', starter: 'mlp' as StarterKind },
      { label: 'Tiny transformer on a Markov text source', description: 'a minute or two on a CPU', starter: 'transformer' as StarterKind },
    ],
    { placeHolder: 'What should the starter config train?' },
  );
  if (!choice) return;
  let file = join(folder.uri.fsPath, `${choice.starter}.muonscope.json`);
  for (let i = 2; existsSync(file); i++) file = join(folder.uri.fsPath, `${choice.starter}-${i}.muonscope.json`);
  writeFileSync(file, starterConfig(choice.starter, choice.starter, readSettings(folder.uri).diagnosticsEvery));
  await vscode.window.showTextDocument(vscode.Uri.file(file));
}

/** The config a Start Run acts on: the argument, the active editor's config, the only one, or a pick. */
async function pickConfig(arg: unknown): Promise<vscode.Uri | undefined> {
  if (arg instanceof vscode.Uri) return arg;
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active?.fsPath.endsWith('.muonscope.json')) return active;
  const files = await vscode.workspace.findFiles('**/*.muonscope.json', '**/node_modules/**', 200);
  if (files.length === 1) return files[0];
  if (files.length === 0) {
    const choice = await vscode.window.showInformationMessage('Muonscope: no *.muonscope.json run config in this workspace.', 'New Run Config');
    if (choice) await vscode.commands.executeCommand('muonscope.newRunConfig');
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    files.map((f) => ({ label: basename(f.fsPath), description: vscode.workspace.asRelativePath(dirname(f.fsPath)), uri: f })),
    { placeHolder: 'Run config to start' },
  );
  return pick?.uri;
}

/** Starts a trainer with a progress notification; a failure is explained once, its output in the log. */
async function launch(d: CommandDeps, title: string, req: StartRequest): Promise<RunSession | undefined> {
  try {
    return await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title }, () => d.launcher.start(req));
  } catch (e) {
    const lines = e instanceof TrainerStartError ? e.lines.filter((l) => l.trim()) : [];
    const log = d.output.section(() => `start of ${basename(req.configPath ?? req.resumeRunDir ?? 'run')}`);
    log.error((e as Error).message);
    for (const l of lines) log.error(l);
    const choice = await vscode.window.showErrorMessage(`Muonscope: the run did not start: ${summariseFailure(e as Error, lines)}`, 'Show Log');
    if (choice) log.show();
    return undefined;
  }
}

/**
 * A config with `command` (docs/python.md §5): its command with a bare python/python3 replaced by the
 * chosen interpreter, once that interpreter has shown it can import torch and muonscope; undefined (and
 * the user told why, with a way to fix it) when it cannot.
 */
async function pythonCommand(d: CommandDeps, config: vscode.Uri, command: string[]): Promise<string[] | undefined> {
  const folder = folderFor(config);
  if (!isPythonProgram(command[0])) return command; // torchrun, a shell script…: started as written
  const { interpreter, source } = await resolveInterpreter(folder, config);
  const check = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Muonscope: checking ${interpreter} for torch and muonscope…` },
    () => checkPythonImports(interpreter, { cwd: dirname(config.fsPath) }),
  );
  const log = d.output.section(() => `start of ${basename(config.fsPath)}`);
  if (check.ok) {
    log.info(`python ${check.python} at ${check.executable} (${source}): torch and muonscope import`);
    return resolveCommand(command, interpreter);
  }
  log.error(`${check.message} (interpreter from the ${source})`);
  const actions = ['Open Settings', ...(pythonExtensionInstalled() ? ['Select Interpreter'] : []), 'Show Log'];
  const choice = await vscode.window.showErrorMessage(`Muonscope: ${basename(config.fsPath)} did not start: ${check.message}.`, ...actions);
  if (choice === 'Open Settings') void vscode.commands.executeCommand('workbench.action.openSettings', 'muonscope.pythonInterpreter');
  if (choice === 'Select Interpreter') void vscode.commands.executeCommand('python.setInterpreter');
  if (choice === 'Show Log') log.show();
  return undefined;
}

export async function startRun(d: CommandDeps, arg: unknown): Promise<void> {
  const config = await pickConfig(arg);
  if (!config) return;
  const doc = vscode.workspace.textDocuments.find((t) => t.uri.toString() === config.toString());
  if (doc?.isDirty) await doc.save();
  const folder = folderFor(config);
  const runRoot = runRootFor(folder) ?? join(dirname(config.fsPath), readSettings().runFolder);
  // A PyTorch run starts in its config's folder, so `["python", "train.py"]` finds the script beside it.
  const written = configCommand(config.fsPath);
  const command = written && (await pythonCommand(d, config, written));
  if (written && !command) return;
  const cwd = command ? dirname(config.fsPath) : folder?.uri.fsPath ?? dirname(config.fsPath);
  const session = await launch(d, `Muonscope: starting ${basename(config.fsPath)}…`, { configPath: config.fsPath, runRoot, cwd, ...(command ? { command } : {}) });
  if (!session) return;
  if (readSettings().keepTrainerRunning) {
    vscode.window.setStatusBarMessage(`Muonscope: ${session.label} started`, 4000);
    return;
  }
  // Said before it happens: with this setting off, a window reload ends the run (after a checkpoint).
  const keep = 'Keep Runs Alive';
  const choice = await vscode.window.showInformationMessage(
    `Muonscope: ${session.label} started. muonscope.keepTrainerRunning is off, so reloading or closing this window will interrupt it (it checkpoints first).`,
    keep,
  );
  if (choice === keep) await vscode.workspace.getConfiguration('muonscope').update('keepTrainerRunning', true, vscode.ConfigurationTarget.Global);
}

export async function continueRun(d: CommandDeps, arg: unknown): Promise<void> {
  const s = await targetRun(d, arg, (r) => !r.live && (r.state === 'crashed' || r.state === 'stopped'), 'continue from its last checkpoint');
  if (!s) return;
  if (configCommand(join(s.runDir, 'config.json'))) {
    // Its weights and optimizer state are the script's (torch checkpoints): only the script can load them.
    void vscode.window.showInformationMessage(`Muonscope: ${s.label} is a PyTorch run; continue it from its script (loading its checkpoint there) and start it again with Start Run.`);
    return;
  }
  const folder = folderFor(vscode.Uri.file(s.runDir));
  await launch(d, `Muonscope: continuing ${s.label}…`, { resumeRunDir: s.runDir, runRoot: dirname(s.runDir), cwd: folder?.uri.fsPath ?? s.runDir });
}
