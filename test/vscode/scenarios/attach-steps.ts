/** The two steps of Attach to Trainer as a user answers them: the URL, then the token. */
import type { Page } from 'playwright-core';
import { answerInputBox, quickInput, quickInputBox, runCommand, waitFor, waitQuickInput } from '../workbench.js';

/** Answers step 1/2 with `url`; returns what the box held before (a Retry pre-fills the URL). */
export async function enterAttachUrl(page: Page, url: string): Promise<string> {
  await waitQuickInput(page, 'Attach to Trainer (1/2)');
  const prefilled = await quickInputBox(page).inputValue();
  await answerInputBox(page, url);
  return prefilled;
}

/**
 * Answers step 2/2 with `token`. Returns whether it first offered "Use the saved token" (which it does
 * only when a token for the URL was saved, i.e. after an attach that worked); if so, enters a new one.
 */
export async function enterAttachToken(page: Page, token: string): Promise<{ savedTokenOffered: boolean }> {
  await waitQuickInput(page, 'Attach to Trainer (2/2)');
  const widget = quickInput(page);
  const savedChoice = widget.locator('.quick-input-list .monaco-list-row:visible', { hasText: 'Use the saved token' });
  const passwordBox = widget.locator('.quick-input-box input[type="password"]:visible');
  const shown = await waitFor('the token step (a password box, or the saved-token choice)', async () => ((await savedChoice.count()) ? 'choice' : (await passwordBox.count()) ? 'password' : undefined), 15_000);
  if (shown === 'choice') {
    await widget.locator('.quick-input-list .monaco-list-row', { hasText: 'Enter a new token' }).click();
    await waitFor('the password box', async () => (await passwordBox.count()) > 0, 15_000);
  }
  await answerInputBox(page, token);
  return { savedTokenOffered: shown === 'choice' };
}

export async function attachFromPalette(page: Page, url: string, token: string): Promise<{ savedTokenOffered: boolean }> {
  await runCommand(page, 'Muonscope: Attach to Trainer');
  await enterAttachUrl(page, url);
  return enterAttachToken(page, token);
}
