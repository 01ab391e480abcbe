/**
 * Attach failures are said, not silent: a wrong token → a notification saying unauthorised with Retry,
 * and the token is not saved (attaching again does not offer "Use the saved token"); an unreachable URL
 * (a closed port) → a notification saying refused. No ghost row is left in the tree. Retry with the right
 * token then attaches (the trainer stays attached for the next scenario).
 */
import type { Page } from 'playwright-core';
import { closedPort } from '../hand-trainer.js';
import { clearNotifications, focusRunsView, holdsFor, statusText, treeRowTexts, waitToast, waitTreeRow } from '../workbench.js';
import { attachFromPalette, enterAttachToken, enterAttachUrl } from './attach-steps.js';
import { startByHand, type E2e, type Scenario } from './context.js';

/** No tree row for `what`, and the status bar not stuck on a connection that never was, for 2 s. */
async function noGhost(page: Page, what: string, hostPort: string): Promise<void> {
  await holdsFor(`no ghost row for ${what}`, async () => {
    const rows = await treeRowTexts(page);
    const ghost = rows.find((r) => r.includes(hostPort) || /unknown · step 0/.test(r));
    if (ghost) return `tree rows: ${rows.join(' ‖ ')}`;
    const status = await statusText(page);
    return /starting|offline/.test(status) ? `status bar: "${status}"` : undefined;
  }, 2000);
}

async function run(e: E2e): Promise<void> {
  const { page, log } = e;
  const trainer = await startByHand(e, 'hand-stop');
  const hostPort = trainer.url.replace(/^ws:\/\//, '');
  await focusRunsView(page);

  // A wrong token.
  const first = await attachFromPalette(page, trainer.url, 'not-the-token');
  if (first.savedTokenOffered) throw new Error(`a token was already saved for ${trainer.url} before any attach`);
  const unauthorised = await waitToast(page, 'saying unauthorised', /could not attach \(unauthorised\)/);
  log(`wrong token: ${(await unauthorised.locator('.notification-list-item-message').textContent()) ?? ''}`);
  const retry = unauthorised.locator('.monaco-button', { hasText: 'Retry' });
  if (!(await retry.count())) throw new Error(`the unauthorised notification has no Retry: ${await unauthorised.textContent()}`);
  await e.screenshot('attach-unauthorised');
  await noGhost(page, 'the failed attach', hostPort);

  // Retry: the URL comes back filled in, and the wrong token was not saved.
  await retry.first().click();
  const prefilled = await enterAttachUrl(page, trainer.url);
  if (prefilled !== trainer.url) throw new Error(`Retry pre-filled "${prefilled}", want ${trainer.url}`);
  const again = await enterAttachToken(page, trainer.token);
  if (again.savedTokenOffered) throw new Error('after a wrong token, attaching again offered "Use the saved token": the wrong token was saved');
  log(`attached on retry: ${await waitTreeRow(page, trainer.folder, /running · step/, 'running, attached')}`);
  e.runs.attached = trainer;

  // An unreachable URL: a port where nothing listens.
  const port = await closedPort();
  const dead = `ws://127.0.0.1:${port}`;
  await attachFromPalette(page, dead, 'any-token');
  const refused = await waitToast(page, 'saying refused', /could not attach \(refused\)/);
  log(`closed port: ${(await refused.locator('.notification-list-item-message').textContent()) ?? ''}`);
  if (!(await refused.locator('.monaco-button', { hasText: 'Retry' }).count())) throw new Error(`the refused notification has no Retry: ${await refused.textContent()}`);
  await e.screenshot('attach-refused');
  await holdsFor(`no ghost row for ${dead}`, async () => {
    const rows = await treeRowTexts(page);
    return rows.some((r) => r.includes(`127.0.0.1:${port}`)) ? `tree rows: ${rows.join(' ‖ ')}` : undefined;
  }, 2000);
  await clearNotifications(page);
}

export const attachFailures: Scenario = {
  name: 'attach failures',
  covers: 'wrong token → unauthorised + Retry, token not saved; closed port → refused; no ghost row',
  run,
};
