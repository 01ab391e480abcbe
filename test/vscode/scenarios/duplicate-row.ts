/**
 * One run, one row: a trainer started by hand writing into the workspace's runs folder is discovered and
 * shown live; attaching to it by URL as well leaves exactly one row for it (and still checks the token).
 */
import { join } from 'node:path';
import { clearNotifications, clickInlineAction, focusRunsView, holdsFor, treeRowTexts, waitToast, waitTreeRow } from '../workbench.js';
import { attachFromPalette } from './attach-steps.js';
import { startByHand, type E2e, type Scenario } from './context.js';

async function run(e: E2e): Promise<void> {
  const { page, log } = e;
  const trainer = await startByHand(e, 'hand-dup', { out: join(e.workspace, 'runs') });
  await focusRunsView(page);
  log(`discovered: ${await waitTreeRow(page, trainer.folder, /running · step [1-9]/, 'running (discovered in the runs folder)', 60_000)}`);
  // Already shown live, the trainer still checks the token: a wrong one is refused, and not saved.
  await attachFromPalette(page, trainer.url, 'not-the-token');
  await waitToast(page, 'saying unauthorised, for a run listed already', /could not attach \(unauthorised\)/);
  await clearNotifications(page);
  const { savedTokenOffered } = await attachFromPalette(page, trainer.url, trainer.token);
  if (savedTokenOffered) throw new Error('the wrong token was saved');
  await page.waitForTimeout(1500);
  await holdsFor('one row for the run', async () => {
    const rows = await treeRowTexts(page);
    const mine = rows.filter((r) => r.includes(trainer.folder) || r.includes(trainer.url.replace(/^ws:\/\//, '')));
    return mine.length === 1 && /running/.test(mine[0]) ? undefined : `${mine.length} rows for ${trainer.folder}: ${rows.join(' ‖ ')}`;
  }, 4000);
  await e.screenshot('discovered-and-attached-one-row');
  await clickInlineAction(page, trainer.folder, 'Stop');
  log(`then stopped: ${await waitTreeRow(page, trainer.folder, /stopped/, 'stopped')}`);
}

export const duplicateRow: Scenario = {
  name: 'duplicate row',
  covers: 'a trainer discovered in the runs folder and attached by URL too is one row',
  run,
};
