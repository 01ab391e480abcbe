/**
 * End to end in a real VS Code: code-server in headless Chromium driven by playwright-core.
 *
 * Packages the .vsix, installs it into a fresh code-server, opens a workspace with run configs, and then
 * runs the scenarios in scenarios/ in order, in one code-server session (each says what it covers): the
 * everyday path, a bad config, attach failures, attached runs that stop or finish, one row per run,
 * Compare from the tree, settings at a run's start, and a window reload. A scenario that fails is
 * reported and the next one runs; the suite fails if any did. Screenshots of each stage go to
 * test/vscode/artifacts/. Tools are installed into ~/.cache/muonscope-e2e on first use (install.ts).
 *
 *   npm run test:vscode            (MUONSCOPE_E2E_SKIP_PACKAGE=1 reuses an existing muonscope.vsix)
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { installExtension, startCodeServer, writeUserSettings, type CodeServer } from './code-server.js';
import { HandTrainers, killTrainersUnder } from './hand-trainer.js';
import { ensureE2eTools } from './install.js';
import { attachFinish, attachStop } from './scenarios/attach-end.js';
import { attachFailures } from './scenarios/attach-failures.js';
import { badConfig } from './scenarios/bad-config.js';
import { compareFromTree } from './scenarios/compare-from-tree.js';
import { CONFIGS, runFolders, type E2e, type Scenario } from './scenarios/context.js';
import { duplicateRow } from './scenarios/duplicate-row.js';
import { everyday } from './scenarios/everyday.js';
import { DIAGNOSTICS_EVERY_SETTING, settingsAtStart } from './scenarios/settings-at-start.js';
import { pythonRun } from './scenarios/python-run.js';
import { windowReload } from './scenarios/window-reload.js';
import { clearNotifications, runCommand } from './workbench.js';

// pythonRun last: it leaves a run folder behind.
const ALL: Scenario[] = [everyday, badConfig, attachFailures, attachStop, attachFinish, duplicateRow, compareFromTree, settingsAtStart, windowReload, pythonRun];
/** MUONSCOPE_E2E_SCENARIOS="everyday,duplicate row" runs only those; one that needs an earlier one's runs says so. */
const only = process.env.MUONSCOPE_E2E_SCENARIOS?.split(',').map((n) => n.trim());
const SCENARIOS = only ? ALL.filter((s) => only.includes(s.name)) : ALL;

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const artifacts = join(here, 'artifacts');

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const log = (msg: string) => console.log(`[e2e ${elapsed()}] ${msg}`);
let shot = 0;

async function screenshot(page: Page, name: string): Promise<void> {
  const file = join(artifacts, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${file}`);
}

const MODEL = `"batchSize": 32,
  "model": { "type": "mlp", "hiddenDims": [32, 32] },
  "task": { "type": "teacherStudent", "inputDim": 16, "outputDim": 4, "teacherWidth": 32 },`;

function writeWorkspace(dir: string): void {
  mkdirSync(join(dir, '.vscode'), { recursive: true });
  // Long enough to pause, resume and stop by hand; small enough to run fast on two cores.
  writeFileSync(
    join(dir, CONFIGS.e2e),
    `// End-to-end test run
{
  "name": "e2e",
  "steps": 200000,
  ${MODEL}
  "diagnostics": { "every": 50 },
  "advisor": { "mode": "suggest", "probeEvery": 20, "cooldownSteps": 20 }
}
`,
  );
  writeFileSync(join(dir, CONFIGS.plain), `// No diagnostics cadence: the muonscope.diagnosticsEvery setting applies\n{\n  "name": "plain",\n  "steps": 200000,\n  ${MODEL}\n  "advisor": { "mode": "off" }\n}\n`);
  writeFileSync(join(dir, CONFIGS.bad), `// Two problems\n{\n  "name": "bad",\n  "steps": 0,\n  "batchSize": "many"\n}\n`);
}

/** Back to a plain workbench between scenarios: no open input, notification or editor. */
async function tidy(page: Page): Promise<void> {
  for (let i = 0; i < 3; i++) await page.keyboard.press('Escape');
  await clearNotifications(page);
  await runCommand(page, 'View: Close All Editors');
}

interface Outcome {
  name: string;
  covers: string;
  seconds: number;
  error?: string;
}

async function main(): Promise<Outcome[]> {
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
  const outside = join(scratch, 'terminal');
  mkdirSync(workspace, { recursive: true });
  mkdirSync(outside, { recursive: true });
  writeWorkspace(workspace);
  writeUserSettings(userData, { 'muonscope.diagnosticsEvery': DIAGNOSTICS_EVERY_SETTING });
  installExtension(tools, userData, extensions, vsix);
  log('extension installed');

  const serverLog = join(artifacts, 'code-server.log');
  const trainers = new HandTrainers(join(root, 'dist', 'trainer', 'cli.js'), join(artifacts, 'hand-trainers.log'));
  let server: CodeServer | undefined;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.on('console', (m) => m.type() === 'error' && appendFileSync(join(artifacts, 'browser-console.log'), `${m.text()}\n`));
  const outcomes: Outcome[] = [];
  try {
    server = await startCodeServer(tools, userData, extensions, workspace, (l) => appendFileSync(serverLog, l));
    await page.goto(`${server.url}/?folder=${encodeURIComponent(workspace)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    await page.waitForTimeout(4000);
    log('workbench loaded');

    const e: E2e = { page, workspace, outside, trainers, log, screenshot: (name) => screenshot(page, name), runs: {} };
    for (const s of SCENARIOS) {
      const started = Date.now();
      log(`── scenario: ${s.name} — ${s.covers}`);
      let error: string | undefined;
      try {
        await s.run(e);
      } catch (err) {
        error = err instanceof Error ? (err.stack ?? err.message) : String(err);
        log(`FAIL ${s.name}: ${error}`);
        await screenshot(page, `FAIL-${s.name.replace(/\W+/g, '-')}`).catch(() => {});
      }
      const seconds = (Date.now() - started) / 1000;
      outcomes.push({ name: s.name, covers: s.covers, seconds, error });
      if (!error) log(`PASS ${s.name} (${seconds.toFixed(1)} s)`);
      await tidy(page).catch((err) => log(`could not tidy up after ${s.name}: ${String(err)}`));
    }
  } finally {
    trainers.killAll();
    const killed = killTrainersUnder(runFolders(workspace));
    if (killed.length) log(`killed trainers left running: ${killed.join(', ')}`);
    await browser.close();
    await server?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  return outcomes;
}

main().then(
  (outcomes) => {
    console.log('\nscenario                           result   seconds');
    for (const o of outcomes) console.log(`${o.name.padEnd(34)} ${(o.error ? 'FAIL' : 'pass').padEnd(8)} ${o.seconds.toFixed(1).padStart(7)}`);
    const failed = outcomes.filter((o) => o.error);
    for (const o of failed) console.log(`\n${o.name} (${o.covers}):\n  ${o.error!.split('\n').slice(0, 3).join('\n  ')}`);
    console.log(`\nvscode e2e ${failed.length ? `FAILED (${failed.length} of ${outcomes.length} scenarios)` : 'passed'} in ${elapsed()}`);
    process.exit(failed.length ? 1 : 0);
  },
  (e) => {
    console.error(`vscode e2e FAILED after ${elapsed()}:`, e);
    process.exit(1);
  },
);
