// The dashboard's pure parts: per-pixel min/max downsampling keeps spikes, compaction keeps extremes,
// the store drops repeated seqs, counts gaps, and stays within its memory bound on a long run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RELEASED_IDENTITY_FROM as TRAINER_IDENTITY_FROM } from '../../trainer/optim/dynmuon.js';
import { RACE_MAX_STEPS, validateLogRecord, type LogRecord, type NewLogRecord, type RecordOf } from '../../common/protocol.js';
import { compactMinMax, downsampleMinMax, emaSmooth } from '../../webview/downsample.js';
import { exactCurve, RELEASED_IDENTITY_FROM, releasedCurve } from '../../webview/shaping-curves.js';
import { LAYER_METRICS, LAYER_SERIES_CAP, RunStore, SERIES_CAP, SPECTRA_HISTORY_CAP, Series, type LayerMetric } from '../../webview/store.js';
import { lossAt, pModelCaption, pModelChartData, pModelLayerRows } from '../../webview/p-model-data.js';
import { calibrationText, parseRaceSteps } from '../../webview/suggestion-text.js';
import { ranksText } from '../../webview/ranks-text.js';
import { synthDiagnostics, synthPModel, synthRace } from '../fixtures/dashboard/synth.js';
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

const stamp = (records: NewLogRecord[], seq0: number): LogRecord[] => records.map((r, i) => ({ ...r, seq: seq0 + i, t: 0 }) as LogRecord);

test('synthetic p_model and race records are valid records, and their fits show h ∝ σ²', () => {
  const layers = [{ name: 'l0', rows: 32, cols: 64 }, { name: 'l1', rows: 64, cols: 64 }];
  const m = synthPModel(layers, 100, { currentP: 0, bestP: -0.25, horizonSteps: 50 });
  const race = synthRace({ id: 's1', rule: 'p_model' }, 100, 20, 'suggested');
  for (const r of stamp([m, race], 1)) {
    const v = validateLogRecord(r);
    assert.ok(v.ok, `${r.kind}: ${JSON.stringify(v.ok ? null : v.issues)}`);
  }
  assert.equal(m.kind, 'p_model');
  if (m.kind !== 'p_model') return;
  // h = 3σ²·e^(±0.1): the slope of ln h on ln σ is 2 within the jitter, and σ orders curvature almost exactly.
  for (const l of m.layers) {
    assertBelow(Math.abs(l.curvatureVsSigma.slope - 2), 0.1, `${l.layer} slope ${l.curvatureVsSigma.slope}`);
    assertAbove(l.curvatureVsSigma.r2, 0.99, `${l.layer} r² ${l.curvatureVsSigma.r2}`);
  }
  assert.equal(m.curve.reduce((b, c) => (c.loss < b.loss ? c : b)).p, -0.25, 'the curve is lowest at the recommendation');
});

test('RunStore keeps the latest 200 p_model records, in order', () => {
  const r = new RunStore('a');
  const layers = [{ name: 'l0', rows: 8, cols: 8 }];
  r.apply(stamp(Array.from({ length: 205 }, (_, i) => synthPModel(layers, i * 10, { currentP: 0, bestP: 0.25, horizonSteps: 10 })), 1));
  assert.equal(r.pModels.length, 200, 'bounded');
  assert.deepEqual([r.pModels[0].step, r.pModels.at(-1)!.step], [50, 2040], 'the oldest five dropped, the latest last');
});

test('RunStore files races under their suggestion and tallies them per rule, whole past the list bound', () => {
  const r = new RunStore('a');
  const suggestion = (id: string, rule: RecordOf<'suggestion'>['rule']): NewLogRecord => ({
    kind: 'suggestion', step: 10, id, rule, title: id, change: { kind: 'set_lr', lr: 0.01 }, evidence: [], confidence: 0.6, expectedEffect: 'lower loss',
  });
  r.apply(stamp([
    suggestion('s1', 'p_model'),
    suggestion('s2', 'plateau_noise'),
    synthRace({ id: 's1', rule: 'p_model' }, 20, 50, 'suggested'),
    synthRace({ id: 's1', rule: 'p_model' }, 20, 50, 'baseline'),
    synthRace({ id: 's1', rule: 'p_model' }, 20, 50, 'tie'),
    synthRace({ id: 's2', rule: 'plateau_noise' }, 20, 50, 'suggested'),
    // A race of a suggestion this store never saw (or dropped): it counts for its rule, and has no card.
    synthRace({ id: 'gone', rule: 'p_model' }, 20, 50, 'suggested'),
  ], 1));
  const [s1, s2] = r.suggestions;
  assert.deepEqual(s1.races.map((x) => x.winner), ['suggested', 'baseline', 'tie'], 's1 races in order');
  assert.deepEqual(s2.races.map((x) => x.winner), ['suggested'], 's2 race');
  assert.deepEqual(r.raceTally('p_model'), { suggestedWon: 2, baselineWon: 1, ties: 1, total: 4 }, 'p_model tally');
  assert.deepEqual(r.raceTally('plateau_noise'), { suggestedWon: 1, baselineWon: 0, ties: 0, total: 1 }, 'plateau_noise tally');
  assert.deepEqual(r.raceTally('instability'), { suggestedWon: 0, baselineWon: 0, ties: 0, total: 0 }, 'a rule never raced');
  r.raceTally('p_model').total = 99;
  assert.equal(r.raceTally('p_model').total, 4, 'the tally handed out is a copy');
  assert.equal(r.pendingSuggestions().length, 2, 'a race leaves its suggestion pending');
  r.apply(stamp(Array.from({ length: 600 }, (_, i) => synthRace({ id: 's1', rule: 'p_model' }, 30 + i, 10, i % 3 === 0 ? 'baseline' : 'suggested')), 100));
  assert.equal(r.races.length, 500, 'the run\'s race list is bounded');
  assert.equal(s1.races.length, 20, 'so is a suggestion\'s');
  assert.equal(s1.races.at(-1)!.step, 629, 'the latest kept');
  assert.deepEqual(r.raceTally('p_model'), { suggestedWon: 2 + 400, baselineWon: 1 + 200, ties: 1, total: 604 }, 'the tally counts every race');
});

test('calibration text says how the rule\'s races went, or that there were none; race steps are 1..RACE_MAX_STEPS', () => {
  assert.equal(calibrationText('p_model', { suggestedWon: 0, baselineWon: 0, ties: 0, total: 0 }), 'not raced yet (no mode model suggestion raced in this run)');
  assert.equal(calibrationText('p_model', { suggestedWon: 2, baselineWon: 1, ties: 0, total: 3 }), 'races: suggested won 2 of 3 (mode model suggestions in this run)');
  assert.equal(calibrationText('plateau_noise', { suggestedWon: 1, baselineWon: 1, ties: 2, total: 4 }), 'races: suggested won 1 of 4, 2 ties (noise-bound plateau suggestions in this run)');
  assert.deepEqual(parseRaceSteps(' 50 '), { ok: true, steps: 50 });
  assert.deepEqual(parseRaceSteps(String(RACE_MAX_STEPS)), { ok: true, steps: RACE_MAX_STEPS });
  for (const bad of ['', '0', '-3', '2.5', 'ten', String(RACE_MAX_STEPS + 1)]) {
    const v = parseRaceSteps(bad);
    assert.ok(!v.ok && v.message === `race steps must be a whole number from 1 to ${RACE_MAX_STEPS}; got "${bad}"`, `"${bad}" refused: ${JSON.stringify(v)}`);
  }
});

test('the p-model chart: the curve and band on the grid, the marked p values on the curve, nulls off it', () => {
  // By hand: the curve is 3, 1, 2 at p = −0.5, 0, 0.5; linear between, so 1.5 at 0.25 and 2 at −0.25.
  const point = (p: number, loss: number) => ({ p, loss, residual: loss / 2, noise: loss / 2, low: loss - 0.1, high: loss + 0.1 });
  const record = {
    kind: 'p_model', seq: 1, t: 0, step: 300, currentP: 0.25, scheduleP: { start: 0.25, end: -0.25 }, horizonSteps: 40,
    layers: [{ layer: 'l0', rows: 4, cols: 6, directions: [{ rank: 0, sigma: 1, curvature: 2, gradient: 0.1, noiseVariance: 0.01 }], curvatureVsSigma: { slope: 1.9, intercept: 0.1, r2: 0.95 }, noiseVsCurvature: { slope: 0.7, intercept: -1, r2: 0.5 }, recommendedP: -0.125 }],
    curve: [point(0.5, 2), point(-0.5, 3), point(0, 1)],
    recommendedP: 0, confidence: 0.8, crossCheck: [], crossCheckBestP: 0.75, microbatches: 8, microbatchSize: 16, costMs: 1234, overheadPct: 7.5,
  } satisfies RecordOf<'p_model'>;
  assert.equal(lossAt(record.curve, 0.25), 1.5, 'between grid points');
  assert.equal(lossAt(record.curve, -0.5), 3, 'on a grid point');
  assert.equal(lossAt(record.curve, 0.75), null, 'beyond the grid');
  const d = pModelChartData(record);
  const _ = null;
  assert.deepEqual(d.columns, [
    [-0.5, -0.25, 0, 0.25, 0.5, 0.75],
    [3, _, 1, _, 2, _],
    [2.9, _, 0.9, _, 1.9, _],
    [3.1, _, 1.1, _, 2.1, _],
    [_, _, _, 1.5, _, _],
    [_, 2, 1, 1.5, _, _],
    [_, _, 1, _, _, _],
    [_, _, _, _, _, _],
  ]);
  assert.deepEqual(d.markers, [0.25, 0, 0.75], 'the p in force, the recommendation, the cross-check\'s best');
  assert.equal(d.summary, 'Expected loss after the next 40 steps for 3 values of p from -0.5 to 0.5: lowest 1 at p = 0; recommended p = 0 (confidence 80%); p in force 0.25 (expected loss 1.5); the schedule goes 0.25 → -0.25 over the horizon; the cross-check prefers p = 0.75.');
  assert.equal(pModelCaption(record), 'Mode model at step 300: recommends p = 0 with confidence 80% (share of bootstrap replicates whose best p is within one grid step) over the next 40 steps; 1 direction in 1 layer, 8 microbatches of 16 held-out examples; this probe 1234 ms, all probes so far 7.5% of training time.');
  assert.deepEqual(pModelLayerRows(record), [['l0', '4×6', '1', '1.9', '0.95', '0.7', '0.5', '-0.125']]);
});

test('a data-parallel run: the store keeps the last per-rank step times and the Overview names the slowest rank', () => {
  const r = new RunStore('a');
  r.apply([step(1, 0)]);
  assert.equal(r.ranks, null, 'one process: no ranks');
  assert.equal(ranksText(r.ranks, undefined), '1');
  r.apply([{ ...step(2, 1), worldSize: 3, rankStepMs: [40, 55.5, 38] } as LogRecord, step(3, 2)]);
  assert.deepEqual(r.ranks, { step: 1, worldSize: 3, rankStepMs: [40, 55.5, 38] }, 'a step without ranks keeps the last that had them');
  assert.equal(ranksText(r.ranks, 3), '3 · slowest rank 1: 55.5 ms/step (fastest rank 2: 38 ms) at step 2');
  assert.ok(validateLogRecord({ ...step(4, 3), worldSize: 2, rankStepMs: [1, 2] }).ok, 'the protocol takes the fields');
  assert.ok(!validateLogRecord({ ...step(4, 3), worldSize: 0, rankStepMs: [1] }).ok, 'a world of 0 ranks is refused');
  // Logs written since: the times come in a rank_times record of their own, a boundary after the step's.
  r.apply([step(5, 3), { seq: 6, t: 1, kind: 'rank_times', step: 3, worldSize: 2, rankStepMs: [12, 20.25] } as LogRecord]);
  assert.deepEqual(r.ranks, { step: 3, worldSize: 2, rankStepMs: [12, 20.25] });
  assert.equal(ranksText(r.ranks, 2), '2 · slowest rank 1: 20.25 ms/step (fastest rank 0: 12 ms) at step 4');
  const times = { seq: 7, t: 1, kind: 'rank_times', step: 4, worldSize: 2, rankStepMs: [1, 2] };
  assert.ok(validateLogRecord(times).ok, 'the protocol takes rank_times');
  assert.ok(!validateLogRecord({ ...times, worldSize: 1 }).ok, 'one process has no rank_times');
  assert.ok(!validateLogRecord({ ...times, rankStepMs: [1, -2] }).ok, 'a negative time is refused');
});

test('a data-parallel run with both noise estimators: the chart shows the ranks estimate until the microbatch one comes, then only that', () => {
  const r = new RunStore('a');
  const noise = (seq: number, stepN: number, bSimple: number, estimator?: 'ranks' | 'microbatches') =>
    ({ seq, t: 1, kind: 'noise', step: stepN, layer: null, bSimple, batchSize: 64, ...(estimator ? { estimator, ...(estimator === 'ranks' ? { ranks: 2 } : {}) } : {}) }) as LogRecord;
  r.apply([noise(1, 0, 17.9, 'ranks'), noise(2, 10, 18, 'ranks')]);
  assert.deepEqual([...r.model.noiseScale.y.slice(0, r.model.noiseScale.length)], [17.9, 18], 'the ranks estimate alone');
  r.apply([noise(3, 20, 16), noise(4, 20, 17.5, 'ranks'), noise(5, 30, 16.5, 'microbatches')]);
  assert.deepEqual([...r.model.noiseScale.y.slice(0, r.model.noiseScale.length)], [16, 16.5], 'replaced by the microbatch estimate; later ranks records ignored');
  for (const seq of [1, 4]) assert.ok(validateLogRecord(noise(seq, 0, 1, 'ranks')).ok, 'the protocol takes estimator and ranks');
});
