// The dashboard in headless Chromium against a recorded stream (test/fixtures/dashboard), served with its
// real HTML shell and CSP, talking to a fake extension host: every view renders real data, every control
// sends the right command and shows the reply, schedule edits become markers, a reload replays history
// whole, and axe finds no serious accessibility violations. Screenshots go to test/browser/artifacts/.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import type { LogRecord } from '../../common/protocol.js';
import { synthPModel, synthRace } from '../fixtures/dashboard/synth.js';
import { SLOW_TEST } from '../helpers/wait.js';
import { FakeHost, loadStream, type RunFixture } from './host.js';
import { assertAccessible, dashboardPages, showView } from './page.js';

const artifacts = join(import.meta.dirname, 'artifacts');
mkdirSync(artifacts, { recursive: true });

/** Run A is live: the recorded stream up to step 150 of 200 (after the fixture's edit at 100). Run B finished. */
const LIVE_STEPS = 150;
function fixtures(): RunFixture[] {
  const a = loadStream('stream.ndjson');
  const end = a.findIndex((r) => r.kind === 'step' && r.step === LIVE_STEPS);
  const b = loadStream('stream-b.ndjson');
  const id = (rs: LogRecord[]): string => (rs[0] as Extract<LogRecord, { kind: 'run_started' }>).runId;
  return [
    { runId: id(a), label: 'dynmuon-live', records: a.slice(0, end), live: true },
    { runId: id(b), label: 'muon-baseline', records: b, live: false },
  ];
}

interface ChartInfo {
  labels: string[];
  columns: number[];
  markers: number[];
  summary: string;
  finite: number[];
}

function chart(page: Page, id: string): Promise<ChartInfo> {
  return page.evaluate((id) => {
    const c = (window as unknown as { __muonscope: { charts: Record<string, { alignedData: ArrayLike<number | null>[]; markers: number[]; seriesLabels: string[]; summary: string }> } }).__muonscope.charts[id];
    return {
      labels: c.seriesLabels,
      columns: c.alignedData.map((a) => a.length),
      markers: [...c.markers],
      summary: c.summary,
      finite: c.alignedData.map((a) => Array.from(a).filter((v) => v !== null && Number.isFinite(v)).length),
    };
  }, id);
}

function store<T>(page: Page, fn: string): Promise<T> {
  return page.evaluate((fn) => new Function('s', `return ${fn}`)((window as unknown as { __muonscope: { store: unknown } }).__muonscope.store) as T, fn);
}

describe('dashboard in headless Chromium', () => {
  const pages = dashboardPages();

  /** Each test gets its own page on fresh fixtures, with the live run's whole history shown: no test sees another's commands or clicks. */
  async function openDashboard(): Promise<{ host: FakeHost; page: Page; runs: RunFixture[] }> {
    const runs = fixtures();
    const host = await pages.open(runs);
    await host.page.waitForFunction((n) => (window as unknown as { __muonscope: { store: { focused: { lastSeq: number } | null } } }).__muonscope.store.focused?.lastSeq === n, runs[0].records.length);
    return { host, page: host.page, runs };
  }

  test('Overview: loss with validation and floor, lr, p planned vs actual, steps/s, alerts, markers on every chart', SLOW_TEST, async () => {
    const { page } = await openDashboard();
    await showView(page, 'overview');
    const text = await page.locator('#view-overview').innerText();
    assert.match(text, /wasm/, 'backend shown');
    assert.match(text, /teacherStudent/, 'task shown');
    assert.match(text, /label-noise variance/, 'loss floor shown with its label');
    assert.match(text, /SPIKE/, 'alert listed');
    const loss = await chart(page, 'loss');
    assert.deepEqual(loss.labels, ['train', 'train (smoothed)', 'validation'], 'loss series');
    assert.ok(loss.finite[1] === LIVE_STEPS && loss.finite[3] === 7, `train loss has every step and validation its 7 evals: ${loss.finite}`);
    for (const id of ['loss', 'lr', 'p', 'speed']) {
      const c = await chart(page, id);
      assert.ok(c.markers.includes(100), `${id} carries the fixture's schedule edit marker: ${c.markers}`);
      assert.ok(c.finite[1] > 0, `${id} has data`);
      assert.match(c.summary, /control change/, `${id} summary mentions markers`);
    }
    const p = await chart(page, 'p');
    assert.ok(p.finite[1] > 0 && p.finite[2] === LIVE_STEPS, `p planned and actual: ${p.finite}`);
    await page.screenshot({ path: join(artifacts, 'overview.png'), fullPage: true });
  });

  test('Layers: a sortable table of matrix layers with sparklines; a name opens the detail', SLOW_TEST, async () => {
    const { page } = await openDashboard();
    await showView(page, 'layers');
    const rows = page.locator('#layers-table tbody tr');
    assert.equal(await rows.count(), 2, 'two matrix layers');
    const names = async (): Promise<string[]> => page.locator('#layers-table tbody th').allInnerTexts();
    assert.deepEqual(await names(), ['mlp.layer0.weight', 'mlp.layer1.weight'], 'sorted by name');
    await page.click('button.sort[data-key="effectiveRank"]');
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(r)));
    assert.equal(await page.locator('th:has(button[data-key="effectiveRank"])').getAttribute('aria-sort'), 'descending', 'aria-sort follows');
    const ranks = await store<number[]>(page, `[...s.focused.layers.values()].map(l => l.series.effectiveRank.last)`);
    const expected = ranks[0] >= ranks[1] ? ['mlp.layer0.weight', 'mlp.layer1.weight'] : ['mlp.layer1.weight', 'mlp.layer0.weight'];
    assert.deepEqual(await names(), expected, 'rows ordered by effective rank, descending');
    await page.waitForFunction(() => document.querySelectorAll('#layers-table .spark canvas').length >= 14);
    assert.match(await rows.first().innerText(), /64×64/, 'shape shown');
    await page.screenshot({ path: join(artifacts, 'layers.png'), fullPage: true });
    await page.click('button[aria-label="Open layer mlp.layer1.weight"]');
    await page.waitForFunction(() => (window as unknown as { __muonscope: { view: string } }).__muonscope.view === 'layer');
  });

  test('Layer detail: spectra at a scrubbed step, heatmap over time, shaping curve, directions', SLOW_TEST, async () => {
    const { page, runs } = await openDashboard();
    await showView(page, 'layers');
    await page.click('button[aria-label="Open layer mlp.layer1.weight"]');
    await showView(page, 'layer');
    const spectraSteps = runs[0].records.filter((r) => r.kind === 'spectra' && r.layer === 'mlp.layer1.weight').map((r) => r.step);
    const spectrum = await chart(page, 'spectrum');
    assert.deepEqual(spectrum.finite, [64, 64, 64, 64, 64], `64 singular values of G, M, O, W: ${spectrum.finite}`);
    assert.ok(spectrum.summary.includes(`mlp.layer1.weight at step ${spectraSteps.at(-1)}`), `latest spectrum of the chosen layer: ${spectrum.summary}`);
    const heat = await chart(page, 'heatmap');
    assert.equal(heat.columns[0], spectraSteps.length, 'one heatmap column per recorded spectrum');
    await page.locator('#scrubber').fill('3');
    await page.waitForFunction((step) => document.querySelector('#scrub-step')?.textContent === `step ${step}`, spectraSteps[3]);
    assert.ok((await chart(page, 'spectrum')).summary.includes(`at step ${spectraSteps[3]}`), 'scrubbing picks the spectrum at that step');
    const shaping = await chart(page, 'shaping');
    assert.ok(shaping.finite[1] === 64 && shaping.finite[0] === 64, `shaping curve over the momentum spectrum: ${shaping.finite}`);
    assert.equal(await page.locator('#directions-table tbody tr').count(), 8, 'top and bottom 4 directions');
    await page.screenshot({ path: join(artifacts, 'layer-detail.png'), fullPage: true });
  });

  test('Curvature & noise: η/η* before the step, κ_d vs the edge along the update, overshoot, Lanczos eigenvalues, noise scale vs batch, cost', SLOW_TEST, async () => {
    const { host, page, runs } = await openDashboard();
    await showView(page, 'curvature');
    // What the recorded run measured (the whole model's top eigenvalue once per round of the layers).
    const model = runs[0].records.filter((r): r is Extract<LogRecord, { kind: 'curvature' }> => r.kind === 'curvature' && r.layer === null);
    const rounds = runs[0].records.filter((r) => r.kind === 'diagnostics_cost').length;
    const noise = runs[0].records.filter((r) => r.kind === 'noise' && r.layer === null).length;
    const expected: Record<string, number[]> = {
      // Logs from before the Muon-units measurements carry none of η*_before, the edge, the overshoot or Lanczos.
      'eta-ratio': [model.filter((r) => r.etaStarBefore != null).length],
      'kappa-edge': [model.filter((r) => r.kappaUpdate !== undefined).length, model.filter((r) => r.edgeAlongUpdate !== undefined).length],
      overshoot: [model.filter((r) => r.overshootFraction !== undefined).length],
      eigenvalues: [
        ...[0, 1, 2].map((i) => model.filter((r) => r.eigenvalues?.top[i]).length),
        model.filter((r) => r.eigenvalues).length,
        model.filter((r) => r.eigenvalues && [...r.eigenvalues.top, r.eigenvalues.bottom].some((e) => !e.converged)).length,
        model.filter((r) => r.topEigenvalue !== undefined).length,
      ],
      'noise-scale': [noise, noise],
      overhead: [rounds],
    };
    for (const [id, counts] of Object.entries(expected)) {
      const c = await chart(page, id);
      assert.deepEqual(c.finite.slice(1, 1 + counts.length), counts, `${id} has one point per recorded measurement: ${c.finite}`);
    }
    assert.match(await page.locator('#diagnostics-costs').innerText(), /curvature \d/, 'costs listed');
    assert.equal(await page.locator('#diagnostics-every').evaluate((e) => (e as HTMLInputElement).value), '10', 'cadence seeded from the run');
    await page.locator('#diagnostics-every').locator('input').fill('0');
    await page.click('#diagnostics-apply');
    assert.match(await page.locator('#diagnostics-reply').innerText(), /whole number ≥ 1; got "0"/, 'a bad cadence is refused in place, nothing sent');
    await page.locator('#diagnostics-every').locator('input').fill('25');
    await page.click('#diagnostics-apply');
    await page.waitForFunction(() => /set cadence: done at step/.test(document.querySelector('#diagnostics-reply')?.textContent ?? ''));
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'set_diagnostics', every: 25, adaptive: false, budgetPct: 10 }, 'set_diagnostics as configured');
    await page.screenshot({ path: join(artifacts, 'curvature.png'), fullPage: true });
  });

  test('Controls: each sends its command and shows the reply; enabled states follow the run state', SLOW_TEST, async () => {
    const { host, page } = await openDashboard();
    const click = async (id: string): Promise<number> => {
      const before = host.commands().length;
      const t0 = Date.now();
      await page.click(`#control-${id}`);
      await page.waitForFunction((id) => /done at step|refused/.test(document.querySelector(`#reply-${id}`)?.textContent ?? ''), id);
      assert.equal(host.commands().length, before + 1, `${id} sent one command`);
      return Date.now() - t0;
    };
    const disabled = (id: string): Promise<boolean> => page.locator(`#control-${id}`).evaluate((e) => (e as HTMLElement & { disabled: boolean }).disabled);
    assert.ok(!(await disabled('pause')) && (await disabled('resume')) && (await disabled('step')), 'running: pause enabled, resume and step disabled');
    const latency = await click('pause');
    assert.ok(latency < 1000, `click to visible ack in ${latency} ms`);
    console.log(`# click → visible ack: ${latency} ms`);
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'pause' }, 'pause command');
    assert.match(await page.locator('#reply-pause').innerText(), /Pause: done at step 150/, 'ack shown with its step');
    await page.waitForFunction(() => !(document.querySelector('#control-resume') as HTMLElement & { disabled: boolean }).disabled);
    assert.ok(await disabled('pause'), 'paused: pause disabled');
    await page.locator('#step-count input').fill('3');
    await click('step');
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'step', n: 3 }, 'step 3 command');
    await click('checkpoint');
    assert.match(await page.locator('#reply-checkpoint').innerText(), /ckpt-150/, 'checkpoint ack shows its file');
    host.script = (c) => (c.kind === 'resume' ? { error: 'cannot resume: the trainer is busy' } : null);
    await click('resume');
    assert.match(await page.locator('#reply-resume').innerText(), /refused: cannot resume: the trainer is busy/, 'error shown next to the control');
    host.script = null;
    await click('resume');
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'resume' }, 'resume command');
    await page.waitForFunction(() => !(document.querySelector('#control-pause') as HTMLElement & { disabled: boolean }).disabled);
    const ids = new Set(host.commands().map((c) => c.id));
    assert.equal(ids.size, host.commands().length, 'every command has a fresh id');
  });

  test('Schedule editor: preview, apply sends set_schedule, the control record becomes a marker; undo; lr; audit', SLOW_TEST, async () => {
    const { host, page } = await openDashboard();
    await showView(page, 'schedule');
    await page.locator('#schedule-type').evaluate((e) => {
      (e as HTMLElement & { value: string }).value = 'cosine';
      e.dispatchEvent(new Event('change'));
    });
    await page.locator('#param-from input').fill('0.2');
    await page.locator('#param-to input').fill('-0.3');
    await page.locator('#schedule-reason input').fill('test edit');
    await page.waitForFunction(() => /New cosine\(from=0\.2, to=-0\.3\)/.test((window as unknown as { __muonscope: { charts: Record<string, { summary: string }> } }).__muonscope.charts['schedule-preview'].summary));
    const preview = await chart(page, 'schedule-preview');
    assert.ok(preview.finite[2] > 100, `new curve previewed: ${preview.finite}`);
    await page.locator('#param-to input').fill('-3');
    await page.waitForFunction(() => /outside \[-1, 1\]/.test(document.querySelector('#schedule-error')?.textContent ?? ''));
    assert.ok(await page.locator('#schedule-apply').evaluate((e) => (e as HTMLElement & { disabled: boolean }).disabled), 'invalid schedule cannot be applied');
    await page.locator('#param-to input').fill('-0.3');
    await page.waitForFunction(() => !(document.querySelector('#schedule-apply') as HTMLElement & { disabled: boolean }).disabled);
    await page.click('#schedule-apply');
    await page.waitForFunction(() => /done at step 150/.test(document.querySelector('#schedule-reply')?.textContent ?? ''));
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'set_schedule', schedule: { type: 'cosine', from: 0.2, to: -0.3 }, reason: 'test edit' }, 'set_schedule command');
    await page.waitForFunction(() => document.querySelector('#audit-table tbody')?.textContent?.includes('cosine(from=0.2, to=-0.3)'));
    assert.match(await page.locator('#audit-table tbody tr').first().innerText(), /150\s+set_schedule \(schedule\)\s+linear\(from=-0\.1, to=0\.1\) → cosine\(from=0\.2, to=-0\.3\) from step 150\s+dashboard\s+test edit/, 'audit row');
    assert.ok((await chart(page, 'schedule-preview')).markers.includes(LIVE_STEPS), 'marker on the preview');
    await showView(page, 'overview');
    for (const id of ['loss', 'p', 'lr']) assert.ok((await chart(page, id)).markers.includes(LIVE_STEPS), `marker at step ${LIVE_STEPS} on ${id}`);
    await showView(page, 'schedule');
    await page.click('#schedule-undo');
    await page.waitForFunction(() => /undo: done/.test(document.querySelector('#schedule-reply')?.textContent ?? ''));
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'set_schedule', schedule: { type: 'linear', from: -0.1, to: 0.1 }, reason: 'undo of the edit at step 150' }, 'undo re-applies the previous spec');
    await page.locator('#lr-input input').fill('0.01');
    await page.click('#lr-apply');
    await page.waitForFunction(() => /set lr: done/.test(document.querySelector('#lr-reply')?.textContent ?? ''));
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'set_lr', lr: 0.01 }, 'set_lr command');
    await page.screenshot({ path: join(artifacts, 'schedule.png'), fullPage: true });
  });

  test('Suggestions: pending cards with evidence and their race; Apply and Dismiss send their commands and show the outcome; history; the mode model', SLOW_TEST, async () => {
    const { host, page, runs } = await openDashboard();
    await showView(page, 'suggestions');
    const suggestions = runs[0].records.filter((r): r is Extract<LogRecord, { kind: 'suggestion' }> => r.kind === 'suggestion');
    const resolved = new Set(runs[0].records.filter((r) => r.kind === 'suggestion_outcome').map((r) => (r as { id: string }).id));
    const pending = suggestions.filter((s) => !resolved.has(s.id));
    assert.ok(pending.length >= 1, `the recorded run has a pending suggestion: ${suggestions.map((s) => s.id)}`);
    const card = page.locator(`#suggestion-${pending[0].id}`);
    const text = await card.innerText();
    assert.ok(text.includes(pending[0].title), 'title shown');
    assert.match(text, new RegExp(`confidence ${Math.round(pending[0].confidence * 100)}%`), 'confidence shown');
    const change = pending[0].change;
    assert.match(text, change.kind === 'set_lr' ? /Change: learning rate → / : /Change: p schedule → /, 'the change, readable');
    assert.equal(await card.locator('table.evidence tbody tr').count(), pending[0].evidence.length, 'one row per piece of evidence');
    // The recorder raced the pending suggestion while paused: its result and the rule's tally are on the card.
    const races = runs[0].records.filter((r): r is Extract<LogRecord, { kind: 'race' }> => r.kind === 'race' && r.suggestionId === pending[0].id);
    assert.equal(races.length, 1, 'the recorded run raced its pending suggestion once');
    const won = races[0].winner === 'suggested' ? 1 : 0;
    assert.match(text, new RegExp(`races: suggested won ${won} of 1`), `the race tally beside the confidence: ${text}`);
    const models = runs[0].records.filter((r): r is Extract<LogRecord, { kind: 'p_model' }> => r.kind === 'p_model');
    assert.ok(models.length >= 1, 'the recorded run logged the mode model');
    assert.match(await page.locator('#p-model-caption').innerText(), new RegExp(`step ${models.at(-1)!.step}`), 'the latest mode-model record');
    assert.equal(await page.locator('#probe-table').isVisible(), false, 'no p-probe table for a run that logged none');
    assert.equal(await page.locator('#advisor-evidence, #evidence-table, img.evidence-plot').count(), 0, 'no benchmark evidence from another run beside this one');
    await page.screenshot({ path: join(artifacts, 'suggestions.png'), fullPage: true });

    // A refusal is shown on the card, which stays.
    host.script = (c) => (c.kind === 'dismiss_suggestion' ? { error: 'the run has finished' } : null);
    await page.click(`#dismiss-${pending[0].id}`);
    await page.waitForFunction((id) => /dismiss refused: the run has finished/.test(document.querySelector(`#suggestion-reply-${id}`)?.textContent ?? ''), pending[0].id);
    assert.equal(await page.locator(`#suggestion-${pending[0].id}`).count(), 1, 'a refused dismissal leaves the card');
    host.script = null;

    await page.locator('#suggestion-reason').locator('input').fill('looks right');
    await page.click(`#apply-${pending[0].id}`);
    await page.waitForFunction(() => /applied by dashboard/.test(document.querySelector('#suggestions-history')?.textContent ?? ''));
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'apply_suggestion', id: pending[0].id, reason: 'looks right' }, 'apply_suggestion with the reason');
    assert.equal(await page.locator(`#suggestion-${pending[0].id}`).count(), 0, 'an applied suggestion leaves the pending list');
    assert.match(await page.locator('#suggestions-history tbody').innerText(), /applied by dashboard at step \d+ \(looks right\)/, 'and shows in the history as applied');
    const applyStep = await store<number>(page, 's.focused.controls.at(-1).step');
    await showView(page, 'overview');
    assert.ok((await chart(page, 'loss')).markers.includes(applyStep), 'the applied change is a marker on the time charts');
  });

  test('Suggestions: the mode model\'s p as a chart with its band and marks, per-layer fits; calibration; Race only while paused, its result on the card', SLOW_TEST, async () => {
    const { host, page, runs } = await openDashboard();
    await showView(page, 'suggestions');
    const run = runs[0];
    const layers = [...new Map(run.records.flatMap((r) => (r.kind === 'layer_stats' ? r.layers.map((l) => [l.name, { name: l.name, rows: l.rows, cols: l.cols }] as const) : []))).values()];
    // The fixture stream predates the mode model: a record as the trainer would log it, at the live step.
    const [model] = (await host.append(run.runId, [synthPModel(layers, LIVE_STEPS, { currentP: 0.1, bestP: -0.25, horizonSteps: 25, scheduleP: { start: 0.1, end: 0.05 } })])) as Extract<LogRecord, { kind: 'p_model' }>[];
    await page.waitForFunction(() => /Mode model at step/.test(document.querySelector('#p-model-caption')?.textContent ?? ''));
    const c = await chart(page, 'p-model');
    assert.deepEqual(c.labels, ['expected loss', '10% bound', '90% bound', 'p in force', 'schedule over the horizon', 'recommended', 'cross-check best'], 'p-model series');
    // The grid, plus 0.1 and 0.05 (p in force and the schedule's end), which are off it.
    assert.deepEqual(c.finite, [model.curve.length + 2, model.curve.length, model.curve.length, model.curve.length, 1, 2, 1, 1], `curve and band on the grid, one point per mark, the schedule's two ends: ${c.finite}`);
    assert.deepEqual(c.markers, [0.1, -0.25, model.crossCheckBestP], 'vertical marks: p in force, recommendation, cross-check');
    assert.match(c.summary, /recommended p = -0\.25 \(confidence 72%\); p in force 0\.1/, `summary: ${c.summary}`);
    const caption = await page.locator('#p-model-caption').innerText();
    assert.match(caption, new RegExp(`step ${LIVE_STEPS}: recommends p = -0\\.25 with confidence 72% .* over the next 25 steps; .* ms, all probes so far [\\d.]+% of training time`), `caption: ${caption}`);
    assert.equal(await page.locator('#p-model-layers tbody tr').count(), layers.length, 'one row per measured layer');
    const row = await page.locator('#p-model-layers tbody tr').first().innerText();
    const fit = model.layers[0].curvatureVsSigma;
    assert.ok(row.includes(model.layers[0].layer) && row.includes(String(fit.slope)) && row.includes(String(fit.r2)), `first layer's fit shown: ${row}`);
    assert.match(await page.locator('#p-model-layers thead').innerText(), /GGᵀ ≈ αH predicts 2/, 'the slope says what it is compared with');
    const probes = run.records.filter((r) => r.kind === 'p_probe').length;
    assert.equal(await page.locator('#probe-table').isVisible(), probes > 0, `the old p-probe table is shown exactly when the log holds p-probes (${probes})`);

    const pending = run.records.filter((r): r is Extract<LogRecord, { kind: 'suggestion' }> => r.kind === 'suggestion').filter((s) => !run.records.some((o) => o.kind === 'suggestion_outcome' && o.id === s.id));
    const id = pending[0].id;
    // The recorded races of this rule, if the stream holds any: the tally starts from them.
    const earlier = run.records.filter((r): r is Extract<LogRecord, { kind: 'race' }> => r.kind === 'race' && r.rule === pending[0].rule);
    const won = earlier.filter((r) => r.winner === 'suggested').length;
    assert.match(await page.locator(`#calibration-${id}`).innerText(), earlier.length ? new RegExp(`^races: suggested won ${won} of ${earlier.length}`) : /^not raced yet/, 'the calibration before this race');
    const race = page.locator(`#race-${id}`);
    const raceDisabled = (): Promise<boolean> => race.evaluate((e) => (e as HTMLElement & { disabled: boolean }).disabled);
    assert.equal(await raceDisabled(), true, 'running: Race disabled');
    assert.match((await race.getAttribute('title')) ?? '', /only while the run is paused/, 'and it says why');
    await page.click('#control-pause');
    await page.waitForFunction((id) => !(document.querySelector(`#race-${id}`) as HTMLElement & { disabled: boolean }).disabled, id);
    await assertAccessible(page, 'suggestions with a p-model record, paused');
    await page.locator(`#race-steps-${id} input`).fill('0');
    await page.click(`#race-${id}`);
    assert.match(await page.locator(`#race-reply-${id}`).innerText(), /race steps must be a whole number from 1 to 1000; got "0"/, 'a bad step count is refused in place');
    const sent = host.commands().length;
    await page.locator(`#race-steps-${id} input`).fill('20');
    assert.equal(await race.innerText(), 'Race 20 steps', 'the button names its step count');
    await page.click(`#race-${id}`);
    await page.waitForFunction((id) => /race 20 steps: done at step/.test(document.querySelector(`#race-reply-${id}`)?.textContent ?? ''), id);
    assert.equal(host.commands().length, sent + 1, 'one command, none for the refused count');
    assert.deepEqual(host.commands().at(-1)!.command, { kind: 'race', id, steps: 20 }, 'the race command');
    // The trainer's answer: a race record (the fake host acks; the record comes as the trainer would log it).
    await host.append(run.runId, [synthRace(pending[0], LIVE_STEPS, 20, 'suggested')]);
    await page.waitForFunction(([id, text]) => document.querySelector(`#calibration-${id}`)?.textContent?.startsWith(text), [id, `races: suggested won ${won + 1} of ${earlier.length + 1}`] as const);
    assert.match(await page.locator(`#races-${id} tbody tr`).first().innerText(), new RegExp(`^${LIVE_STEPS}\\s+20\\s+suggested won\\s+0\\.05\\s+0\\.0475\\s+256$`), 'the result row: step, steps, winner, both held-out losses');
    assert.equal(await page.locator(`#suggestion-${id}`).count(), 1, 'a race leaves the suggestion pending');
    await page.screenshot({ path: join(artifacts, 'suggestions-p-model.png'), fullPage: true });
  });

  test('Compare: both runs overlaid in stable colours, with a config diff', SLOW_TEST, async () => {
    const { page } = await openDashboard();
    await showView(page, 'compare');
    const c = await chart(page, 'compare-loss');
    assert.deepEqual(c.labels, ['dynmuon-live', 'muon-baseline'], 'one series per run');
    assert.ok(c.finite[1] > 100 && c.finite[2] > 100, `both runs drawn: ${c.finite}`);
    const diff = await page.locator('#config-diff').innerText();
    assert.match(diff, /optimizer\.type\s+"dynmuon"\s+"muon"/, 'optimizer difference listed');
    assert.match(diff, /name\s+"run"\s+"muon-baseline"/, 'name difference listed');
    await page.screenshot({ path: join(artifacts, 'compare.png'), fullPage: true });
  });

  test('axe: no serious or critical violations in any view', SLOW_TEST, async () => {
    const { page } = await openDashboard();
    for (const id of ['overview', 'layers', 'layer', 'curvature', 'schedule', 'suggestions', 'compare']) {
      await showView(page, id);
      await assertAccessible(page, id);
    }
  });

  test('reload replays the whole history with no gaps and keeps the UI state', SLOW_TEST, async () => {
    const { host, page, runs } = await openDashboard();
    await showView(page, 'curvature');
    const total = runs[0].records.length;
    const readies = host.posted.filter((m) => m.type === 'ready').length;
    await page.reload();
    await host.waitFor('a second ready message after the reload', () => host.posted.filter((m) => m.type === 'ready').length === readies + 1);
    await page.waitForFunction((n) => (window as unknown as { __muonscope: { store: { focused: { lastSeq: number } | null } } }).__muonscope.store.focused?.lastSeq === n, total);
    const s = await store<{ records: number; gaps: number; controls: number }>(page, `({ records: s.focused.records, gaps: s.focused.gaps, controls: s.focused.controls.length })`);
    assert.deepEqual(s, { records: total, gaps: 0, controls: runs[0].records.filter((r) => r.kind === 'control').length }, 'every record, once, no gaps');
    assert.equal(await page.evaluate(() => (window as unknown as { __muonscope: { view: string } }).__muonscope.view), 'curvature', 'the selected view survives');
    // The host may resend what the page already has: it keeps the first copy.
    await host.send({ type: 'records', runId: runs[0].runId, records: runs[0].records.slice(-50) });
    assert.equal(await store<number>(page, 's.focused.records'), total, 'duplicates ignored');
    assert.deepEqual(host.errors, [], `no page errors: ${host.errors.join('\n')}`);
  });
});
