/**
 * What every browser test does to a dashboard page: launch headless Chromium with the flags this machine
 * needs, switch views as a user would, and run axe for serious violations.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:http';
import { after, afterEach, before } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { FakeHost, serveDashboard, type RunFixture } from './host.js';

const axeSource = readFileSync(join(import.meta.dirname, '../../node_modules/axe-core/axe.min.js'), 'utf8');

/** Debian's Chromium, headless; the background-networking flags keep it off this machine's closed network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** Clicks a view's tab and waits until it is shown and drawn. */
export async function showView(page: Page, id: string): Promise<void> {
  await page.click(`#tab-${id}`);
  await page.waitForFunction((id) => (window as unknown as { __muonscope: { view: string } }).__muonscope.view === id, id);
  // Two frames: one to render, one for uPlot's deferred commit.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

/** Fails with every serious or critical axe violation on the page, naming where it was found. */
export async function assertAccessible(page: Page, name: string): Promise<void> {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const r = await (window as unknown as { axe: { run: (ctx: unknown, o: unknown) => Promise<{ violations: { id: string; impact: string; nodes: { target: unknown }[] }[] }> } }).axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}) at ${JSON.stringify(v.nodes.slice(0, 3).map((n) => n.target))}`);
  });
  assert.deepEqual(violations, [], `axe found serious violations in ${name}: ${violations.join('; ')}`);
}

/**
 * Registers, inside a describe block, one served dashboard bundle and one Chromium for the block, and
 * closes every page a test opened after it: each test opens its own page with `open(runs)`.
 */
export function dashboardPages(): { open(runs: RunFixture[]): Promise<FakeHost> } {
  let browser: Browser;
  let server: Server;
  let origin: string;
  const opened: FakeHost[] = [];
  before(async () => {
    const served = await serveDashboard();
    server = served.server;
    origin = served.origin;
    browser = await launchChromium();
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((h) => h.page.close()));
  });
  after(async () => {
    await browser?.close();
    server?.close();
  });
  return {
    async open(runs) {
      const host = await FakeHost.open(browser, origin, runs);
      opened.push(host);
      return host;
    },
  };
}
