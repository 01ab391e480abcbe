// PyTorch runs from the extension (docs/python.md §5): a run config with `command` is validated with JSON
// paths, launched as `muonscope run CONFIG -- COMMAND…` with a bare python/python3 replaced by the chosen
// interpreter, and refused before launch, saying which import failed and how to fix it, when that
// interpreter cannot import torch and muonscope. The import checks spawn a real python3.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import { stripLineComments } from '../../extension/config-starter.js';
import { cliArgs } from '../../extension/launch-args.js';
import { checkPythonImports, chooseInterpreter, configCommand, isPythonProgram, resolveCommand } from '../../extension/python-run.js';
import { parseListeningLine } from '../../extension/trainer-process.js';
import { runConfigJsonSchema, validateRunConfig } from '../../trainer/run/config.js';

const ROOT = join(__dirname, '..', '..');
const tmp = () => mkdtempSync(join(tmpdir(), 'muonscope-py-'));
const COMMAND = ['python', 'train.py', '--steps', '2000'];

function issues(raw: unknown): { path: string; message: string }[] {
  const r = validateRunConfig(raw);
  assert.ok(!r.ok, `refused: ${JSON.stringify(raw).slice(0, 200)}`);
  return r.issues;
}

describe('a run config with command', () => {
  test('is valid, keeps the command as written, and skips the built-in workload\'s cross-checks', () => {
    const r = validateRunConfig({ name: 'torch', command: COMMAND, advisor: { mode: 'auto' } });
    assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
    assert.deepEqual(r.config.command, COMMAND);
    assert.equal(r.config.advisor.mode, 'auto');
    // An mlp cannot train on markov in the built-in trainer; a PyTorch run ignores both fields.
    assert.match(issues({ model: { type: 'mlp' } })[0].message, /cannot train on task "markov"/);
    assert.ok(validateRunConfig({ command: ['python3', 'x.py'], model: { type: 'mlp' } }).ok, 'model/task not cross-checked with a command');
    assert.ok(validateRunConfig({ command: ['python', 'x.py', 'y'.repeat(4096), ''] }).ok, 'an argument of 4096 characters, an empty argument');
    const plain = validateRunConfig({});
    assert.ok(plain.ok && plain.config.command === undefined, 'no command unless given');
  });

  test('a bad command is refused with its JSON path', () => {
    const at = (command: unknown) => issues({ command }).map((i) => i.path);
    assert.deepEqual(at('python train.py'), ['$.command'], 'a string, not an array');
    assert.deepEqual(at([]), ['$.command'], 'empty');
    assert.deepEqual(at(['python', 2]), ['$.command[1]'], 'a number');
    assert.deepEqual(at(['python', 'train.py', 'x'.repeat(4097)]), ['$.command[2]'], 'over 4096 characters');
    assert.deepEqual(at(['', 'train.py']), ['$.command[0]'], 'no program');
    assert.deepEqual(at(['python', 'a\0b']), ['$.command[1]'], 'a NUL');
    assert.match(issues({ command: ['python', 'x'.repeat(4097)] })[0].message, /4096/);
    assert.match(issues({ command: ['', 'x'] })[0].message, /program to run is empty/);
    // The other fields are still checked as for any run.
    assert.deepEqual(issues({ command: COMMAND, steps: 0 }).map((i) => i.path), ['$.steps']);
  });

  test('the editor schema has it (an array of strings, at least one)', () => {
    const schema = runConfigJsonSchema() as { properties: Record<string, { type?: string; minItems?: number; items?: { type?: string; maxLength?: number } }>; required?: string[] };
    const c = schema.properties.command;
    assert.deepEqual([c.type, c.minItems, c.items?.type, c.items?.maxLength], ['array', 1, 'string', 4096]);
    assert.equal(schema.required, undefined, 'command is optional');
  });

  test('the extension reads the command from the file (comments allowed); anything malformed is left to the CLI', () => {
    const dir = tmp();
    const file = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
    assert.deepEqual(configCommand(file('a.muonscope.json', `// a PyTorch run\n{\n  // the script\n  "command": ${JSON.stringify(COMMAND)}\n}\n`)), COMMAND);
    assert.equal(configCommand(file('b.muonscope.json', '{ "steps": 10 }')), undefined, 'no command: a TF.js run');
    assert.equal(configCommand(file('c.muonscope.json', '{ "command": "python train.py" }')), undefined, 'a string goes to `train`, which refuses it');
    assert.equal(configCommand(file('d.muonscope.json', '{ "command": [] }')), undefined);
    assert.equal(configCommand(file('e.muonscope.json', '{ "command": ["python", 3] }')), undefined);
    assert.equal(configCommand(file('f.muonscope.json', '{ "command": [')), undefined, 'bad JSON');
    assert.equal(configCommand(join(dir, 'missing.json')), undefined);
  });
});

test('examples/torch/run.muonscope.json: a valid command config whose script is in its folder, where the extension starts it', () => {
  const file = join(ROOT, 'examples', 'torch', 'run.muonscope.json');
  const command = configCommand(file);
  assert.ok(command && isPythonProgram(command[0]), `a python command: ${JSON.stringify(command)}`);
  const r = validateRunConfig(JSON.parse(stripLineComments(readFileSync(file, 'utf8'))));
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  assert.deepEqual(r.config.command, command);
  assert.ok(existsSync(join(ROOT, 'examples', 'torch', command[1])), `${command[1]} beside the config`);
});

describe('the launch of a command config', () => {
  const req = { configPath: '/w/torch.muonscope.json', runRoot: '/w/runs', cwd: '/w' };

  test('a bare python or python3 becomes the interpreter; any other program is started as written', () => {
    assert.deepEqual(resolveCommand(COMMAND, '/w/.venv/bin/python'), ['/w/.venv/bin/python', 'train.py', '--steps', '2000']);
    assert.deepEqual(resolveCommand(['python3', '-m', 'pkg.train'], 'C:\\py\\python.exe'), ['C:\\py\\python.exe', '-m', 'pkg.train']);
    for (const p of ['torchrun', 'python3.11', '/usr/bin/python3', 'bash']) {
      assert.equal(isPythonProgram(p), false, p);
      assert.deepEqual(resolveCommand([p, 'x'], '/venv/python'), [p, 'x']);
    }
    assert.deepEqual(resolveCommand(['python', 'python'], '/venv/python'), ['/venv/python', 'python'], 'only the program');
  });

  test('the argv is `run CONFIG --out ROOT -- COMMAND…`; the cadence setting is the built-in trainer\'s only', () => {
    const command = resolveCommand(COMMAND, '/w/.venv/bin/python');
    assert.deepEqual(cliArgs({ ...req, command }, 7), ['run', '/w/torch.muonscope.json', '--out', '/w/runs', '--', '/w/.venv/bin/python', 'train.py', '--steps', '2000']);
    assert.deepEqual(cliArgs(req, 7), ['train', '/w/torch.muonscope.json', '--default-diagnostics-every', '7', '--out', '/w/runs'], 'a TF.js run as before');
    assert.deepEqual(cliArgs({ resumeRunDir: '/w/runs/a', runRoot: '/w/runs', cwd: '/w' }, 7), ['train', '--resume', '/w/runs/a', '--out', '/w/runs']);
    assert.throws(() => cliArgs({ resumeRunDir: '/w/runs/a', runRoot: '/w/runs', cwd: '/w', command }, null), /not resumed/);
    assert.throws(() => cliArgs({ ...req, command: [] }, null), /needs a command/);
  });

  test('the interpreter: the setting (paths resolved), else the Python extension\'s, else python3', () => {
    const setting = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).contributes.configuration.properties['muonscope.pythonInterpreter'];
    assert.deepEqual([setting.type, setting.default], ['string', ''], 'the setting is empty by default: not set');
    const c = (setting: string, ext?: string, folder: string | undefined = '/w') => chooseInterpreter(setting, ext, folder, '/home/u');
    assert.deepEqual(c('/opt/py/bin/python', '/ext/python'), { interpreter: '/opt/py/bin/python', source: 'setting' });
    assert.deepEqual(c('.venv/bin/python'), { interpreter: join('/w', '.venv/bin/python'), source: 'setting' });
    assert.deepEqual(c('${workspaceFolder}/.venv/bin/python'), { interpreter: '/w/.venv/bin/python', source: 'setting' });
    assert.deepEqual(c('~/venvs/t/bin/python'), { interpreter: '/home/u/venvs/t/bin/python', source: 'setting' });
    assert.deepEqual(c('python3.12'), { interpreter: 'python3.12', source: 'setting' }, 'a bare name is looked up on PATH');
    assert.deepEqual(c('  ', '/ext/python'), { interpreter: '/ext/python', source: 'python extension' });
    assert.deepEqual(c('', undefined), { interpreter: 'python3', source: 'default' });
  });

  test('through the real CLI: the listening line the extension reads, the interpreter run in the config\'s folder, trainer.json for attaching', { timeout: 60_000 }, async () => {
    const dir = tmp();
    const config = join(dir, 'torch.muonscope.json');
    // The "script": what a PyTorch run sees while the host serves it.
    const script = [
      'import json, os',
      'd = os.environ["MUONSCOPE_RUN_DIR"]',
      'print("SEEN " + json.dumps({"cwd": os.getcwd(), "trainer": json.load(open(os.path.join(d, "trainer.json"))), "config": json.load(open(os.environ["MUONSCOPE_CONFIG"]))}), flush=True)',
    ].join('\n');
    writeFileSync(config, `// a PyTorch run\n${JSON.stringify({ name: 'torch', command: ['python', '-c', script] })}\n`);
    const command = configCommand(config);
    assert.ok(command);
    const args = cliArgs({ configPath: config, runRoot: join(dir, 'runs'), cwd: dir, command: resolveCommand(command, 'python3') }, 5);
    // Started where the extension starts it (the config's folder), so tsx is named by its full path.
    const tsx = pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
    const child = spawn(process.execPath, ['--import', tsx, join(ROOT, 'trainer', 'cli.ts'), ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, `exit ${code}; stderr: ${err.slice(-2000)}`);
    const lines = out.split('\n');
    const listening = parseListeningLine(lines[0]);
    assert.ok(listening, `the first line is the listening line: ${lines[0]}`);
    const seen = JSON.parse(lines.find((l) => l.startsWith('SEEN '))!.slice(5));
    assert.equal(seen.cwd, dir, 'started in the directory the extension gives (the config\'s folder)');
    assert.deepEqual(seen.trainer, { pid: child.pid, url: listening.url, token: listening.token }, 'trainer.json: the host, as a TF.js trainer writes it');
    assert.deepEqual(seen.config.command, command, 'MUONSCOPE_CONFIG holds the validated config, command included');
    assert.ok(!existsSync(join(listening.runDir, 'trainer.json')), 'removed once the run is over');
    const last = readFileSync(join(listening.runDir, 'log.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).pop();
    assert.equal(last.kind === 'state' && last.state, 'stopped', 'the command exited 0 without a final state: stopped');
  });
});

describe('the import check', () => {
  const python = 'python3';
  const fakeModules = (files: Record<string, string>) => {
    const dir = tmp();
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  };

  test('python3 is there to spawn', () => {
    assert.equal(spawnSync(python, ['-c', 'print(1)']).status, 0, 'these tests need python3 on PATH');
  });

  test('a module that is not installed: which import failed, and how to install it', async () => {
    const r = await checkPythonImports(python, { modules: ['json', 'muonscope_does_not_exist'] });
    assert.ok(!r.ok && r.kind === 'import', JSON.stringify(r));
    assert.equal(r.module, 'muonscope_does_not_exist');
    assert.match(r.message, /"import muonscope_does_not_exist" failed in python3 \(ModuleNotFoundError: No module named 'muonscope_does_not_exist'\)/);
    assert.match(r.message, /python3 -m pip install muonscope_does_not_exist/);
    assert.match(r.message, /muonscope\.pythonInterpreter/);
  });

  test('torch that fails to import (a missing CUDA library) is named, with the PyTorch install hint', async () => {
    const cwd = fakeModules({ 'torch.py': 'raise ImportError("libcudart.so.12: cannot open shared object file")\n', 'muonscope.py': '' });
    const r = await checkPythonImports(python, { cwd });
    assert.ok(!r.ok && r.kind === 'import' && r.module === 'torch', JSON.stringify(r));
    assert.match(r.message, /"import torch" failed in python3 \(ImportError: libcudart\.so\.12: cannot open shared object file\)/);
    assert.match(r.message, /python3 -m pip install torch/);
  });

  test('muonscope missing where torch imports: the package install from the checkout', async () => {
    const cwd = fakeModules({ 'torch.py': '', 'muonscope.py': 'import muonscope_does_not_exist\n' });
    const r = await checkPythonImports(python, { cwd });
    assert.ok(!r.ok && r.kind === 'import' && r.module === 'muonscope', JSON.stringify(r));
    assert.match(r.message, /No module named 'muonscope_does_not_exist'/);
    assert.match(r.message, /python3 -m pip install \.\/trainer\/python/);
  });

  test('both import: ok, with the interpreter\'s version and executable', async () => {
    const r = await checkPythonImports(python, { cwd: fakeModules({ 'torch.py': '', 'muonscope.py': '' }) });
    assert.ok(r.ok, JSON.stringify(r));
    assert.match(r.python, /^3\.\d+/);
    assert.ok(existsSync(r.executable), r.executable);
  });

  test('an interpreter that is not there, one that hangs, one that is not Python', async () => {
    const missing = await checkPythonImports('/nonexistent/bin/python');
    assert.ok(!missing.ok && missing.kind === 'not found', JSON.stringify(missing));
    assert.match(missing.message, /"\/nonexistent\/bin\/python" could not be started \(ENOENT\)/);

    const cwd = fakeModules({ 'torch.py': 'import time\ntime.sleep(30)\n' });
    const t0 = Date.now();
    const hung = await checkPythonImports(python, { cwd, timeoutMs: 1500 });
    assert.ok(!hung.ok && hung.kind === 'timed out', JSON.stringify(hung));
    assert.ok(Date.now() - t0 < 10_000, `given up after the timeout, not the sleep: ${Date.now() - t0} ms`);
    assert.match(hung.message, /did not finish within 2 s/);

    const node = await checkPythonImports(process.execPath);
    assert.ok(!node.ok && node.kind === 'failed', JSON.stringify(node));
    assert.match(node.message, /could not run the import check/);
  });

  const venv = join(ROOT, '.venv', 'bin', 'python');
  test('the project venv (torch and the package installed) passes the real check', { skip: existsSync(venv) ? false : 'no .venv (bash test/python/venv.sh makes it)', timeout: 90_000 }, async () => {
    const r = await checkPythonImports(venv);
    assert.ok(r.ok, JSON.stringify(r));
  });
});
