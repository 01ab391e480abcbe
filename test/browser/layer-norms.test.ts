// The layer quantities in Muon's own norms in headless Chromium, through the fake extension host: the
// recorded stream (test/fixtures/dashboard/stream.ndjson, logged before these fields existed) with every
// layer_stats record given them, so what the page shows can be compared with what the records say. The
// Layers table has sortable columns for four of them; Layer detail lists all of them and draws their
// history; the shaping caption names the normalisation; no serious axe violations.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import type { LayerStats, RecordOf } from '../../common/protocol.js';
import { fmt } from '../../webview/dom.js';
import { SLOW_TEST } from '../helpers/wait.js';
import { loadStream, type RunFixture } from './host.js';
import { assertAccessible, dashboardPages, showView } from './page.js';

const artifacts = join(import.meta.dirname, 'artifacts');
mkdirSync(artifacts, { recursive: true });
const LAYER = 'mlp.layer1.weight';

/** Deterministic values that differ by layer and step; no cosine at a layer's first round. */
function withMuonNorms(s: LayerStats, step: number, first: boolean, li: number): LayerStats {
  const k = 1 + step / 1000 + li / 10;
  return {
    ...s,
    deltaW: { sigmaMax: 0.02 * k, stableRank: 3 * k, effectiveRank: 5 * k, nuclearRank: 4 * k },
    updateRmsToRms: 0.03 * k,
    weightRmsToRms: 2 * k,
    updateWeightOpRatio: 0.015 * k,
    nuclearAlignment: 0.4 * k,
    nsPolarError: 0.3 / k,
    nsNearOne: 10 + li,
    ...(first ? {} : { updateCosine: 0.5 - li / 4, updateCosineLag: 10 }),
  };
}

function fixtures(): RunFixture[] {
  const names = new Set<string>();
  const records = loadStream('stream.ndjson').map((r) => {
    if (r.kind === 'layer_stats') return { ...r, layers: r.layers.map((s, li) => withMuonNorms(s, r.step, !names.has(s.name) && !!names.add(s.name), li)) };
    if (r.kind === 'run_started') return { ...r, config: { ...(r.config as object), optimizer: { ...(r.config as { optimizer: object }).optimizer, normalization: 'spectral', maxGain: 10 } } };
    return r;
  });
  return [{ runId: (records[0] as RecordOf<'run_started'>).runId, label: 'dynmuon', records, live: false }];
}

function lastStats(run: RunFixture, name: string): LayerStats {
  const last = run.records.filter((r): r is RecordOf<'layer_stats'> => r.kind === 'layer_stats').at(-1)!;
  return last.layers.find((l) => l.name === name)!;
}

describe('layer quantities in Muon norms in the dashboard', () => {
  const pages = dashboardPages();

  async function open(): Promise<{ page: Page; run: RunFixture }> {
    const runs = fixtures();
    const host = await pages.open(runs);
    await host.page.waitForFunction((n) => (window as unknown as { __muonscope: { store: { focused: { lastSeq: number } | null } } }).__muonscope.store.focused?.lastSeq === n, runs[0].records.length);
    return { page: host.page, run: runs[0] };
  }

  test('Layers: four sortable columns show each layer\'s latest value; sorting by update cosine orders the rows', SLOW_TEST, async () => {
    const { page, run } = await open();
    await showView(page, 'layers');
    const headers = await page.locator('#layers-table thead th').allInnerTexts();
    for (const label of ['Update RMS→RMS', 'Update/weight (op)', '⟨G,O⟩/‖G‖*', 'Update cosine']) assert.ok(headers.some((h) => h.includes(label)), `column ${label} in ${headers}`);
    const column = (label: string) => headers.findIndex((h) => h.includes(label));
    const cell = async (layer: string, label: string) =>
      (await page.locator(`#layers-table tbody tr[data-layer="${layer}"] > *`).nth(column(label)).locator('.value').innerText()).trim();
    for (const name of ['mlp.layer0.weight', LAYER]) {
      const s = lastStats(run, name);
      const expected: [string, number | undefined][] = [
        ['Update RMS→RMS', s.updateRmsToRms],
        ['Update/weight (op)', s.updateWeightOpRatio],
        ['⟨G,O⟩/‖G‖*', s.nuclearAlignment],
        ['Update cosine', s.updateCosine],
      ];
      for (const [label, v] of expected) assert.equal(await cell(name, label), fmt(v), `${name}: ${label}`);
    }
    await page.click('button.sort[data-key="updateCosine"]');
    await page.waitForFunction(() => document.querySelector('th:has(> button.sort[data-key="updateCosine"])')?.getAttribute('aria-sort') === 'descending');
    const order = await page.locator('#layers-table tbody th').allInnerTexts();
    const byCosine = ['mlp.layer0.weight', LAYER].sort((a, b) => lastStats(run, b).updateCosine! - lastStats(run, a).updateCosine!);
    assert.deepEqual(order, byCosine, 'descending update cosine');
    await page.screenshot({ path: join(artifacts, 'layers-muon-norms.png'), fullPage: true });
    await assertAccessible(page, 'Layers');
  });

  test('Layer detail: every quantity with its unit or band, their history charts, the normalisation in the shaping caption', SLOW_TEST, async () => {
    const { page, run } = await open();
    await showView(page, 'layers');
    await page.click(`button[aria-label="Open layer ${LAYER}"]`);
    await showView(page, 'layer');
    const s = lastStats(run, LAYER);
    const info = async (term: string) => (await page.locator('#view-layer dl.info dt', { hasText: term }).locator('xpath=following-sibling::dd[1]').innerText()).trim();
    assert.equal(await info('‖ΔW‖_op (RMS→RMS)'), `${fmt(s.deltaW!.sigmaMax)} (${fmt(s.updateRmsToRms)})`);
    assert.equal(await info('‖W‖_op (RMS→RMS)'), `${fmt(s.W.sigmaMax)} (${fmt(s.weightRmsToRms)})`);
    assert.equal(await info('Update/weight (op)'), fmt(s.updateWeightOpRatio));
    assert.equal(await info('⟨G,O⟩/‖G‖_*'), `${fmt(s.nuclearAlignment)} (at most ‖O‖_op)`);
    assert.equal(await info('‖O‖_op'), fmt(s.O.sigmaMax));
    assert.equal(await info('NS(M) vs polar(M)'), fmt(s.nsPolarError));
    assert.equal(await info('NS near 1'), `${s.nsNearOne} of ${Math.min(s.rows, s.cols)} (σ of NS(M) in [0.6, 1.4])`);
    assert.equal(await info('Update cosine'), `${fmt(s.updateCosine)} (10 steps apart)`);
    assert.equal(await info('Rank of ΔW (stable, effective)'), `${fmt(s.deltaW!.stableRank)}, ${fmt(s.deltaW!.effectiveRank)}`);

    const rounds = run.records.filter((r) => r.kind === 'layer_stats').length;
    const finite = (id: string) =>
      page.evaluate((id) => {
        const c = (window as unknown as { __muonscope: { charts: Record<string, { alignedData: ArrayLike<number | null>[] }> } }).__muonscope.charts[id];
        return c.alignedData.slice(1).map((a) => Array.from(a).filter((v) => v !== null && Number.isFinite(v)).length);
      }, id);
    assert.deepEqual(await finite('layer-op-norms'), [rounds, rounds], 'update and weight RMS→RMS norms, one point per round');
    assert.deepEqual(await finite('layer-direction'), [rounds, rounds, rounds - 1, rounds], '⟨G,O⟩/‖G‖_*, ‖O‖_op, cosine (none at the first round), NS error');
    assert.deepEqual(await finite('layer-directions-count'), [rounds, rounds, rounds], 'stable and effective rank of ΔW, NS near 1');
    const caption = await page.evaluate(() => (window as unknown as { __muonscope: { charts: Record<string, { summary: string }> } }).__muonscope.charts.shaping.summary);
    assert.match(caption, /dynmuon \(exact, spectral\)/, `the shaping caption names the normalisation: ${caption}`);
    await page.screenshot({ path: join(artifacts, 'layer-detail-muon-norms.png'), fullPage: true });
    await assertAccessible(page, 'Layer detail');
  });
});
