// The dashboard in a plain browser, served by a real trainer (what `npm start` prints): the same bundle,
// whose host adapter connects back to the trainer's WebSocket with the token from the URL fragment,
// shows the live run and controls it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { readRunLog } from '../../common/run-folder/log.js';
import { SLOW_TEST, within } from '../helpers/wait.js';

const CLI = join(__dirname, '..', '..', 'dist', 'trainer', 'cli.js');
let trainer: ChildProcess;
let browser: Browser;
let listening: { url: string; token: string; runDir: string };

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'muonscope-page-'));
  const config = join(dir, 'page.muonscope.json');
  writeFileSync(config, JSON.stringify({ name: 'page', steps: 1_000_000, batchSize: 32, model: { type: 'mlp', hiddenDims: [32] }, task: { type: 'teacherStudent', inputDim: 16, outputDim: 4, teacherWidth: 16 }, compute: { backend: 'cpu' } }));
  trainer = spawn(process.execPath, [CLI, 'train', config, '--out', join(dir, 'runs')], { stdio: ['ignore', 'pipe', 'inherit'] });
  listening = JSON.parse(await within("the trainer's listening line", new Promise<string>((resolve) => createInterface({ input: trainer.stdout! }).once('line', resolve))));
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
});

after(async () => {
  await browser?.close();
  trainer?.kill('SIGINT');
});

test('the trainer serves the dashboard, which streams the run over its own socket and pauses it', SLOW_TEST, async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${listening.url.replace(/^ws/, 'http')}/#token=${listening.token}`);
  await page.waitForFunction(() => /running · live/.test(document.body.innerText), undefined, { timeout: 30000 });
  await page.click('#control-pause');
  await page.waitForFunction(() => /Pause: done at step \d+/.test(document.querySelector('#reply-pause')?.textContent ?? ''), undefined, { timeout: 30000 });
  const records = readRunLog(join(listening.runDir, 'log.ndjson')).records;
  const pause = records.find((r) => r.kind === 'control' && r.command === 'pause');
  assert.ok(pause, 'the pause from the page is in the audit trail');
  assert.deepEqual(errors, [], 'no page errors (CSP, scripts, resources)');
  await page.screenshot({ path: join(__dirname, 'artifacts', 'trainer-page.png') });
});

test('without the token the page gets no run data: its socket is refused with 401', SLOW_TEST, async () => {
  const page = await browser.newPage();
  // The page's socket error: Chromium's words for a 401 answer to the handshake.
  const refusal = new Promise<string>((resolve) => page.on('websocket', (ws) => ws.on('socketerror', resolve)));
  await page.goto(`${listening.url.replace(/^ws/, 'http')}/`);
  assert.match(await within("the page's WebSocket refusal", refusal), /HTTP Authentication failed/);
  assert.doesNotMatch(await page.locator('body').innerText(), /running · live/, 'no live data once the socket was refused');
  await page.close();
});
