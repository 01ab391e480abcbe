/**
 * Compare Runs from the runs tree's context menu on run A: the pick offers the other runs, and the
 * dashboard that opens compares A with the picked run (both named in it, A first).
 */
import { basename } from 'node:path';
import { clickContextMenuItem, focusRunsView, openContextMenu, quickInput, quickPickRows, tabTitles, waitDashboard, waitFor, waitTreeRow } from '../workbench.js';
import { needs, type E2e, type Scenario } from './context.js';

async function run(e: E2e): Promise<void> {
  const { page, log } = e;
  const a = basename(needs(e.runs.stopped, 'the stopped run (everyday)'));
  const b = basename(needs(e.runs.crashed, 'the crashed run (everyday)'));
  await focusRunsView(page);
  await waitTreeRow(page, a, /stopped/, 'stopped');
  await openContextMenu(page, a);
  await clickContextMenuItem(page, 'Compare Runs');
  const rows = await waitFor('the runs to compare with', async () => {
    const r = await quickPickRows(page);
    return r.some((t) => t.includes(b)) ? r : undefined;
  }, 20_000, async () => `rows: ${(await quickPickRows(page)).join(' ‖ ')}`);
  const placeholder = (await quickInput(page).locator('.quick-input-box input').getAttribute('placeholder')) ?? '';
  log(`pick "${placeholder}": ${rows.join(' ‖ ')}`);
  if (rows.some((r) => r.includes(a))) throw new Error(`the pick offers ${a} itself: ${rows.join(' ‖ ')}`);
  await quickInput(page).locator('.quick-input-list .monaco-list-row', { hasText: b }).first().click();
  await page.keyboard.press('Enter');

  const dash = await waitDashboard(page, `comparing ${a} with ${b}`, (d) => d.runs.length === 2);
  log(`dashboard "${dash.title}" shows runs: ${dash.runs.join(', ')}`);
  if (!dash.runs[0].includes(a) || !dash.runs[1].includes(b)) throw new Error(`the dashboard shows [${dash.runs.join(', ')}], want ${a} then ${b}`);
  const tabs = await tabTitles(page);
  if (!tabs.some((t) => /compare 2 runs/.test(t))) throw new Error(`no "compare 2 runs" tab: ${tabs.join(' ‖ ')}`);
  await dash.frame.click('#tab-compare');
  const compareText = () => dash.frame.evaluate(() => (document.getElementById('view-compare') as HTMLElement | null)?.innerText ?? '');
  const shown = await waitFor('the Compare view naming both runs', async () => {
    const t = await compareText();
    return t.includes(a) && t.includes(b) ? t : undefined;
  }, 20_000, async () => `Compare view: ${(await compareText()).slice(0, 300)}`);
  log(`Compare view: ${shown.replace(/\s+/g, ' ').slice(0, 200)}`);
  await e.screenshot('compare-from-tree');
  await dash.frame.click('#tab-overview');
}

export const compareFromTree: Scenario = {
  name: 'compare from the tree',
  covers: "Compare Runs from run A's context menu opens A compared with the picked run",
  run,
};
