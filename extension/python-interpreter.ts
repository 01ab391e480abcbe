/**
 * The interpreter for a PyTorch run: the muonscope.pythonInterpreter setting, else the interpreter the
 * Python extension (ms-python.python) has selected for the folder, else python3 (python-run.ts decides).
 * The Python extension is optional: absent, failing or slow to activate, it is simply not asked.
 */
import { existsSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { chooseInterpreter, type InterpreterSource } from './python-run.js';
import { readSettings } from './settings.js';

const PYTHON_EXTENSION = 'ms-python.python';
const ACTIVATE_TIMEOUT_MS = 10_000;

/** The parts of the Python extension's API used here: the current `environments` and the older `settings`. */
interface PythonExtensionApi {
  environments?: { getActiveEnvironmentPath?(resource?: vscode.Uri): { path?: string } | undefined };
  settings?: { getExecutionDetails?(resource?: vscode.Uri): { execCommand?: string[] } | undefined };
}

export function pythonExtensionInstalled(): boolean {
  return vscode.extensions.getExtension(PYTHON_EXTENSION) !== undefined;
}

/** The Python extension's selected interpreter for `resource`, or undefined when it has none to give. */
async function fromPythonExtension(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const ext = vscode.extensions.getExtension<PythonExtensionApi>(PYTHON_EXTENSION);
  if (!ext) return undefined;
  try {
    const api = ext.isActive
      ? ext.exports
      : await Promise.race([ext.activate(), new Promise<undefined>((r) => setTimeout(() => r(undefined), ACTIVATE_TIMEOUT_MS))]);
    const path = api?.environments?.getActiveEnvironmentPath?.(resource)?.path;
    if (path) return executableIn(path);
    // Older releases: the command that runs Python, used only when it is one program (not `conda run …`).
    const exec = api?.settings?.getExecutionDetails?.(resource)?.execCommand;
    return exec?.length === 1 ? exec[0] : undefined;
  } catch {
    return undefined;
  }
}

/** An environment given as its folder (some conda envs) names its python inside. */
function executableIn(path: string): string {
  try {
    if (!statSync(path).isDirectory()) return path;
  } catch {
    return path; // not on disk as given (e.g. a bare name): the import check will say so
  }
  const inside = [join(path, 'bin', 'python'), join(path, 'python.exe'), join(path, 'Scripts', 'python.exe')].find((p) => existsSync(p));
  return inside ?? path;
}

export async function resolveInterpreter(folder: vscode.WorkspaceFolder | undefined, resource: vscode.Uri): Promise<{ interpreter: string; source: InterpreterSource }> {
  const setting = readSettings(resource).pythonInterpreter;
  return chooseInterpreter(setting, setting ? undefined : await fromPythonExtension(resource), folder?.uri.fsPath, homedir());
}
