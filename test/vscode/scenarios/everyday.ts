/**
 * The everyday path: start from the CodeLens, the status bar and the runs tree follow, the dashboard,
 * pause and resume from the palette, apply an advisor suggestion, stop, reopen the stopped run from the
 * tree, start another and kill its trainer: the crash is reported.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { clearNotifications, focusRunsView, openFile, runCommand, toasts, treeRow, waitDashboard, waitFor, waitStatus, waitTreeRow, dashboardPages } from '../workbench.js';
import { CONFIGS, runFolders, type E2e, type Scenario } from './context.js';

async function run(e: E2e): Promise<void> {
  const { page, log } = e;
  // 1. Open the run config; the CodeLens offers "Start run".
  await openFile(page, CONFIGS.e2e);
  const startLens = page.locator('.codelens-decoration a', { hasText: 'Start run' });
  await startLens.waitFor({ timeout: 60_000 });
  await e.screenshot('config-with-codelens');
  await startLens.click();
  log('clicked the Start run CodeLens');

  // 2. The status bar follows the run.
  const running = await waitStatus(page, /Muonscope: running .*step [1-9]\d*/, 'showing the running run');
  log(`status bar: ${running}`);
  await waitFor('the Pause CodeLens', async () => (await page.locator('.codelens-decoration a', { hasText: 'Pause' }).count()) > 0);
  const first = await waitFor('the run folder', async () => runFolders(e.workspace).find((d) => existsSync(join(d, 'trainer.json'))));
  const firstLabel = basename(first);

  // 3. The runs tree lists it, live.
  await focusRunsView(page);
  log(`tree: ${await waitTreeRow(page, firstLabel, /running · step [1-9]/, 'running')}`);
  await e.screenshot('running-tree-and-status');

  // 4. The dashboard.
  await runCommand(page, 'Muonscope: Open Dashboard');
  const dash = await waitDashboard(page, 'showing the live run', (d) => d.title.includes(firstLabel) && /running/.test(d.status) && /live/.test(d.status));
  log(`dashboard: ${dash.title} — ${dash.status}`);
  await page.waitForTimeout(2000);
  await e.screenshot('dashboard-live');

  // 5. Pause and resume from the palette.
  await runCommand(page, 'Muonscope: Pause');
  log(`paused: ${await waitStatus(page, /Muonscope: paused/, 'paused')}`);
  await e.screenshot('paused');
  await runCommand(page, 'Muonscope: Resume');
  await waitStatus(page, /Muonscope: running/, 'running again');
  log('resumed');

  // 5b. Apply an advisor suggestion from the dashboard's Suggestions tab (the relay carries it to the trainer).
  const frame = (await waitDashboard(page, 'frame', () => true, 30_000)).frame;
  await frame.click('#tab-suggestions');
  const applyButton = frame.locator('vscode-button[id^="apply-"]').first();
  await applyButton.waitFor({ timeout: 90_000 });
  const suggestionId = ((await applyButton.getAttribute('id')) ?? '').replace(/^apply-/, '');
  await applyButton.click();
  const applied = await waitFor('the apply acknowledgement', async () => {
    const t = (await frame.locator(`#suggestion-reply-${suggestionId}, #suggestions-history`).allTextContents()).join(' ');
    return /applied by/.test(t) ? t : undefined;
  }, 30_000);
  log(`applied suggestion ${suggestionId}: ${/applied by [^)]*\)?/.exec(applied)?.[0] ?? ''}`);
  await frame.click('#tab-overview');
  await e.screenshot('suggestion-applied');

  // 6. Stop.
  await runCommand(page, 'Muonscope: Stop');
  log(`stopped: ${await waitStatus(page, /Muonscope: stopped/, 'stopped')}`);
  await waitFor('the trainer to leave its run folder', async () => !existsSync(join(first, 'trainer.json')), 30_000);
  const log1 = readFileSync(join(first, 'log.ndjson'), 'utf8');
  for (const want of ['"state":"paused"', '"state":"running"', '"state":"stopped"', '"kind":"suggestion_outcome"', '"outcome":"applied"']) {
    if (!log1.includes(want)) throw new Error(`run log of ${firstLabel} lacks ${want}`);
  }
  await e.screenshot('stopped');
  e.runs.stopped = first;

  // 7. Reopen the stopped run from the tree, with no trainer running.
  await runCommand(page, 'View: Close All Editors');
  await waitFor('no dashboard', async () => (await dashboardPages(page)).length === 0, 15_000);
  await focusRunsView(page);
  await waitTreeRow(page, firstLabel, /stopped/, 'stopped');
  await treeRow(page, firstLabel).first().click();
  const reopened = await waitDashboard(page, 'showing the stopped run', (d) => d.title.includes(firstLabel) && /stopped/.test(d.status) && /ended/.test(d.status));
  log(`reopened dashboard: ${reopened.status}`);
  await page.waitForTimeout(2000);
  await e.screenshot('reopened-stopped-run');

  // 8. A crash: start again, kill the trainer, see it reported.
  await runCommand(page, 'View: Close All Editors');
  await openFile(page, CONFIGS.e2e);
  await page.locator('.codelens-decoration a', { hasText: 'Start run' }).click();
  await waitStatus(page, /Muonscope: running .*step [1-9]/, 'the second run running');
  const second = await waitFor('the second run folder', async () => runFolders(e.workspace).find((d) => d !== first && existsSync(join(d, 'trainer.json'))));
  const { pid } = JSON.parse(readFileSync(join(second, 'trainer.json'), 'utf8')) as { pid: number };
  process.kill(pid, 'SIGKILL');
  log(`killed trainer pid ${pid}`);
  await waitStatus(page, /Muonscope: crashed/, 'crashed', 30_000);
  const toast = await waitFor('the crash notification', async () => (await toasts(page).allTextContents()).find((t) => /crashed/.test(t) && /SIGKILL/.test(t)), 30_000);
  log(`notification: ${toast.slice(0, 160)}`);
  await e.screenshot('crash-reported');
  e.runs.crashed = second;
  await clearNotifications(page);
  await runCommand(page, 'View: Close All Editors');
}

export const everyday: Scenario = {
  name: 'everyday',
  covers: 'start from the CodeLens, tree and status bar, dashboard, pause/resume, apply a suggestion, stop, reopen, crash reported',
  run,
};
