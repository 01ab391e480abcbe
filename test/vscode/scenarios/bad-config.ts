/**
 * A bad config: Start Run on a config with two problems. The notification names each problem once, and
 * the Output panel has one "Muonscope" channel (the runs so far and the failed start are sections of it,
 * not channels of their own).
 */
import { clearNotifications, openFile, quickPickRows, runCommand, toasts, waitFor, waitQuickInput, waitToast } from '../workbench.js';
import { CONFIGS, type E2e, type Scenario } from './context.js';

const PROBLEMS = ['$.steps', '$.batchSize'];

const occurrences = (text: string, needle: string) => text.split(needle).length - 1;

async function run(e: E2e): Promise<void> {
  const { page, log } = e;
  await clearNotifications(page);
  await openFile(page, CONFIGS.bad);
  await runCommand(page, 'Muonscope: Start Run');
  const toast = await waitToast(page, 'saying the run did not start', /did not start/, 90_000);
  const message = (await toast.locator('.notification-list-item-message').textContent()) ?? '';
  log(`notification: ${message}`);
  await e.screenshot('bad-config-notification');
  const failures = (await toasts(page).allTextContents()).filter((t) => /did not start/.test(t));
  if (failures.length !== 1) throw new Error(`${failures.length} "did not start" notifications, want 1: ${failures.join(' ‖ ')}`);
  for (const p of PROBLEMS) {
    const n = occurrences(message, p);
    if (n !== 1) throw new Error(`the notification names ${p} ${n} times, want once: "${message}"`);
  }

  // The Output panel's channel list: one Muonscope channel, none per run or per failed start.
  await runCommand(page, 'Output: Show Output Channels...');
  await waitQuickInput(page, '');
  await page.keyboard.type('muonscope', { delay: 30 });
  const channels = await waitFor('the Muonscope channel in the list', async () => {
    const rows = (await quickPickRows(page)).map((r) => r.trim());
    return rows.length ? rows : undefined;
  }, 15_000, async () => `rows: ${(await quickPickRows(page)).join(' ‖ ')}`);
  log(`output channels matching "muonscope": ${channels.join(' ‖ ')}`);
  await e.screenshot('output-channels');
  await page.keyboard.press('Escape');
  if (channels.length !== 1 || !/^Muonscope\b/.test(channels[0]) || /failed|start|e2e|run/i.test(channels[0])) {
    throw new Error(`want one "Muonscope" output channel, got ${channels.length}: ${channels.join(' ‖ ')}`);
  }
  await clearNotifications(page);
  await runCommand(page, 'View: Close All Editors');
}

export const badConfig: Scenario = {
  name: 'bad config',
  covers: 'a config with two problems: each named once in the notification; one Muonscope output channel',
  run,
};
