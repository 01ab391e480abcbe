// The dashboard's pure parts: per-pixel min/max downsampling keeps spikes, compaction keeps extremes,
// the store drops repeated seqs, counts gaps, and stays within its memory bound on a long run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RELEASED_IDENTITY_FROM as TRAINER_IDENTITY_FROM } from '../../trainer/optim/dynmuon.js';
import type { LogRecord } from '../../common/protocol.js';
import { compactMinMax, downsampleMinMax, emaSmooth } from '../../webview/downsample.js';
import { exactCurve, RELEASED_IDENTITY_FROM, releasedCurve } from '../../webview/shaping-curves.js';
import { LAYER_METRICS, LAYER_SERIES_CAP, RunStore, SERIES_CAP, SPECTRA_HISTORY_CAP, Series, type LayerMetric } from '../../webview/store.js';
import { synthDiagnostics } from '../fixtures/dashboard/synth.js';
import { assertAbove, assertAtMost, assertBelow } from '../helpers/bounds.js';

test('downsampleMinMax keeps a one-point spike and a one-point dip among 100k points', () => {
  const n = 100_000;
  const x = Float64Array.from({ length: n }, (_, i) => i);
  const y = Float64Array.from({ length: n }, (_, i) => Math.sin(i / 1000));
  y[31_337] = 50;
  y[77_777] = -50;
  const d = downsampleMinMax(x, y, n, 300);
  assertAtMost(d.x.length, 600, `at most two points per bucket, got ${d.x.length}`);
  assert.deepEqual([50, -50].filter((v) => !d.y.includes(v)), [], 'spike and dip survive');
  assert.deepEqual([31_337, 77_777].filter((v) => !d.x.includes(v)), [], 'at their own steps');
  for (let i = 1; i < d.x.length; i++) assertAbove(d.x[i], d.x[i - 1], `x ascending at ${i}`);
});

test('downsampleMinMax passes short series through and skips non-finite values', () => {
  const d = downsampleMinMax([0, 1, 2, 3], [1, NaN, 3, Infinity], 4, 100);
  assert.deepEqual([...d.x], [0, 2], 'finite points kept in order');
  assert.deepEqual([...d.y], [1, 3], 'their values');
  assert.equal(downsampleMinMax([], [], 0, 10).x.length, 0, 'empty in, empty out');
});

test('compactMinMax halves a series and keeps its extremes', () => {
  const x = Float64Array.from({ length: 16 }, (_, i) => i);
  const y = Float64Array.from([1, 2, 9, 3, 4, 4, 4, 4, 0, 5, 6, 7, -3, 1, 1, 1]);
  const m = compactMinMax(x, y, 16);
  assert.equal(m, 7, 'two points per group of four, one where min and max coincide');
  assert.deepEqual([...y.subarray(0, m)], [1, 9, 4, 0, 7, -3, 1], 'min and max of each group, in x order');
});

test('emaSmooth follows a constant and passes gaps through', () => {
  const s = emaSmooth([1, 1, NaN, 1], 4, 0.9);
  assert.equal(s[0], 1, 'first value');
  assert.deepEqual([s[2], s[3]], [NaN, 1], 'gap passes through, smoothing carries on');
});

test('Series stays within its cap and keeps a spike through compactions', () => {
  const s = new Series(1024);
  for (let i = 0; i < 100_000; i++) s.push(i, i === 54_321 ? 1e6 : Math.cos(i));
  assertAtMost(s.length, 1024, `bounded: ${s.length}`);
  assertAtMost(s.bytes, 1024 * 16, `bytes bounded: ${s.bytes}`);
  assert.ok(s.y.subarray(0, s.length).includes(1e6), `spike kept; max is ${Math.max(...s.y.subarray(0, s.length))}`);
  assert.equal(s.x[s.length - 1], 99_999, 'latest point kept');
});

const base = { t: 0 };
function step(seq: number, n: number): LogRecord {
  return { ...base, seq, kind: 'step', step: n, loss: 1 / (n + 1), lr: 0.02, p: 0.1, stepMs: 10 };
}

test('RunStore keeps the first copy of every seq and counts gaps', () => {
  const r = new RunStore('a');
  assert.equal(r.apply([step(1, 0), step(2, 1)]), 2, 'two new');
  assert.equal(r.apply([step(1, 0), step(2, 1), step(3, 2)]), 1, 'resent history ignored');
  assert.equal(r.loss.length, 3, 'one point per step');
  assert.equal(r.gaps, 0, 'no gaps yet');
  r.apply([step(5, 4)]);
  assert.equal(r.gaps, 1, 'a jump in seq is a gap');
  const v = r.version;
  r.apply([step(5, 4)]);
  assert.equal(r.version, v, 'nothing new, no redraw');
});

test('RunStore memory is bounded over a long run with many layers', () => {
  const r = new RunStore('a');
  const layers = Array.from({ length: 20 }, (_, i) => ({ name: `l${i}`, rows: 32, cols: 32 }));
  let seq = 0;
  const total = 20_000;
  for (let s = 0; s < total; s++) {
    const records: LogRecord[] = [step(++seq, s)];
    if (s % 5 === 0) for (const d of synthDiagnostics(layers, s, { totalSteps: total, batchSize: 32, p: 0.1 })) records.push({ ...d, seq: ++seq, t: 0 } as LogRecord);
    r.apply(records);
  }
  for (const l of r.layers.values()) {
    assertAtMost(l.spectra.columns.length, SPECTRA_HISTORY_CAP, `spectra history bounded: ${l.spectra.columns.length}`);
    assertAtMost(l.series.stableRank.length, LAYER_SERIES_CAP, 'layer series bounded');
  }
  assertAtMost(r.loss.length, SERIES_CAP, 'step series bounded');
  const first = r.layers.get('l0')!.spectra.columns;
  assert.ok(first[0].step === 0 && first[first.length - 1].step > total * 0.9, `heatmap spans the whole run: ${first[0].step}…${first[first.length - 1].step}`);
  const bound = 20 * (LAYER_METRICS.length * LAYER_SERIES_CAP * 16 + SPECTRA_HISTORY_CAP * 4 * 32 * 4) + 13 * SERIES_CAP * 16;
  assertAtMost(r.bytes, bound, `${r.bytes} bytes within ${bound}`);
});

test('RunStore keeps the layer quantities in Muon norms as series, ‖O‖_op from O\'s summary, and none from records without them', () => {
  const layers = [{ name: 'l0', rows: 16, cols: 32 }];
  const at = (step: number, seq: number) => synthDiagnostics(layers, step, { totalSteps: 100, batchSize: 32, p: 0.1, every: 10 }).map((d, i) => ({ ...d, seq: seq + i, t: 0 }) as LogRecord);
  const r = new RunStore('a');
  r.apply([...at(0, 1), ...at(10, 100)]);
  const l = r.layers.get('l0')!;
  const stats = l.stats!;
  const expected: [LayerMetric, number][] = [
    ['updateRmsToRms', stats.updateRmsToRms!],
    ['weightRmsToRms', stats.weightRmsToRms!],
    ['updateWeightOpRatio', stats.updateWeightOpRatio!],
    ['nuclearAlignment', stats.nuclearAlignment!],
    ['oOpNorm', stats.O.sigmaMax],
    ['nsPolarError', stats.nsPolarError!],
    ['nsNearOne', stats.nsNearOne!],
    ['updateCosine', stats.updateCosine!],
    ['updateStableRank', stats.deltaW!.stableRank],
    ['updateEffectiveRank', stats.deltaW!.effectiveRank],
  ];
  for (const [metric, value] of expected) assert.equal(l.series[metric].last, value, `${metric} latest`);
  assert.equal(l.series.updateRmsToRms.length, 2, 'one point per round');
  assert.equal(l.series.updateCosine.length, 1, 'no cosine at the first round, so no point');
  // A record written before these fields existed: the old series go on, the new ones get no point.
  const { deltaW: _d, updateRmsToRms: _u, weightRmsToRms: _w, updateWeightOpRatio: _o, nuclearAlignment: _n, nsPolarError: _e, nsNearOne: _c, updateCosine: _k, updateCosineLag: _g, ...old } = stats;
  r.apply([{ kind: 'layer_stats', seq: 500, t: 0, step: 20, layers: [old] }]);
  assert.equal(l.series.stableRank.length, 3, 'old fields still recorded');
  assert.equal(l.series.updateRmsToRms.length, 2, 'no point for a field the record lacks');
});

test('shaping curves: φ_p flattens at p = 0, tilts at p < 0; the released Taylor tilt is milder', () => {
  const sigma = [1, 0.5, 0.1, 0.01];
  const flat = exactCurve(sigma, 0, 0);
  assert.ok(flat.every((v) => Math.abs(v - 1) < 1e-12), `p = 0 is the polar factor: ${flat}`);
  const exact = exactCurve(sigma, -0.25, 1e-3);
  assert.ok(exact[3] > exact[2] && exact[2] > 1, `negative p amplifies small directions: ${exact}`);
  const released = releasedCurve(sigma, -0.25);
  assertBelow(released[3], exact[3], `Taylor tilts less: ${released} vs ${exact}`);
  assert.equal(RELEASED_IDENTITY_FROM, TRAINER_IDENTITY_FROM, 'the dashboard mirrors the optimizer constant');
});
