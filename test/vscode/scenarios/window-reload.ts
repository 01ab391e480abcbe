/**
 * Developer: Reload Window with three dashboards open — A (a stopped run), B (a trainer started by hand
 * outside the workspace and attached by URL, paused) and C (a run started from VS Code, running), C
 * active. After the reload each tab shows its own run (the panel's title and the run named inside its
 * page), the status bar follows the active one, B's panel comes back attached (live, not "Waiting for
 * the trainer…"), and C's trainer survived the reload (keepTrainerRunning defaults to true) and is
 * re-attached, still running.
 */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Page } from 'playwright-core';
import { runLog, type HandTrainer } from '../hand-trainer.js';
import { clickInlineAction, clickTab, focusRunsView, runCommand, statusTooltip, tabTitles, waitDashboard, waitFor, waitStatus, waitTreeRow } from '../workbench.js';
import { attachFromPalette } from './attach-steps.js';
import { needs, startByHand, type E2e, type Scenario } from './context.js';

interface Shown {
  folder: string;
  /** The dashboard's status line and the status bar, for this run. */
  status: RegExp;
  bar: RegExp;
}

/** Opens a run's dashboard from its tree row's button and waits for it to show that run. */
async function openFromTree(page: Page, folder: string): Promise<void> {
  await focusRunsView(page);
  await clickInlineAction(page, folder, 'Open Dashboard');
  await waitDashboard(page, `of ${folder}`, (d) => d.title.includes(folder));
}

/** The tab `run` is active: its page names it, in the expected state, and the status bar follows it. */
async function checkTab(e: E2e, run: Shown, when: string): Promise<void> {
  const { page } = e;
  await clickTab(page, `Muonscope: ${run.folder}`);
  const dash = await waitDashboard(page, `of ${run.folder} ${when}`, (d) => d.title.includes(run.folder) && d.runs.length === 1 && d.runs[0].includes(run.folder) && run.status.test(d.status));
  const bar = await waitStatus(page, run.bar, `following ${run.folder} ${when}`, 30_000);
  const tooltip = await statusTooltip(page);
  if (!tooltip.includes(run.folder)) throw new Error(`${when}: the status bar follows "${tooltip.replace(/\s+/g, ' ')}", want ${run.folder}`);
  e.log(`${when}, tab ${run.folder}: "${dash.title}" — ${dash.status}; status bar ${bar}`);
}

function trainerPid(runDir: string): number {
  return (JSON.parse(readFileSync(join(runDir, 'trainer.json'), 'utf8')) as { pid: number }).pid;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function run(e: E2e): Promise<void> {
  const { page, log } = e;
  const a = basename(needs(e.runs.stopped, 'the stopped run (everyday)'));
  const cDir = needs(e.runs.plain, 'the run started from VS Code (settings at start)');
  const c = basename(cDir);
  const b: HandTrainer = await startByHand(e, 'hand-reload');
  await focusRunsView(page);
  await attachFromPalette(page, b.url, b.token);
  await waitTreeRow(page, b.folder, /running/, 'running, attached');
  await clickInlineAction(page, b.folder, 'Pause');
  await waitTreeRow(page, b.folder, /paused/, 'paused');
  await waitTreeRow(page, c, /running/, 'running');

  const runs: Shown[] = [
    { folder: a, status: /^stopped .*ended$/, bar: /Muonscope: stopped ·/ },
    { folder: b.folder, status: /^paused .*live$/, bar: /Muonscope: paused ·/ },
    { folder: c, status: /^running .*live$/, bar: /Muonscope: running ·/ },
  ];
  await runCommand(page, 'View: Close All Editors');
  for (const r of runs) await openFromTree(page, r.folder);
  await checkTab(e, runs[2], 'before the reload');
  await e.screenshot('three-dashboards-before-reload');
  const cPid = trainerPid(cDir);
  const cStepBefore = runLog(cDir).filter((r) => r.kind === 'step').at(-1)?.step ?? 0;

  const navigated = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame(), timeout: 60_000 });
  await runCommand(page, 'Developer: Reload Window');
  await navigated;
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  log('window reloaded');
  const tabs = await waitFor('the three dashboard tabs back', async () => {
    const t = await tabTitles(page);
    return runs.every((r) => t.some((x) => x.includes(`Muonscope: ${r.folder}`))) ? t : undefined;
  }, 60_000, async () => `tabs: ${(await tabTitles(page)).join(' ‖ ')}`);
  log(`tabs: ${tabs.join(' ‖ ')}`);

  // C was active: it comes back active, on its own run, live; its trainer was not interrupted.
  const active = await waitDashboard(page, `of ${c} (active) after the reload`, (d) => d.title.includes(c) && runs[2].status.test(d.status), 90_000);
  log(`active after reload: "${active.title}" — ${active.status}`);
  await e.screenshot('after-reload-active');
  if (!alive(cPid)) throw new Error(`C's trainer (pid ${cPid}) did not survive the reload`);
  const cStates = runLog(cDir).flatMap((r) => (r.kind === 'state' ? [`${r.state} at step ${r.step} (${r.reason})`] : []));
  if (cStates.some((s) => !s.startsWith('running'))) throw new Error(`C's log has state changes across the reload: ${cStates.join(' → ')}; want it running throughout`);
  await waitFor(`C stepping after the reload (was at ${cStepBefore})`, async () => (runLog(cDir).filter((r) => r.kind === 'step').at(-1)?.step ?? 0) > cStepBefore + 10, 60_000);
  await checkTab(e, runs[2], 'after the reload');
  await checkTab(e, runs[0], 'after the reload');
  await checkTab(e, runs[1], 'after the reload');
  await e.screenshot('after-reload-attached-tab');
  await checkTab(e, runs[2], 'after the reload, back to C');

  // Both live runs are in the tree, live; stop them (from the tree) to end the suite's trainers.
  await focusRunsView(page);
  await waitTreeRow(page, b.folder, /paused/, 'paused after the reload');
  await waitTreeRow(page, c, /running/, 'running after the reload');
  await e.screenshot('after-reload-tree');
  // Stop on B's row stops B, not the focused C (the tree refreshes C's row several times a second).
  await clickInlineAction(page, b.folder, 'Stop');
  await waitTreeRow(page, b.folder, /stopped/, 'stopped');
  await waitFor('B\'s trainer to exit', async () => !b.running(), 60_000);
  const cEnded = runLog(cDir).filter((r) => r.kind === 'state' && r.state !== 'running');
  if (cEnded.length) throw new Error(`Stop on ${b.folder}'s row ended ${c} too: ${JSON.stringify(cEnded)}`);
  await waitTreeRow(page, c, /running/, 'still running after B stopped');
  await clickInlineAction(page, c, 'Stop');
  await waitTreeRow(page, c, /stopped/, 'stopped');
}

export const windowReload: Scenario = {
  name: 'window reload',
  covers: 'dashboards A, B (attached), C (started here) restore to their own runs; status bar follows the active one; B live; C\'s trainer survives and is re-attached',
  run,
};
