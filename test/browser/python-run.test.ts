// A real PyTorch run in the dashboard: `muonscope run -- python fixtures/conv_mlp.py` (a conv kernel and a
// hidden Linear under DynMuon, watched by muonscope.watch) hosted by the built CLI, the page opened with
// the host's token as `npm start`'s users open it. The page must show that run: live, DynMuon's label,
// and in Layers exactly the model's matrices under torch's names, the conv kernel as its (out, in·kh·kw)
// matrix. The run is stopped with SIGINT to the host (forwarded to Python), and nothing may outlive it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { optimizerLabel } from '../../common/optimizer-label.js';
import { readRunLog } from '../../common/run-folder/log.js';
import { SLOW_TEST, waitUntil, within } from '../helpers/wait.js';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'trainer', 'cli.js');
const PYTHON = join(ROOT, '.venv', 'bin', 'python');
const SCRIPT = join(__dirname, 'fixtures', 'conv_mlp.py');
/** The fixture's matrices as torch names them, with the shapes Muon sees: Conv2d(2, 6, 3) is 6 × 2·3·3. */
const MATRICES = [
  { name: 'conv.weight', shape: '6×18' },
  { name: 'hidden.weight', shape: '32×96' },
];

let dir: string;
let host: ChildProcess | undefined;
let hostExit: Promise<number | null>;
const hostLines: string[] = [];
let browser: Browser | undefined;
let listening: { url: string; token: string; runDir: string };

const hostOutput = (): string => hostLines.slice(-40).join('\n');

before(async () => {
  // Not a skip: CI makes the venv before the browser suite, so a missing one is a broken setup.
  assert.ok(existsSync(PYTHON), `no Python venv at ${PYTHON}: run \`bash test/python/venv.sh\` (torch CPU and the muonscope package) before this test`);
  assert.ok(existsSync(CLI), `no ${CLI}: run \`node esbuild.mjs\` first`);
  dir = mkdtempSync(join(tmpdir(), 'muonscope-python-page-'));
  // A channel or run folder inherited from a surrounding Muonscope run would send the script elsewhere.
  const env = { ...process.env };
  for (const k of ['MUONSCOPE_CHANNEL', 'MUONSCOPE_CHANNEL_TOKEN', 'MUONSCOPE_RUN_DIR', 'MUONSCOPE_CONFIG']) delete env[k];
  host = spawn(process.execPath, [CLI, 'run', '--out', join(dir, 'runs'), '--', PYTHON, SCRIPT], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  hostExit = new Promise((resolve) => host!.once('exit', (code) => resolve(code)));
  // Both streams read to the end: a full pipe would block the host (and the script's output it relays).
  createInterface({ input: host.stderr! }).on('line', (l) => hostLines.push(l));
  const lines = createInterface({ input: host.stdout! });
  const first = new Promise<string>((resolve) => lines.once('line', resolve));
  lines.on('line', (l) => hostLines.push(l));
  listening = JSON.parse(await within("the host's listening line", first));
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'] });
});

after(async () => {
  try {
    await browser?.close();
    await stopHost();
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
});

/** SIGINT to the host (forwarded to the script, which logs `stopped`); then nothing of the run may be left. */
async function stopHost(): Promise<void> {
  if (host && host.exitCode === null && host.signalCode === null) {
    // The python pid, to check it is gone too (the host starts it in its own process group).
    const connected = hostLines.map((l) => /^python process (\d+) connected/.exec(l)).find(Boolean);
    host.kill('SIGINT');
    let code: number | null;
    try {
      code = await within('the host to exit after SIGINT', hostExit, 60_000);
    } catch (e) {
      host.kill('SIGKILL');
      try {
        if (connected) process.kill(-Number(connected[1]), 'SIGKILL');
      } catch {
        // already gone
      }
      throw new Error(`${(e as Error).message}; its last output:\n${hostOutput()}`);
    }
    assert.equal(code, 0, `the host exits 0 on SIGINT; its last output:\n${hostOutput()}`);
    if (connected) {
      const pid = Number(connected[1]);
      const alive = (): boolean => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      await waitUntil(`python process ${pid} to be gone`, alive, { until: (a) => !a, timeoutMs: 10_000 });
    }
    const states = readRunLog(join(listening.runDir, 'log.ndjson')).records.filter((r) => r.kind === 'state');
    assert.equal(states.at(-1)?.state, 'stopped', 'the run ends as stopped, not crashed');
  }
}

test("the dashboard shows a live PyTorch run's matrix layers by their torch names, the conv kernel as a matrix", SLOW_TEST, async () => {
  const page = await browser!.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(`${listening.url.replace(/^ws/, 'http')}/#token=${listening.token}`);

  // Live: the header's status, "running · step N of T · live" (torch's import takes seconds on a loaded machine).
  try {
    await page.waitForFunction(() => /^running · step \d+ of 100000 · live$/.test(document.querySelector('#run-status')?.textContent ?? ''), undefined, { timeout: 90_000 });
  } catch (e) {
    throw new Error(`the page never showed the run live; status "${await page.locator('#run-status').textContent()}"; host output:\n${hostOutput()}`, { cause: e });
  }
  // The overview names the script's optimizer and run, as watch() reports them in run_started (the host adds
  // only its advisor settings): DynMuon in released mode, which no host default would say.
  const started = readRunLog(join(listening.runDir, 'log.ndjson')).records.find((r) => r.kind === 'run_started');
  assert.ok(started && started.kind === 'run_started', 'the run folder has its run_started record');
  assert.equal(optimizerLabel((started.config as { optimizer?: unknown }).optimizer), 'dynmuon (released)');
  await page.waitForFunction(() => document.querySelector('dd[data-field="Optimizer"]')?.textContent === 'dynmuon (released)', undefined, { timeout: 30_000 });
  assert.match(await page.locator('dd[data-field="Run"]').innerText(), /^browser-conv-mlp\b/);
  assert.match(await page.locator('dd[data-field="State"]').innerText(), /^running · live$/);
  // Streaming, not a snapshot: the page's step keeps moving with the script's.
  await page.waitForFunction(() => Number(/step (\d+) of/.exec(document.querySelector('#run-status')?.textContent ?? '')?.[1]) >= 10, undefined, { timeout: 60_000 });

  // Layers: one row per matrix, once its first diagnostics arrived.
  await page.click('#tab-layers');
  const rows = async () =>
    page.$$eval('#layers-table tbody tr', (trs) =>
      trs.map((tr) => ({ name: tr.getAttribute('data-layer'), shape: tr.children[1]?.textContent ?? '', p: tr.children[2]?.querySelector('.value')?.textContent ?? '' })),
    );
  const shown = await waitUntil('both matrix rows in the Layers table, with a value in their p column', rows, {
    until: (rs) => rs.length >= MATRICES.length && rs.every((r) => /^-?\d/.test(r.p)),
    timeoutMs: 60_000,
  });
  assert.deepEqual(
    shown.map(({ name, shape }) => ({ name, shape })).sort((a, b) => a.name!.localeCompare(b.name!)),
    MATRICES,
    'exactly the model\'s matrices (not head.weight, not the biases), by torch\'s names, the conv kernel as 6×18',
  );
  // The same names and shapes as the run_started record's matrix-routed params: what the page shows is this run's.
  const routed = started.params.filter((p) => p.route === 'matrix').map((p) => ({ name: p.name, shape: p.shape.join('×') }));
  assert.deepEqual(routed.sort((a, b) => a.name.localeCompare(b.name)), MATRICES);
  // DynMuon's p, per layer, from the script's optimizer (an AdamW layer would show "—"): the default
  // logistic schedule's, within [-0.25, 0.25].
  for (const r of shown) assert.ok(Math.abs(Number(r.p)) <= 0.25, `p of ${r.name} is DynMuon's: "${r.p}"`);
  assert.ok(await page.getByRole('button', { name: 'Open layer conv.weight' }).isVisible(), 'the conv kernel row can be opened');

  assert.deepEqual(errors, [], 'no page errors (CSP, scripts, resources)');
  await page.screenshot({ path: join(__dirname, 'artifacts', 'python-run.png') });
  await page.close();
});
