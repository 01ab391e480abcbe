/**
 * End to end in a real VS Code: code-server in headless Chromium driven by playwright-core.
 *
 * Packages the .vsix, installs it into a fresh code-server, opens a workspace with a run config, and then,
 * as a user would: starts a run from the CodeLens, sees the status bar and the runs tree update, opens the
 * dashboard, pauses and resumes from the command palette, stops, reopens the stopped run from the tree,
 * starts another run, kills its trainer process and sees the crash reported. Screenshots of each stage go
 * to test/vscode/artifacts/. Tools are installed into ~/.cache/muonscope-e2e on first use (install.ts).
 *
 *   npm run test:vscode            (MUONSCOPE_E2E_SKIP_PACKAGE=1 reuses an existing muonscope.vsix)
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Frame, type Page } from 'playwright-core';
import { installExtension, startCodeServer, writeUserSettings, type CodeServer } from './code-server.js';
import { ensureE2eTools } from './install.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const artifacts = join(here, 'artifacts');
const CONFIG_NAME = 'e2e.muonscope.json';

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const log = (msg: string) => console.log(`[e2e ${elapsed()}] ${msg}`);
let shot = 0;

async function screenshot(page: Page, name: string): Promise<void> {
  const file = join(artifacts, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${file}`);
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false | null>, timeoutMs = 60_000): Promise<T> {
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${lastError ? ` (${String(lastError)})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function runCommand(page: Page, title: string): Promise<void> {
  await page.keyboard.press('Escape');
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await page.keyboard.type(title, { delay: 30 });
  // Let the list filter to the command, then take the first (best) match.
  await waitFor(`"${title}" in the palette`, async () => (await page.locator('.quick-input-list .monaco-list-row').first().textContent())?.includes(title.replace(/^.*?: /, '')));
  await page.keyboard.press('Enter');
}

async function openFile(page: Page, name: string): Promise<void> {
  await page.keyboard.press('F1');
  await page.locator('.quick-input-widget input').waitFor({ state: 'visible', timeout: 10_000 });
  await page.keyboard.press('Backspace'); // drop ">": the palette becomes Quick Open
  await page.keyboard.type(name, { delay: 30 });
  await waitFor(`${name} in Quick Open`, async () => (await page.locator('.quick-input-list .monaco-list-row').first().textContent())?.includes(name));
  await page.keyboard.press('Enter');
}

async function statusText(page: Page): Promise<string> {
  const items = await page.locator('.statusbar-item').allTextContents();
  return items.find((t) => t.includes('Muonscope:')) ?? '';
}

const waitStatus = (page: Page, re: RegExp, what: string, ms = 90_000) => waitFor(`status bar ${what}`, async () => (re.test(await statusText(page)) ? statusText(page) : undefined), ms);

/** The frame the dashboard runs in, once it exists. */
async function dashboardFrame(page: Page): Promise<Frame | undefined> {
  for (const frame of page.frames()) if ((await frameText(frame)) !== undefined) return frame;
  return undefined;
}

/** The dashboard page: the innermost webview frame whose document has the dashboard's root element. */
async function dashboardText(page: Page): Promise<string | undefined> {
  for (const frame of page.frames()) {
    const text = await frameText(frame);
    if (text !== undefined) return text;
  }
  return undefined;
}

async function frameText(frame: Frame): Promise<string | undefined> {
  try {
    return await frame.evaluate(() => {
      const app = document.getElementById('app');
      return app && app.closest('body')?.querySelector('script[nonce]') ? (app.textContent ?? '') : undefined;
    }) ?? undefined;
  } catch {
    return undefined;
  }
}

function writeWorkspace(dir: string): void {
  mkdirSync(join(dir, '.vscode'), { recursive: true });
  // Long enough to pause, resume and stop by hand; small enough to run fast on two cores.
  writeFileSync(
    join(dir, CONFIG_NAME),
    `// End-to-end test run
{
  "name": "e2e",
  "steps": 200000,
  "batchSize": 32,
  "model": { "type": "mlp", "hiddenDims": [32, 32] },
  "task": { "type": "teacherStudent", "inputDim": 16, "outputDim": 4, "teacherWidth": 32 },
  "diagnostics": { "every": 50 },
  "advisor": { "mode": "suggest", "probeEvery": 20, "cooldownSteps": 20 }
}
`,
  );
}

function runFolders(workspace: string): string[] {
  const runs = join(workspace, 'runs');
  return existsSync(runs) ? readdirSync(runs).map((n) => join(runs, n)).sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs) : [];
}

async function main(): Promise<void> {
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });
  const tools = ensureE2eTools();
  log(`tools ready: ${tools.node24}`);

  const vsix = join(root, 'muonscope.vsix');
  if (process.env.MUONSCOPE_E2E_SKIP_PACKAGE !== '1' || !existsSync(vsix)) {
    execFileSync('npm', ['run', 'package'], { cwd: root, stdio: 'inherit' });
  }
  log(`packaged ${vsix} (${(statSync(vsix).size / 1e6).toFixed(1)} MB)`);

  const scratch = mkdtempSync(join(tmpdir(), 'muonscope-e2e-'));
  const userData = join(scratch, 'user-data');
  const extensions = join(scratch, 'extensions');
  const workspace = join(scratch, 'workspace');
  mkdirSync(workspace, { recursive: true });
  writeWorkspace(workspace);
  writeUserSettings(userData);
  installExtension(tools, userData, extensions, vsix);
  log('extension installed');

  const serverLog = join(artifacts, 'code-server.log');
  let server: CodeServer | undefined;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.on('console', (m) => m.type() === 'error' && appendFileSync(join(artifacts, 'browser-console.log'), `${m.text()}\n`));
  try {
    server = await startCodeServer(tools, userData, extensions, workspace, (l) => appendFileSync(serverLog, l));
    await page.goto(`${server.url}/?folder=${encodeURIComponent(workspace)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    await page.waitForTimeout(4000);
    log('workbench loaded');

    // 1. Open the run config; the CodeLens offers "Start run".
    await openFile(page, CONFIG_NAME);
    const startLens = page.locator('.codelens-decoration a', { hasText: 'Start run' });
    await startLens.waitFor({ timeout: 60_000 });
    await screenshot(page, 'config-with-codelens');
    await startLens.click();
    log('clicked the Start run CodeLens');

    // 2. The status bar follows the run.
    const running = await waitStatus(page, /Muonscope: running .*step [1-9]\d*/, 'showing the running run');
    log(`status bar: ${running}`);
    await waitFor('the Pause CodeLens', async () => (await page.locator('.codelens-decoration a', { hasText: 'Pause' }).count()) > 0);

    // 3. The runs tree lists it, live.
    await runCommand(page, 'Muonscope: Focus on Muonscope Runs View');
    const treeRow = page.locator('.monaco-list-row', { hasText: 'e2e-' });
    await waitFor('the run in the tree, running', async () => /running · step [1-9]/.test((await treeRow.first().textContent()) ?? ''));
    const firstRowText = (await treeRow.first().textContent()) ?? '';
    log(`tree: ${firstRowText}`);
    await screenshot(page, 'running-tree-and-status');

    // 4. The dashboard.
    await runCommand(page, 'Muonscope: Open Dashboard');
    const dash = await waitFor('the dashboard showing the live run', async () => {
      const text = await dashboardText(page);
      return text && /running · live/.test(text) ? text : undefined;
    }, 60_000);
    log(`dashboard: ${/State\s*[^\n]*?live/.exec(dash)?.[0] ?? dash.slice(0, 120)}`);
    await page.waitForTimeout(2000);
    await screenshot(page, 'dashboard-live');

    // 5. Pause and resume from the palette.
    await runCommand(page, 'Muonscope: Pause');
    const paused = await waitStatus(page, /Muonscope: paused/, 'paused');
    log(`paused: ${paused}`);
    await screenshot(page, 'paused');
    await runCommand(page, 'Muonscope: Resume');
    await waitStatus(page, /Muonscope: running/, 'running again');
    log('resumed');

    // 5b. Apply an advisor suggestion from the dashboard's Suggestions tab (the relay carries it to the trainer).
    const frame = await waitFor('the dashboard frame', () => dashboardFrame(page), 30_000);
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
    await screenshot(page, 'suggestion-applied');

    // 6. Stop.
    await runCommand(page, 'Muonscope: Stop');
    const stopped = await waitStatus(page, /Muonscope: stopped/, 'stopped');
    log(`stopped: ${stopped}`);
    const [firstRun] = runFolders(workspace);
    await waitFor('the trainer to leave its run folder', async () => !existsSync(join(firstRun, 'trainer.json')), 30_000);
    const log1 = readFileSync(join(firstRun, 'log.ndjson'), 'utf8');
    for (const want of ['"state":"paused"', '"state":"running"', '"state":"stopped"', '"kind":"suggestion_outcome"', '"outcome":"applied"']) {
      if (!log1.includes(want)) throw new Error(`run log lacks ${want}`);
    }
    await screenshot(page, 'stopped');

    // 7. Reopen the stopped run from the tree, with no trainer running.
    await runCommand(page, 'View: Close All Editors');
    await waitFor('no dashboard', async () => (await dashboardText(page)) === undefined, 15_000);
    await runCommand(page, 'Muonscope: Focus on Muonscope Runs View');
    await waitFor('the stopped run in the tree', async () => /stopped/.test((await treeRow.first().textContent()) ?? ''));
    await treeRow.first().click();
    const reopened = await waitFor('the reopened dashboard showing the stopped run', async () => {
      const text = await dashboardText(page);
      return text && /stopped/.test(text) && /ended/.test(text) ? text : undefined;
    }, 60_000);
    log(`reopened dashboard: ${/State\s*[^\n]*?ended/.exec(reopened)?.[0] ?? reopened.slice(0, 120)}`);
    await page.waitForTimeout(2000);
    await screenshot(page, 'reopened-stopped-run');

    // 8. A crash: start again, kill the trainer, see it reported.
    await runCommand(page, 'View: Close All Editors');
    await openFile(page, CONFIG_NAME);
    await page.locator('.codelens-decoration a', { hasText: 'Start run' }).click();
    await waitStatus(page, /Muonscope: running .*step [1-9]/, 'the second run running');
    const second = await waitFor('the second run folder', async () => runFolders(workspace).find((d) => d !== firstRun && existsSync(join(d, 'trainer.json'))));
    const { pid } = JSON.parse(readFileSync(join(second, 'trainer.json'), 'utf8')) as { pid: number };
    process.kill(pid, 'SIGKILL');
    log(`killed trainer pid ${pid}`);
    await waitStatus(page, /Muonscope: crashed/, 'crashed', 30_000);
    const toast = await waitFor('the crash notification', async () => {
      const texts = await page.locator('.notification-toast').allTextContents();
      return texts.find((t) => /crashed/.test(t) && /SIGKILL/.test(t));
    }, 30_000);
    log(`notification: ${toast.slice(0, 160)}`);
    await screenshot(page, 'crash-reported');
    log('PASS');
  } catch (e) {
    await screenshot(page, 'failure').catch(() => {});
    throw e;
  } finally {
    await browser.close();
    await server?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().then(
  () => {
    console.log(`vscode e2e passed in ${elapsed()}`);
    process.exit(0);
  },
  (e) => {
    console.error(`vscode e2e FAILED after ${elapsed()}:`, e);
    process.exit(1);
  },
);
