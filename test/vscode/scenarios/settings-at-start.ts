/**
 * A run started from VS Code on a config without `diagnostics.every` runs at the user's
 * muonscope.diagnosticsEvery setting from its start: the setting is in the run's config, and its log has
 * no `control` record from "settings" (which every chart would show as a change nobody made, at step
 * 3–4). The run keeps going: the window-reload scenario uses it as its live run.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { runLog } from '../hand-trainer.js';
import { openFile, waitFor, waitStatus } from '../workbench.js';
import { CONFIGS, runFolders, type E2e, type Scenario } from './context.js';

/** The user's muonscope.diagnosticsEvery (written into the user settings before code-server starts). */
export const DIAGNOSTICS_EVERY_SETTING = 40;

async function run(e: E2e): Promise<void> {
  const { page, log } = e;
  const before = new Set(runFolders(e.workspace));
  await openFile(page, CONFIGS.plain);
  const lens = page.locator('.codelens-decoration a', { hasText: 'Start run' });
  await lens.waitFor({ timeout: 60_000 });
  await lens.click();
  await waitStatus(page, /Muonscope: running .*step [1-9]/, 'the plain run running');
  const dir = await waitFor('the plain run folder', async () => runFolders(e.workspace).find((d) => !before.has(d) && existsSync(join(d, 'trainer.json'))));
  e.runs.plain = dir;
  log(`plain run ${basename(dir)}`);
  await waitFor('step 20 in its log', async () => runLog(dir).some((r) => r.kind === 'step' && r.step >= 20), 60_000, async () => `${runLog(dir).length} records`);

  const fromSettings = runLog(dir).filter((r) => r.kind === 'control' && r.source === 'settings');
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { diagnostics?: { every?: number } };
  log(`config.json diagnostics.every = ${config.diagnostics?.every}; control records from settings: ${fromSettings.length}`);
  if (fromSettings.length) {
    throw new Error(`the run log has ${fromSettings.length} control record(s) from the settings: ${fromSettings.map((r) => JSON.stringify(r)).join('; ')}`);
  }
  if (config.diagnostics?.every !== DIAGNOSTICS_EVERY_SETTING) throw new Error(`the run's config has diagnostics.every = ${config.diagnostics?.every}, want the setting's ${DIAGNOSTICS_EVERY_SETTING}`);
}

export const settingsAtStart: Scenario = {
  name: 'settings at start, not a control',
  covers: 'a run started from VS Code has no control record from the diagnosticsEvery setting; the setting is in its config',
  run,
};
