/**
 * Driving code-server's workbench as a user does — the command palette, quick inputs, the runs tree and
 * its menus, notifications, the status bar — and reading the dashboard pages inside their webview frames.
 * Every wait has a deadline and says what it last saw.
 */
import type { Frame, Locator, Page } from 'playwright-core';

/**
 * Polls `probe` until it returns something truthy. On timeout the error says what was awaited and what
 * was last seen: `seen()` when given (e.g. the tree's rows), else the probe's last error.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false | null>, timeoutMs = 60_000, seen?: () => Promise<string>): Promise<T> {
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() - started > timeoutMs) {
      const last = seen ? await seen().catch((e) => `(${String(e)})`) : lastError ? String(lastError) : 'nothing';
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; last seen: ${last.slice(0, 600)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Keeps checking that `probe` holds for `ms`; throws with the value that broke it. */
export async function holdsFor(what: string, probe: () => Promise<string | undefined>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const broken = await probe();
    if (broken !== undefined) throw new Error(`${what} did not hold: ${broken}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Takes keyboard focus out of a webview (a dashboard keeps F1 to itself once clicked into). */
async function focusWorkbench(page: Page): Promise<void> {
  await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
}

export async function runCommand(page: Page, title: string): Promise<void> {
  const input = page.locator('.quick-input-widget input');
  const seen = async () => `the palette ${(await input.isVisible()) ? `open with "${await input.inputValue()}"` : 'closed'}`;
  // Up to three tries: once in CI the palette was gone (or never got the typing) by the time its list
  // should have shown the command, and the scenario waited a minute on an empty screen.
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('Escape');
    await focusWorkbench(page);
    await page.keyboard.press('F1');
    await input.waitFor({ state: 'visible', timeout: 10_000 });
    await page.keyboard.type(title, { delay: 30 });
    try {
      // Let the list filter to the command, then take the first (best) match.
      await waitFor(`"${title}" in the palette`, async () => (await page.locator('.quick-input-list .monaco-list-row').first().textContent())?.includes(title.replace(/^.*?: /, '')),
        attempt < 3 ? 15_000 : 60_000, seen);
      break;
    } catch (e) {
      if (attempt >= 3) throw e;
      console.log(`[e2e] ${String(e)}; opening the palette again`);
    }
  }
  await page.keyboard.press('Enter');
}

export async function openFile(page: Page, name: string): Promise<void> {
  await page.keyboard.press('Escape');
  await focusWorkbench(page);
  await page.keyboard.press('F1');
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible', timeout: 10_000 });
  await page.keyboard.press('Backspace'); // drop ">": the palette becomes Quick Open
  await page.keyboard.type(name, { delay: 30 });
  await waitFor(`${name} in Quick Open`, async () => (await page.locator('.quick-input-list .monaco-list-row').first().textContent())?.includes(name));
  await page.keyboard.press('Enter');
}

// ── quick inputs (input boxes and picks a command opens) ─────────────────────────────────────────────

export const quickInput = (page: Page) => page.locator('.quick-input-widget');

/** Waits for the quick input titled `title` (e.g. "Attach to Trainer (1/2)"). */
export async function waitQuickInput(page: Page, title: string): Promise<Locator> {
  await waitFor(`the quick input "${title}"`, async () => (await quickInput(page).isVisible()) && ((await quickInput(page).locator('.quick-input-title').textContent()) ?? '').includes(title), 20_000);
  return quickInput(page);
}

export function quickInputBox(page: Page): Locator {
  return quickInput(page).locator('.quick-input-box input');
}

/** The rows a quick pick shows now, as a screen reader reads them (label and description, no separator). */
export async function quickPickRows(page: Page): Promise<string[]> {
  const rows = quickInput(page).locator('.quick-input-list .monaco-list-row:visible');
  return Promise.all((await rows.all()).map(async (r) => (await r.getAttribute('aria-label')) ?? (await r.textContent()) ?? ''));
}

/** Types into the open input box (replacing what is there) and accepts it. */
export async function answerInputBox(page: Page, value: string): Promise<void> {
  const box = quickInputBox(page);
  await box.fill(value);
  await page.keyboard.press('Enter');
}

// ── the status bar ──────────────────────────────────────────────────────────────────────────────────

const statusItem = (page: Page) => page.locator('.statusbar-item', { hasText: 'Muonscope:' });

export async function statusText(page: Page): Promise<string> {
  const items = await page.locator('.statusbar-item').allTextContents();
  return items.find((t) => t.includes('Muonscope:')) ?? '';
}

export async function waitStatus(page: Page, re: RegExp, what: string, ms = 90_000): Promise<string> {
  return waitFor(`the status bar ${what} (${re})`, async () => {
    const text = await statusText(page);
    return re.test(text) ? text : undefined;
  }, ms, async () => `status bar: "${await statusText(page)}"`);
}

/** The status bar item's hover: it names the run the status bar follows (label and run folder). */
export async function statusTooltip(page: Page): Promise<string> {
  const hover = page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'Click to open the dashboard' }).first();
  for (let attempt = 1; ; attempt++) {
    await page.mouse.move(0, 0);
    await statusItem(page).hover();
    try {
      await hover.waitFor({ state: 'visible', timeout: 5000 });
      const text = (await hover.textContent()) ?? '';
      await page.mouse.move(0, 0);
      return text;
    } catch (e) {
      if (attempt === 3) throw new Error(`no hover on the status bar item "${await statusText(page)}" after 3 tries: ${(e as Error).message}`);
    }
  }
}

// ── notifications ───────────────────────────────────────────────────────────────────────────────────

export const toasts = (page: Page) => page.locator('.notifications-toasts .notification-toast');

const toastTexts = async (page: Page) => `notifications: ${(await toasts(page).allTextContents()).join(' ‖ ') || 'none'}`;

export async function waitToast(page: Page, what: string, re: RegExp, ms = 30_000): Promise<Locator> {
  await waitFor(`a notification ${what} (${re})`, async () => (await toasts(page).allTextContents()).some((t) => re.test(t)), ms, () => toastTexts(page));
  return toasts(page).filter({ hasText: re }).first();
}

export async function clearNotifications(page: Page): Promise<void> {
  await runCommand(page, 'Notifications: Clear All Notifications');
  await waitFor('no notifications', async () => (await toasts(page).count()) === 0, 10_000).catch(() => undefined);
}

// ── the runs tree ───────────────────────────────────────────────────────────────────────────────────

export async function focusRunsView(page: Page): Promise<void> {
  await runCommand(page, 'Muonscope: Focus on Muonscope Runs View');
  await page.locator('.part.sidebar .pane-body').first().waitFor({ timeout: 10_000 });
}

/** The runs tree's rows (in the side bar, where the Muonscope view is focused). */
export const treeRows = (page: Page) => page.locator('.part.sidebar .monaco-list-row');

export const treeRow = (page: Page, label: string) => treeRows(page).filter({ hasText: label });

export async function treeRowTexts(page: Page): Promise<string[]> {
  return treeRows(page).allTextContents();
}

const rowTexts = async (page: Page) => `tree rows: ${(await treeRowTexts(page)).join(' ‖ ') || 'none'}`;

/** Waits until exactly one row names `label` and its text matches `re`; returns that text. */
export async function waitTreeRow(page: Page, label: string, re: RegExp, what: string, ms = 60_000): Promise<string> {
  return waitFor(`the tree row ${label} ${what} (${re})`, async () => {
    const texts = (await treeRowTexts(page)).filter((t) => t.includes(label));
    return texts.length === 1 && re.test(texts[0]) ? texts[0] : undefined;
  }, ms, () => rowTexts(page));
}

/** Clicks one of a tree row's inline buttons (shown on hover), by its title. */
export async function clickInlineAction(page: Page, label: string, action: string): Promise<void> {
  const row = treeRow(page, label).first();
  await row.hover();
  const button = row.locator(`.actions .action-label[aria-label="${action}"]`);
  await button.waitFor({ state: 'visible', timeout: 10_000 });
  await button.click();
}

/** The items of a tree row's context menu (right-click); the menu stays open. */
export async function openContextMenu(page: Page, label: string): Promise<string[]> {
  await treeRow(page, label).first().click({ button: 'right' });
  const items = page.locator('.monaco-menu .action-item .action-label');
  await waitFor(`the context menu of ${label}`, async () => (await items.count()) > 0, 10_000);
  return (await items.allTextContents()).map((t) => t.trim()).filter(Boolean);
}

/** Chooses a context menu item; a click that lands while the menu is still settling is followed by Enter. */
export async function clickContextMenuItem(page: Page, item: string): Promise<void> {
  const menu = page.locator('.monaco-menu');
  const entry = menu.locator('.action-item .action-label', { hasText: item }).first();
  await entry.click();
  const closed = await waitFor('the context menu to close', async () => (await menu.count()) === 0 || !(await menu.first().isVisible()), 3000).catch(() => false);
  if (closed) return;
  await entry.hover();
  await page.keyboard.press('Enter');
  await waitFor(`the context menu to close after choosing ${item}`, async () => (await menu.count()) === 0 || !(await menu.first().isVisible()), 5000);
}

// ── dashboards: their tabs, and the pages inside their webview frames ───────────────────────────────

export const editorTabs = (page: Page) => page.locator('.tabs-container .tab');

export async function tabTitles(page: Page): Promise<string[]> {
  return (await editorTabs(page).allTextContents()).map((t) => t.trim());
}

export async function clickTab(page: Page, title: string): Promise<void> {
  await editorTabs(page).filter({ hasText: title }).first().click();
}

export interface DashboardPage {
  frame: Frame;
  /** The page's heading: "Muonscope — <run>". */
  title: string;
  /** The status line: "<state> · step N of T · <connection>", or "Waiting for the trainer…". */
  status: string;
  /** The runs the page shows (their labels, the focused one first). */
  runs: string[];
  text: string;
}

async function readDashboard(frame: Frame): Promise<DashboardPage | undefined> {
  try {
    const read = await frame.evaluate(() => {
      const app = document.getElementById('app');
      if (!app || !app.closest('body')?.querySelector('script[nonce]')) return undefined;
      const probe = (globalThis as { __muonscope?: { store?: { descriptors?: { label: string }[] } } }).__muonscope;
      return {
        title: document.getElementById('run-title')?.textContent ?? '',
        status: document.getElementById('run-status')?.textContent ?? '',
        runs: (probe?.store?.descriptors ?? []).map((d) => d.label),
        text: app.textContent ?? '',
      };
    });
    return read ? { frame, ...read } : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the webview a frame belongs to is the one shown (hidden editors' webviews are kept but hidden). */
async function frameShown(frame: Frame): Promise<boolean> {
  let outer = frame;
  while (outer.parentFrame() && outer.parentFrame()!.parentFrame()) outer = outer.parentFrame()!;
  try {
    const element = await outer.frameElement();
    return await element.isVisible();
  } catch {
    return false;
  }
}

/** Every dashboard page loaded now, shown or not. */
export async function dashboardPages(page: Page): Promise<DashboardPage[]> {
  const pages = await Promise.all(page.frames().map(readDashboard));
  return pages.filter((p): p is DashboardPage => !!p);
}

/** The dashboard page on screen (the active dashboard editor's). */
export async function shownDashboard(page: Page): Promise<DashboardPage | undefined> {
  for (const d of await dashboardPages(page)) if (await frameShown(d.frame)) return d;
  return undefined;
}

export async function waitDashboard(page: Page, what: string, ok: (d: DashboardPage) => boolean, ms = 60_000): Promise<DashboardPage> {
  const describe = (d: DashboardPage | undefined) => (d ? `title "${d.title}", status "${d.status}", runs [${d.runs.join(', ')}]` : 'no dashboard shown');
  return waitFor(`the dashboard ${what}`, async () => {
    const d = await shownDashboard(page);
    return d && ok(d) ? d : undefined;
  }, ms, async () => describe(await shownDashboard(page)));
}
