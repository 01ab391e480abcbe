/**
 * PyTorch runs from the editor (docs/python.md §5): a run config with `command` is started as
 * `muonscope run CONFIG -- COMMAND…`, its first `python`/`python3` replaced by the chosen interpreter, after
 * a check that the interpreter can import torch and muonscope. No VS Code here, so all of it is tested
 * with plain Node; choosing the interpreter (the setting, the Python extension) is in python-interpreter.ts.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { stripLineComments } from './config-starter.js';

/** The program names the interpreter setting stands for (`.exe` for a Windows-style config). */
const PYTHON_NAMES = new Set(['python', 'python3', 'python.exe', 'python3.exe']);

export const IMPORT_CHECK_TIMEOUT_MS = 60_000;

/**
 * The config's `command` when it is a well-formed one (a non-empty array of strings); anything else is
 * undefined, and the run goes to `muonscope train`, whose validator names the problem with its JSON path
 * (a malformed `command` is refused there, never trained as the built-in model). An unreadable file or
 * bad JSON is also left to the CLI, which says so.
 */
export function configCommand(configPath: string): string[] | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(stripLineComments(readFileSync(configPath, 'utf8')));
  } catch {
    return undefined;
  }
  const command = (raw as { command?: unknown } | null)?.command;
  return Array.isArray(command) && command.length > 0 && command.every((a) => typeof a === 'string') ? [...command] : undefined;
}

/** Whether a command's program is the bare Python the interpreter setting replaces. */
export function isPythonProgram(program: string): boolean {
  return PYTHON_NAMES.has(program);
}

/** The command as it is started: a bare `python`/`python3` becomes `interpreter`, the rest as written. */
export function resolveCommand(command: readonly string[], interpreter: string): string[] {
  const [program, ...args] = command;
  return [isPythonProgram(program) ? interpreter : program, ...args];
}

/** Where the interpreter comes from, for the log and the error messages. */
export type InterpreterSource = 'setting' | 'python extension' | 'default';

/**
 * The interpreter a run uses: the muonscope.pythonInterpreter setting when set (`~` and
 * `${workspaceFolder}` expanded, a relative path against the workspace folder, a bare name left to PATH),
 * else the Python extension's selected interpreter, else `python3`.
 */
export function chooseInterpreter(setting: string, fromPythonExtension: string | undefined, folder: string | undefined, home: string): { interpreter: string; source: InterpreterSource } {
  const value = setting.trim();
  if (value) {
    let path = value.replace(/\$\{workspaceFolder\}/g, folder ?? '.').replace(/^~(?=$|[\\/])/, home);
    if (/[\\/]/.test(path) && !isAbsolute(path) && folder) path = join(folder, path);
    return { interpreter: path, source: 'setting' };
  }
  if (fromPythonExtension?.trim()) return { interpreter: fromPythonExtension.trim(), source: 'python extension' };
  return { interpreter: 'python3', source: 'default' };
}

/** What a PyTorch run needs importable, in order: muonscope imports torch itself, so torch first names the right culprit. */
export const REQUIRED_MODULES = ['torch', 'muonscope'] as const;

/**
 * Imports each module in turn and prints one JSON line: {"ok":true,"python","executable"} or
 * {"ok":false,"module","error"} for the first that failed (exit 3).
 */
export function importCheckScript(modules: readonly string[] = REQUIRED_MODULES): string {
  return [
    'import importlib, json, sys',
    `for m in ${JSON.stringify(modules)}:`,
    '    try:',
    '        importlib.import_module(m)',
    '    except BaseException as e:',
    '        print(json.dumps({"ok": False, "module": m, "error": "%s: %s" % (type(e).__name__, e)}))',
    '        sys.exit(3)',
    'print(json.dumps({"ok": True, "python": sys.version.split()[0], "executable": sys.executable}))',
  ].join('\n');
}

export type ImportCheck =
  | { ok: true; python: string; executable: string }
  | { ok: false; kind: 'not found' | 'timed out' | 'import' | 'failed'; module?: string; message: string };

export interface ImportCheckOptions {
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** The modules to import (default REQUIRED_MODULES). */
  modules?: readonly string[];
}

type ExecError = Error & { code?: unknown; killed?: boolean; signal?: string | null };

/** Runs the import check in `interpreter`; a failure says which import failed and how to fix it. */
export function checkPythonImports(interpreter: string, o: ImportCheckOptions = {}): Promise<ImportCheck> {
  const timeoutMs = o.timeoutMs ?? IMPORT_CHECK_TIMEOUT_MS;
  return new Promise((resolve) => {
    execFile(
      interpreter,
      ['-c', importCheckScript(o.modules)],
      { cwd: o.cwd, env: o.env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20, windowsHide: true },
      (error, stdout, stderr) => resolve(interpretImportCheck(interpreter, error as ExecError | null, String(stdout), String(stderr), timeoutMs)),
    );
  });
}

const FIX_INTERPRETER = "set muonscope.pythonInterpreter to a Python that has torch and muonscope (e.g. your venv's bin/python), or select one with the Python extension";

/** How to get a missing module into `interpreter`. */
export function installHint(module: string, interpreter: string): string {
  if (module === 'torch') return `install PyTorch into it, e.g. \`${interpreter} -m pip install torch\` (pytorch.org lists the CUDA builds)`;
  if (module === 'muonscope') return `install Muonscope's Python package into it: \`${interpreter} -m pip install ./trainer/python\` from a Muonscope checkout`;
  return `install it: \`${interpreter} -m pip install ${module}\``;
}

/** The check's outcome from the process's end and output (apart from the spawn, so each case is tested). */
export function interpretImportCheck(interpreter: string, error: ExecError | null, stdout: string, stderr: string, timeoutMs: number): ImportCheck {
  if (error?.code === 'ENOENT' || error?.code === 'EACCES') {
    return { ok: false, kind: 'not found', message: `the Python interpreter "${interpreter}" could not be started (${error.code}): ${FIX_INTERPRETER}` };
  }
  if (error?.killed) {
    return { ok: false, kind: 'timed out', message: `the import check in "${interpreter}" did not finish within ${Math.round(timeoutMs / 1000)} s: ${FIX_INTERPRETER}` };
  }
  let result: { ok?: unknown; module?: unknown; error?: unknown; python?: unknown; executable?: unknown } | undefined;
  try {
    result = JSON.parse(stdout.trim().split('\n').pop() ?? '');
  } catch {
    result = undefined;
  }
  if (result?.ok === true && !error) return { ok: true, python: String(result.python), executable: String(result.executable) };
  if (result?.ok === false && typeof result.module === 'string') {
    const module = result.module;
    const why = clip(String(result.error ?? ''), 300);
    return { ok: false, kind: 'import', module, message: `"import ${module}" failed in ${interpreter} (${why}): ${installHint(module, interpreter)}, or choose another interpreter in muonscope.pythonInterpreter` };
  }
  // Not the script's answer: a Python 2, a broken interpreter, a wrapper that printed something else.
  const tail = clip((stderr.trim() || stdout.trim() || error?.message || 'no output').split('\n').slice(-3).join(' | '), 400);
  return { ok: false, kind: 'failed', message: `${interpreter} could not run the import check (${tail}): ${FIX_INTERPRETER}` };
}

const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);
