/**
 * PyTorch runs from VS Code (docs/python.md §5), without PyTorch: the command runs in its config's folder,
 * and a `torch.py`/`muonscope.py` beside the config stand in for the packages (Python imports from there
 * first). 1. torch that fails to import: Start Run says which import failed, Python's message and the
 * fix, offers Open Settings, and starts nothing. 2. both import: the CodeLens starts
 * `muonscope run CONFIG -- python3 …`, whose run folder appears in the workspace's runs folder with its
 * trainer.json while it is served, and ends `stopped` when the command exits 0.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { runLog } from '../hand-trainer.js';
import { clearNotifications, openFile, runCommand, waitFor, waitToast } from '../workbench.js';
import { runFolders, type E2e, type Scenario } from './context.js';

function writeConfig(dir: string, name: string, command: string[], modules: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(modules)) writeFileSync(join(dir, file), text);
  writeFileSync(join(dir, name), JSON.stringify({ name: name.replace('.muonscope.json', ''), command }, null, 2));
}

async function run(e: E2e): Promise<void> {
  const { page, log } = e;
  await clearNotifications(page);

  // 1. torch does not import: refused before anything starts.
  const missing = 'torch-missing.muonscope.json';
  writeConfig(join(e.workspace, 'torch-missing'), missing, ['python', '-c', 'pass'], { 'torch.py': 'raise ImportError("e2e: no torch here")\n' });
  const before = new Set(runFolders(e.workspace));
  await openFile(page, missing);
  await runCommand(page, 'Muonscope: Start Run');
  const toast = await waitToast(page, 'saying which import failed', /did not start/, 90_000);
  const message = (await toast.locator('.notification-list-item-message').textContent()) ?? '';
  log(`notification: ${message}`);
  await e.screenshot('python-import-failed');
  for (const want of [/"import torch" failed/, /e2e: no torch here/, /pip install torch/]) {
    if (!want.test(message)) throw new Error(`the notification lacks ${want}: "${message}"`);
  }
  if ((await toast.locator('.monaco-button', { hasText: 'Open Settings' }).count()) !== 1) throw new Error('no Open Settings action on the notification');
  const started = runFolders(e.workspace).filter((d) => !before.has(d));
  if (started.length) throw new Error(`a refused start made run folders: ${started.join(', ')}`);
  await clearNotifications(page);
  await runCommand(page, 'View: Close All Editors');

  // 2. both import: started through muonscope run, served like a TF.js run, ended stopped.
  const fake = 'torch-fake.muonscope.json';
  writeConfig(join(e.workspace, 'torch-fake'), fake, ['python', '-c', 'import time; time.sleep(8)'], { 'torch.py': '', 'muonscope.py': '' });
  await openFile(page, fake);
  const lens = page.locator('.codelens-decoration a', { hasText: 'Start run' });
  await lens.waitFor({ timeout: 60_000 });
  await lens.click();
  const dir = await waitFor('the PyTorch run folder, served', async () => runFolders(e.workspace).find((d) => !before.has(d) && basename(d).startsWith('torch-fake') && existsSync(join(d, 'trainer.json'))), 90_000);
  log(`python run ${basename(dir)}`);
  const end = await waitFor('its final state', async () => runLog(dir).find((r) => r.kind === 'state' && r.state !== 'running' && r.state !== 'paused'), 60_000, async () => `${runLog(dir).length} records`);
  if (end.kind !== 'state' || end.state !== 'stopped') throw new Error(`the run ended ${JSON.stringify(end)}, want stopped (the command exited 0)`);
  await waitFor('trainer.json removed', async () => !existsSync(join(dir, 'trainer.json')), 20_000);
  await clearNotifications(page);
  await runCommand(page, 'View: Close All Editors');
}

export const pythonRun: Scenario = {
  name: 'python run',
  covers: 'a config with command: an interpreter without torch is refused naming the import and its fix; with both importable it runs through muonscope run and ends stopped',
  run,
};
