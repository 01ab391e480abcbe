// Compare and the shared step range, in headless Chromium against the recorded streams
// (test/fixtures/dashboard) through the fake extension host: the Compare view's four run charts at full
// width with one series per run in the run's colour, a per-layer quantity picked by the user drawn for
// each run that has the layer and kept across a reload, one x-range for every step chart of a view (and
// a double-click after a zoom returns to it), and no serious axe violations.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import type { LogRecord, RecordOf } from '../../common/protocol.js';
import { SLOW_TEST, waitUntil } from '../helpers/wait.js';
import { FakeHost, loadStream, type RunFixture } from './host.js';
import { assertAccessible, dashboardPages, showView } from './page.js';


/** Run A is live, recorded up to step 150 of 200 (its last step is 149); run B finished all 200. */
const LIVE_STEPS = 150;
/** Run B is given no diagnostics for this layer, so the layer chart must leave it out. */
const ONLY_IN_A = 'mlp.layer1.weight';
const IN_BOTH = 'mlp.layer0.weight';
const RUN_CHARTS = ['compare-loss', 'compare-val-loss', 'compare-p', 'compare-lr'];

function withoutLayer(records: LogRecord[], layer: string): LogRecord[] {
  return records
    .filter((r) => !('layer' in r && r.layer === layer))
    .map((r) => (r.kind === 'layer_stats' ? { ...r, layers: r.layers.filter((l) => l.name !== layer) } : r))
    .map((r, i) => ({ ...r, seq: i + 1 }));
}

function fixtures(): RunFixture[] {
  const a = loadStream('stream.ndjson');
  const end = a.findIndex((r) => r.kind === 'step' && r.step === LIVE_STEPS);
  const b = withoutLayer(loadStream('stream-b.ndjson'), ONLY_IN_A);
  const id = (rs: LogRecord[]): string => (rs[0] as RecordOf<'run_started'>).runId;
  return [
    { runId: id(a), label: 'dynmuon-live', records: a.slice(0, end), live: true },
    { runId: id(b), label: 'muon-baseline', records: b, live: false },
  ];
}

interface ChartInfo {
  title: string;
  labels: string[];
  colors: string[];
  summary: string;
  data: (number | null)[][];
  xScale: { min: number; max: number } | null;
  painted: boolean;
}

type Probe = Omit<ChartInfo, 'labels' | 'colors' | 'data'> & { alignedData: ArrayLike<number | null>[]; seriesLabels: string[]; seriesColors: string[] };

function chart(page: Page, id: string): Promise<ChartInfo> {
  return page.evaluate((id) => {
    const c = (window as unknown as { __muonscope: { charts: Record<string, Probe> } }).__muonscope.charts[id];
    return { title: c.title, labels: c.seriesLabels, colors: c.seriesColors, summary: c.summary, data: c.alignedData.map((a) => Array.from(a)), xScale: c.xScale, painted: c.painted };
  }, id);
}

/** (step, value) of series `k` of a chart, where it has a finite value. */
function pointsOf(c: ChartInfo, k: number): [number, number][] {
  const out: [number, number][] = [];
  c.data[k + 1].forEach((y, i) => {
    if (y !== null && Number.isFinite(y)) out.push([c.data[0][i] as number, y]);
  });
  return out;
}

/** What a run's records hold for a per-step scalar of its step (or eval) records. */
function expected(records: LogRecord[], pick: (r: LogRecord) => number | null | undefined): [number, number][] {
  const out: [number, number][] = [];
  for (const r of records) {
    const v = pick(r);
    if (typeof v === 'number' && Number.isFinite(v)) out.push([(r as { step: number }).step, v]);
  }
  return out;
}

const fromStep = (f: (r: RecordOf<'step'>) => number | null | undefined) => (r: LogRecord) => (r.kind === 'step' ? f(r) : null);
const fromLayer = (layer: string, f: (l: RecordOf<'layer_stats'>['layers'][number]) => number) => (r: LogRecord) =>
  r.kind === 'layer_stats' ? ((l) => (l ? f(l) : null))(r.layers.find((l) => l.name === layer)) : null;

/**
 * Waits until every chart named holds what `until` asks and has drawn it; resolves with what they hold
 * then. The view first renders what the store holds now (the next frame), so data that has arrived is in.
 */
async function drawn(page: Page, ids: string[], what: string, until: (c: ChartInfo) => boolean = () => true): Promise<Record<string, ChartInfo>> {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  return waitUntil(what, async () => Object.fromEntries(await Promise.all(ids.map(async (id) => [id, await chart(page, id)] as const))), {
    until: (charts) => ids.every((id) => charts[id].painted && until(charts[id])),
  });
}

/** Opens a toolkit dropdown and clicks the option with this text, as a user would. */
async function choose(page: Page, dropdownId: string, option: string): Promise<void> {
  await page.click(`#${dropdownId}`);
  await page.locator(`#${dropdownId} vscode-option`, { hasText: option }).click();
  await page.waitForFunction(([id, option]) => document.querySelector(`#${id} vscode-option[aria-selected="true"]`)?.textContent === option, [dropdownId, option] as const);
}

describe('Compare view and shared x-ranges in headless Chromium', () => {
  const pages = dashboardPages();

  /** Waits until the page holds every record of every run. */
  async function loaded(page: Page, runs: RunFixture[]): Promise<void> {
    await page.waitForFunction(
      (want) => want.every(([id, n]) => (window as unknown as { __muonscope: { store: { runs: Map<string, { lastSeq: number }> } } }).__muonscope.store.runs.get(id)?.lastSeq === n),
      runs.map((r) => [r.runId, r.records.length] as const),
    );
  }

  async function openDashboard(): Promise<{ host: FakeHost; page: Page; runs: RunFixture[] }> {
    const runs = fixtures();
    const host = await pages.open(runs);
    await loaded(host.page, runs);
    return { host, page: host.page, runs };
  }

  test('Compare: train loss, validation loss, p and lr at full width, one series per run in its colour, on one step range', SLOW_TEST, async () => {
    const { host, page, runs } = await openDashboard();
    await showView(page, 'compare');
    // The furthest any run reaches is run B's last step: every chart, the layer chart too, spans it.
    const lastB = expected(runs[1].records, fromStep((s) => s.step)).at(-1)![0];
    const charts = await drawn(page, [...RUN_CHARTS, 'compare-layer'], 'the compare charts');
    for (const [id, c] of Object.entries(charts)) assert.deepEqual(c.xScale, { min: 0, max: lastB }, `${id} x-range`);
    const view = await page.locator('#view-compare').boundingBox();
    const boxes = await Promise.all(RUN_CHARTS.map((id) => page.locator(`#chart-${id}`).boundingBox()));
    boxes.forEach((b, i) => assert.ok(b && view && b.width >= view.width - 1, `${RUN_CHARTS[i]} spans the view: ${b?.width} px of ${view?.width}`));
    const tops = boxes.map((b) => b!.y);
    assert.ok(tops.every((y, i) => i === 0 || y > tops[i - 1]), `one chart per row: tops ${tops}`);

    const legend = await page.locator('#compare-runs li').evaluateAll((lis) => lis.map((li) => [li.textContent, (li as HTMLElement).dataset.colour]));
    assert.deepEqual(legend.map(([text]) => text!.split(' — ')[0]), ['dynmuon-live', 'muon-baseline'], `legend names each run: ${JSON.stringify(legend)}`);
    const colours = legend.map(([, c]) => c);
    assert.equal(new Set(colours).size, 2, `two distinct colours: ${colours}`);

    const reference: Record<string, (r: LogRecord) => number | null | undefined> = {
      'compare-loss': fromStep((s) => s.loss),
      'compare-val-loss': (r) => (r.kind === 'eval' ? r.valLoss : null),
      'compare-p': fromStep((s) => s.p),
      'compare-lr': fromStep((s) => s.lr),
    };
    for (const id of RUN_CHARTS) {
      const c = charts[id];
      assert.deepEqual(c.labels, ['dynmuon-live', 'muon-baseline'], `${id}: one series per run`);
      assert.deepEqual(c.colors, colours, `${id}: each run in its legend colour`);
      runs.forEach((run, k) => assert.deepEqual(pointsOf(c, k), expected(run.records, reference[id]), `${id}: ${run.label}'s recorded values, step by step`));
    }
    const p = charts['compare-p'];
    assert.equal(pointsOf(p, 0).length, LIVE_STEPS, 'p of the DynMuon run at every step');
    assert.match(p.summary, /muon-baseline: no p recorded/, `a Muon run has no p, and the summary says so: ${p.summary}`);
    const diff = await page.locator('#config-diff').innerText();
    assert.match(diff, /optimizer\.type\s+"dynmuon"\s+"muon"/, 'the config diff stays');
    await assertAccessible(page, 'compare');
    assert.deepEqual(host.errors, [], `no page errors: ${host.errors.join('\n')}`);
  });

  test('Compare: a picked layer quantity is drawn for each run with that layer, and survives a reload', SLOW_TEST, async () => {
    const { host, page, runs } = await openDashboard();
    await showView(page, 'compare');
    await drawn(page, ['compare-layer'], 'the layer chart', (c) => c.labels.length > 0);
    assert.equal((await chart(page, 'compare-layer')).title, `Update RMS of ${IN_BOTH}`, 'by default the first layer, update RMS');

    await choose(page, 'compare-quantity', 'Stable rank of G');
    let c = (await drawn(page, ['compare-layer'], `the stable rank of ${IN_BOTH}`, (c) => c.title === `Stable rank of G of ${IN_BOTH}`))['compare-layer'];
    assert.deepEqual(c.labels, ['dynmuon-live', 'muon-baseline'], `${IN_BOTH}: both runs have it`);
    runs.forEach((run, k) => assert.deepEqual(pointsOf(c, k), expected(run.records, fromLayer(IN_BOTH, (l) => l.G.stableRank)), `${run.label}'s recorded stable rank of ${IN_BOTH}`));

    await choose(page, 'compare-layer', ONLY_IN_A);
    c = (await drawn(page, ['compare-layer'], `the stable rank of ${ONLY_IN_A}`, (c) => c.title === `Stable rank of G of ${ONLY_IN_A}`))['compare-layer'];
    assert.deepEqual(c.labels, ['dynmuon-live'], `${ONLY_IN_A}: only the run that has it`);
    const colour = (await chart(page, 'compare-loss')).colors[0];
    assert.deepEqual(c.colors, [colour], 'in the same colour as on the run charts');
    const want = expected(runs[0].records, fromLayer(ONLY_IN_A, (l) => l.G.stableRank));
    assert.equal(want.length, Math.ceil(LIVE_STEPS / 10), `one diagnostics round every 10 steps: ${want.length}`);
    assert.deepEqual(pointsOf(c, 0), want, `dynmuon-live's recorded stable rank of ${ONLY_IN_A}`);
    assert.match(c.summary, new RegExp(`No layer ${ONLY_IN_A} in muon-baseline`), `the summary names the run without it: ${c.summary}`);
    await page.screenshot({ path: join(import.meta.dirname, 'artifacts', 'compare-layer.png'), fullPage: true });

    await page.reload();
    await loaded(page, runs);
    await page.waitForFunction(() => (window as unknown as { __muonscope: { view: string } }).__muonscope.view === 'compare');
    c = (await drawn(page, ['compare-layer'], `the stable rank of ${ONLY_IN_A} after the reload`, (c) => c.title === `Stable rank of G of ${ONLY_IN_A}` && c.data[0].length > 0))['compare-layer'];
    assert.deepEqual({ labels: c.labels, points: pointsOf(c, 0) }, { labels: ['dynmuon-live'], points: want }, 'after the reload: the same layer and quantity, the same values');
    const selected = await page.evaluate(() => ['compare-layer', 'compare-quantity'].map((id) => (document.getElementById(id) as HTMLElement & { value: string }).value));
    assert.deepEqual(selected, [ONLY_IN_A, 'stableRank'], 'the controls show the choice');
    assert.deepEqual(host.errors, [], `no page errors: ${host.errors.join('\n')}`);
  });

  test('Overview: every chart spans the same steps, up to the current one (the planned p curve does not stretch its chart)', SLOW_TEST, async () => {
    const { host, page, runs } = await openDashboard();
    await showView(page, 'overview');
    const ids = ['loss', 'lr', 'p', 'speed'];
    const last = expected(runs[0].records, fromStep((s) => s.step)).at(-1)![0];
    const charts = await drawn(page, ids, 'the overview charts');
    const ranges = Object.fromEntries(ids.map((id) => [id, charts[id].xScale]));
    assert.deepEqual(ranges, Object.fromEntries(ids.map((id) => [id, { min: 0, max: last }])), `x-ranges, with the current step ${last}`);
    // A zoom is undone by a double-click, back to the shared range rather than to the chart's own data.
    const over = (await page.locator('#chart-p .u-over').boundingBox())!;
    await page.mouse.move(over.x + over.width * 0.3, over.y + over.height / 2);
    await page.mouse.down();
    await page.mouse.move(over.x + over.width * 0.6, over.y + over.height / 2, { steps: 5 });
    await page.mouse.up();
    const zoomed = (await chart(page, 'p')).xScale!;
    assert.ok(zoomed.min > 0 && zoomed.max < last, `dragging zooms in: ${JSON.stringify(zoomed)}`);
    await page.mouse.dblclick(over.x + over.width / 2, over.y + over.height / 2);
    assert.deepEqual((await chart(page, 'p')).xScale, { min: 0, max: last }, 'a double-click returns to the shared range');
    const planned = charts.p.data[0].at(-1);
    const total = (runs[0].records[0] as RecordOf<'run_started'>).totalSteps;
    assert.equal(planned, total, `the planned curve still reaches step ${total}, beyond the drawn range`);
    assert.deepEqual(host.errors, [], `no page errors: ${host.errors.join('\n')}`);
  });
});
