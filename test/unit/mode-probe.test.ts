// trainer/advisor/mode-probe.ts against numpy (test/fixtures/generate_mode_probe.py): σ, the chosen ranks,
// the mean gradient component g and its microbatch variance c, the curvature along each singular direction,
// the cross-check's scores, and the recommendation equal to the mode model's on numpy's exact numbers; then
// the advisor runner on a tiny real run: a valid `p_model` record, the layers taking turns under the cap on
// Hessian-vector products, and exactly the gradients that cap allows.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  crossCheck,
  logSpacedRanks,
  meanAndVariance,
  measureLayer,
  nonFinitePath,
  planLayers,
  recommendFromModes,
  splitScore,
  type LayerModes,
  type ModeContext,
} from '../../trainer/advisor/mode-probe.js';
import { recommendPJoint, type DirectionMeasurement } from '../../trainer/advisor/mode-model.js';
import type { Landscape, Theta } from '../../trainer/diagnostics/index.js';
import type { RecordOf } from '../../common/protocol.js';
import { readRunLog, RunLog } from '../../common/run-folder/log.js';
import { AdvisorRunner } from '../../trainer/run/advisor-runner.js';
import { startSession } from '../../trainer/run/session.js';
import { Trainer } from '../../trainer/run/trainer.js';
import type { Workload, WorkloadBatch } from '../../trainer/run/workload.js';
import { assertAbove, assertBelow } from '../helpers/bounds.js';
import { loadF32, loadF64, loadIndex, type ArrayRef } from '../helpers/fixtures.js';
import { tinyMlpConfig, tinyRunParts } from '../helpers/tiny-run.js';
import { SLOW_TEST } from '../helpers/wait.js';

type FixtureDirection = DirectionMeasurement;
interface FixtureLayer {
  name: string;
  rows: number;
  cols: number;
  scale: number;
  x: ArrayRef;
  y: ArrayRef;
  weight: ArrayRef;
  source: ArrayRef;
  gradientNorm: number;
  directions: FixtureDirection[];
}
interface Fixture {
  samples: number;
  microbatches: number;
  microbatchSize: number;
  directionsPerLayer: number;
  damping: number;
  currentP: number;
  layers: FixtureLayer[];
  crossCheck: { p: number; gdA: number; gdB: number; dHd: number; score: number }[];
  crossCheckBestP: number;
}

const f = loadIndex<{ model: Fixture }>('mode-probe').model;
const data = f.layers.map((l) => ({ ...l, xs: loadF64('mode-probe', l.x), ys: loadF64('mode-probe', l.y) }));

/**
 * The fixture's least-squares model over the samples [lo, hi): exact in float64, gradients handed out in
 * float32 like a model's. Σ_l 1/(2n) Σ_n ‖W_l x − y‖².
 */
function leastSquares(lo: number, hi: number): Landscape {
  const n = hi - lo;
  const residuals = (t: Theta) =>
    data.map((l) => {
      const w = t[l.name];
      const r = new Float64Array(n * l.rows);
      for (let s = 0; s < n; s++) {
        for (let i = 0; i < l.rows; i++) {
          let v = -l.ys[(lo + s) * l.rows + i];
          for (let j = 0; j < l.cols; j++) v += w[i * l.cols + j] * l.xs[(lo + s) * l.cols + j];
          r[s * l.rows + i] = v;
        }
      }
      return r;
    });
  return {
    names: data.map((l) => l.name),
    shapes: Object.fromEntries(data.map((l) => [l.name, [l.rows, l.cols]])),
    async loss(t) {
      return residuals(t).reduce((sum, r) => sum + r.reduce((a, v) => a + v * v, 0), 0) / (2 * n);
    },
    async gradient(t) {
      const rs = residuals(t);
      const grads: Theta = {};
      data.forEach((l, k) => {
        const g = new Float64Array(l.rows * l.cols);
        for (let s = 0; s < n; s++) {
          for (let i = 0; i < l.rows; i++) {
            const r = rs[k][s * l.rows + i] / n;
            for (let j = 0; j < l.cols; j++) g[i * l.cols + j] += r * l.xs[(lo + s) * l.cols + j];
          }
        }
        grads[l.name] = Float32Array.from(g);
      });
      return { loss: await this.loss(t), grads };
    },
  };
}

const theta: Theta = Object.fromEntries(f.layers.map((l) => [l.name, loadF32('mode-probe', l.weight)]));
const probeLayers = () => f.layers.map((l) => ({ name: l.name, rows: l.rows, cols: l.cols, scale: l.scale, source: loadF32('mode-probe', l.source) }));
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

async function measured(): Promise<{ modes: LayerModes[]; microGrads: Theta[] }> {
  const whole = leastSquares(0, f.samples);
  const m = f.microbatchSize;
  const microGrads: Theta[] = [];
  for (let k = 0; k < f.microbatches; k++) microGrads.push((await leastSquares(k * m, (k + 1) * m).gradient(theta)).grads);
  const modes: LayerModes[] = [];
  for (const l of probeLayers()) modes.push(await measureLayer(whole, theta, l, microGrads.map((g) => g[l.name]), f.directionsPerLayer, 7));
  return { modes, microGrads };
}

describe('the mode probe against numpy', () => {
  test('log-spaced ranks: distinct, from 0 to rank − 1, all of them when k ≥ rank; bad input refused', () => {
    assert.deepEqual(logSpacedRanks(12, 5), [0, 1, 2, 5, 11]);
    // 6^(i/4) rounds to 1, 2, 2, 4, 6: the repeated 2 is pushed up to the next free rank.
    assert.deepEqual(logSpacedRanks(6, 5), [0, 1, 2, 3, 5]);
    assert.deepEqual(logSpacedRanks(3, 5), [0, 1, 2]);
    // numpy's log_spaced_ranks(64, 12) in generate_mode_probe.py.
    assert.deepEqual(logSpacedRanks(64, 12), [0, 1, 2, 3, 4, 6, 9, 13, 20, 29, 43, 63]);
    for (const [r, k] of [[1000, 16], [64, 63], [7, 6]]) {
      const ranks = logSpacedRanks(r, k);
      assert.equal(new Set(ranks).size, k, `${k} distinct ranks of ${r}`);
      assert.deepEqual([ranks[0], ranks[k - 1]], [0, r - 1]);
      assert.ok(ranks.every((x, i) => i === 0 || x > ranks[i - 1]), 'ascending');
    }
    assert.throws(() => logSpacedRanks(0, 3), /rankCount must be a positive integer, got 0/);
    assert.throws(() => logSpacedRanks(5, 2.5), /k must be a positive integer, got 2.5/);
  });

  test('round-robin under the cap: every layer when it fits, otherwise the next share in turn', () => {
    assert.deepEqual(planLayers(3, 12, 36, 2), { indices: [0, 1, 2], next: 0 });
    assert.deepEqual(planLayers(5, 12, 24, 0), { indices: [0, 1], next: 2 });
    assert.deepEqual(planLayers(5, 12, 24, 4), { indices: [4, 0], next: 1 });
    assert.deepEqual(planLayers(5, 12, 5, 3), { indices: [3], next: 4 }, 'a cap below one layer still measures one');
    assert.deepEqual(planLayers(0, 12, 24, 0), { indices: [], next: 0 });
  });

  test('σ, the ranks, g, c and the curvature per direction equal numpy on an exact least-squares Hessian', async () => {
    const { modes } = await measured();
    for (const [i, l] of f.layers.entries()) {
      const got = modes[i];
      assert.deepEqual(got.directions.map((d) => d.rank), l.directions.map((d) => d.rank), `${l.name}: the ranks`);
      assert.equal(got.rankCount, Math.min(l.rows, l.cols));
      for (const [j, want] of l.directions.entries()) {
        const d = got.directions[j];
        const at = `${l.name} rank ${want.rank}`;
        // σ: the same float32 matrix decomposed in float64 by both (measured agreement ~1e-15).
        assertBelow(rel(d.sigma, want.sigma), 1e-9, `${at} σ ${d.sigma} vs ${want.sigma}`);
        // The curvature: a central difference of float32 gradients, round-off amplified by 1/ε (~1e-3 of θ's scale).
        assertBelow(rel(d.curvature, want.curvature), 1e-4, `${at} curvature ${d.curvature} vs ${want.curvature}`);
        // g and c from float32 gradients: absolute error ~1e-7 of the gradient's norm per component.
        assertBelow(Math.abs(d.gradient - want.gradient), 1e-5 * l.gradientNorm, `${at} g ${d.gradient} vs ${want.gradient}`);
        assertBelow(rel(d.noiseVariance, want.noiseVariance), 1e-4, `${at} c ${d.noiseVariance} vs ${want.noiseVariance}`);
      }
    }
  });

  test('the recommendation is the mode model\'s on numpy\'s exact numbers (same horizon, noise basis and samples)', async () => {
    const { modes } = await measured();
    const ctx: ModeContext = { lrs: new Array(50).fill(0.02), currentP: f.currentP, stepsTaken: 100, normalisation: 'frobenius', damping: f.damping, microbatchSize: f.microbatchSize, microbatches: f.microbatches, batchSize: 32 };
    const got = recommendFromModes(modes, ctx)!;
    const want = recommendPJoint(
      f.layers.map((l) => ({
        directions: l.directions,
        rankCount: Math.min(l.rows, l.cols),
        noise: { kind: 'perBatch', batchSize: f.microbatchSize },
        gradientSamples: f.samples,
        batchSize: 32,
        lrs: new Array(50).fill(0.02 * l.scale),
        currentP: f.currentP,
        stepsTaken: 100,
        normalisation: 'frobenius',
        damping: f.damping,
      })),
    );
    assert.deepEqual(got.layers.map((l) => l.layer), f.layers.map((l) => l.name));
    assert.equal(got.recommendation.p, want.p);
    assert.deepEqual(got.recommendation.layers.map((l) => l.p), want.layers.map((l) => l.p));
    // The measured inputs differ from numpy's by the tolerances above; the expected losses follow them.
    for (const [i, c] of want.curve.entries()) {
      for (const key of ['loss', 'low', 'high'] as const) assertBelow(rel(got.recommendation.curve[i][key], c[key]), 1e-3, `curve p=${c.p} ${key}: ${got.recommendation.curve[i][key]} vs ${c[key]}`);
    }
    assertBelow(Math.abs(got.recommendation.confidence - want.confidence), 1e-12, 'confidence');
  });

  test('a layer without three directions of positive curvature is left out; none fittable gives null', () => {
    const good: LayerModes = { layer: 'a', rows: 4, cols: 4, scale: 1, step: 0, rankCount: 4, directions: f.layers[0].directions.slice(0, 3).map((d, i) => ({ ...d, rank: i })) };
    const flat: LayerModes = { ...good, layer: 'b', directions: good.directions.map((d, i) => (i === 0 ? { ...d, curvature: -1 } : d)) };
    const ctx: ModeContext = { lrs: [0.02], currentP: 0, stepsTaken: 1, normalisation: 'frobenius', damping: 1e-3, microbatchSize: 4, microbatches: 8, batchSize: 32 };
    assert.deepEqual(recommendFromModes([good, flat], ctx)!.layers.map((l) => l.layer), ['a']);
    assert.equal(recommendFromModes([flat], ctx), null);
  });

  test('the cross-check: g_Aᵀd, g_Bᵀd, dᵀHd and (g_Aᵀd)(g_Bᵀd)/(dᵀHd) per candidate equal numpy, and its argmax', async () => {
    const { microGrads } = await measured();
    const half = f.microbatches / 2;
    const mean = (gs: Theta[]): Theta => Object.fromEntries(f.layers.map((l) => [l.name, Float32Array.from(gs[0][l.name], (_, i) => gs.reduce((s, g) => s + g[l.name][i], 0) / gs.length)]));
    const result = await crossCheck(leastSquares(0, f.samples), theta, probeLayers(), mean(microGrads.slice(0, half)), mean(microGrads.slice(half)), f.crossCheck.map((c) => c.p), { damping: f.damping, maxGain: null, normalization: 'frobenius' });
    for (const [i, want] of f.crossCheck.entries()) {
      const got = result.points[i];
      assert.equal(got.p, want.p);
      for (const key of ['gdA', 'gdB'] as const) assertBelow(rel(got[key], want[key]), 1e-5, `p=${want.p} ${key}: ${got[key]} vs ${want[key]}`);
      for (const key of ['dHd', 'score'] as const) assertBelow(rel(got[key], want[key]), 1e-4, `p=${want.p} ${key}: ${got[key]} vs ${want[key]}`);
    }
    assert.equal(result.bestP, f.crossCheckBestP);
  });

  test('small pieces: the split score without positive curvature, the unbiased variance, the non-finite finder', () => {
    assert.equal(splitScore(2, 3, 4), 1.5);
    assert.equal(splitScore(2, 3, 0), null);
    assert.equal(splitScore(2, 3, -1), null);
    assert.deepEqual(meanAndVariance([1, 2, 3, 6]), { mean: 3, variance: 14 / 3 });
    assert.throws(() => meanAndVariance([1]), /needs two or more values, got 1/);
    assert.equal(nonFinitePath({ a: [1, { b: 2 }], c: Float32Array.of(1, 2) }), null);
    assert.equal(nonFinitePath({ a: [1, { b: NaN }] }), 'a[1].b');
    assert.equal(nonFinitePath({ c: Float64Array.of(1, Infinity) }), 'c[1]');
  });
});

/** The workload with every loss evaluation counted by batch size (the probe's whole batch vs its microbatches). */
function counting(workload: Workload): { workload: Workload; calls: Map<number, number> } {
  const calls = new Map<number, number>();
  return {
    calls,
    workload: {
      ...workload,
      loss: (b: WorkloadBatch) => {
        calls.set(b.size, (calls.get(b.size) ?? 0) + 1);
        return workload.loss(b);
      },
    },
  };
}

describe('the mode probe in the advisor runner', () => {
  test('a valid p_model record every probeEvery steps; the layers take turns under the HVP cap, which bounds the gradients taken', SLOW_TEST, async () => {
    const steps = 15;
    const config = tinyMlpConfig({ name: 'mode-probe', steps, checkpointEvery: 1000, optimizer: { type: 'dynmuon', lr: 0.02, mode: 'exact', schedule: { type: 'constant', p: 0 } } });
    const parts = await tinyRunParts(config);
    const dir = mkdtempSync(join(tmpdir(), 'muonscope-mode-probe-'));
    const path = join(dir, 'log.ndjson');
    const log = new RunLog(path);
    const trainer = new Trainer(
      { runId: 'mp', totalSteps: steps, evalEvery: 100, checkpointEvery: 1000, checkpointDir: join(dir, 'ck'), diagnosticsEvery: 1000, diagnosticsAdaptive: false, diagnosticsBudgetPct: 10 },
      parts.workload,
      parts.optimizer,
      log,
      0,
    );
    const probeEvery = 5;
    const microbatches = 4;
    const directions = 6;
    const maxHvps = 8; // one layer's 6 directions fit, two layers' 12 do not: one layer per probe
    const counted = counting(parts.workload);
    const runner = new AdvisorRunner(counted.workload, parts.optimizer, log, { mode: 'suggest', probeEvery, probeBatches: 1, probeDirections: directions, probeMicrobatches: microbatches, probeMaxHvps: maxHvps, cooldownSteps: 50, maxAge: 100, autoMinConfidence: 0.5 }, async () => undefined, null);
    trainer.observers.push(runner);
    await trainer.run();
    runner.dispose();
    log.close();
    parts.workload.dispose();

    const records = readRunLog(path).records; // every record was validated against the schema when appended
    const alerts = records.filter((r) => r.kind === 'alert');
    assert.deepEqual(alerts, [], 'no probe alert');
    const probes = records.filter((r): r is RecordOf<'p_model'> => r.kind === 'p_model');
    assert.deepEqual(probes.map((p) => p.step), [4, 9, 14]);
    const matrixLayers = parts.optimizer.routes.filter((r) => r.route === 'matrix').map((r) => r.name);
    assert.ok(matrixLayers.length >= 2, `the MLP has two or more matrix layers: ${parts.optimizer.routes.map((r) => `${r.name}→${r.route}`)}`);
    // One layer measured per probe; the previous probe's (one period old) reused; older ones dropped.
    assert.deepEqual(probes.map((p) => p.layers.map((l) => l.layer)), [[matrixLayers[0]], matrixLayers.slice(0, 2), matrixLayers.length > 2 ? matrixLayers.slice(1, 3) : matrixLayers.slice(0, 2)]);
    for (const p of probes) {
      assert.equal(p.microbatches, microbatches);
      assert.equal(p.microbatchSize, config.batchSize / microbatches);
      assert.equal(p.horizonSteps, Math.min(probeEvery, steps - p.step - 1) || 1);
      assert.deepEqual(p.scheduleP, { start: 0, end: 0 });
      assert.equal(p.currentP, 0);
      assert.deepEqual(p.crossCheck.map((c) => c.p), [-0.5, -0.25, 0, 0.25, 0.5]);
      assert.ok(p.curve.some((c) => c.p === p.recommendedP), 'the recommendation is on the curve');
      for (const l of p.layers) assert.deepEqual(l.directions.map((d) => d.rank), logSpacedRanks(Math.min(l.rows, l.cols), directions));
    }
    // Whole-batch evaluations are two per Hessian-vector product: the capped curvature products (one
    // layer's 6) and the cross-check's five candidates; microbatch gradients one each.
    const probeCount = probes.length;
    assert.equal(counted.calls.get(config.batchSize), probeCount * 2 * (directions + 5), 'whole-batch gradients: 2 × (6 curvature + 5 cross-check) per probe');
    assert.equal(counted.calls.get(config.batchSize / microbatches), probeCount * microbatches, 'one gradient per microbatch');
  });

  test('the mode probe shares the diagnostics budget through a session: with 1% of training time only the first runs', SLOW_TEST, async () => {
    const config = tinyMlpConfig({
      name: 'mode-probe-budget',
      steps: 60,
      checkpointEvery: 1000,
      optimizer: { type: 'dynmuon', lr: 0.02, mode: 'exact' },
      diagnostics: { every: 1000, adaptive: true, budgetPct: 1 },
      advisor: { mode: 'suggest', probeEvery: 10, probeDirections: 4, probeMicrobatches: 4 },
    });
    const session = await startSession({ config, configDir: process.cwd(), runsRoot: mkdtempSync(join(tmpdir(), 'muonscope-mode-probe-')) });
    await session.done;
    const probes = readRunLog(session.paths.log).records.filter((r): r is RecordOf<'p_model'> => r.kind === 'p_model');
    assert.equal(probes.length, 1, `one probe, then over budget: ${probes.map((p) => `${p.step}: ${p.overheadPct.toFixed(1)}%`)}`);
    assert.equal(probes[0].microbatches, 4, 'the config\'s probeMicrobatches reaches the probe');
    for (const l of probes[0].layers) assert.equal(l.directions.length, 4, `${l.layer}: the config's probeDirections`);
    assertAbove(probes[0].overheadPct, 1, `its cost is reported as a share of training time: ${probes[0].overheadPct}%`);
  });
});
