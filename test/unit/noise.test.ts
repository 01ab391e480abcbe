// Gradient-noise estimators (trainer/diagnostics/noise.ts) against test/fixtures/generate_noise.py: a linear
// regression whose |G|² and tr(Σ) are exact (numpy), scipy's noncentral-t CDF and the SNR intervals it implies.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gaussian, mulberry32 } from '../../trainer/data/random.js';
import { bSimpleOf, directionSnr, microbatchNoise, noncentralTCdf, NoiseWindow, snrInterval, twoBatchEstimate } from '../../trainer/diagnostics/noise.js';
import { svd } from '../../trainer/linalg/index.js';
import { loadF32, loadIndex, type ArrayRef } from '../helpers/fixtures.js';
import { assertBelow } from '../helpers/bounds.js';
import { randomMatrix } from '../helpers/random.js';

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

interface NoiseIndex {
  d: number;
  noiseVariance: number;
  microbatches: number;
  microbatchSize: number;
  seeds: number;
  delta: number[];
  exact: { gradSq: number; traceSigma: number };
  numpyMean: { gradSq: number; traceSigma: number };
  numpyStandardError: { gradSq: number; traceSigma: number };
  shown: { micro: ArrayRef; gradSq: number; traceSigma: number }[];
  nctCdf: [number, number, number, number][];
  snrIntervals: [number, number, number, number][];
}
const SET = 'noise';
const fx = loadIndex<NoiseIndex>(SET);

/** K microbatch mean gradients of the fixture's linear regression at w* + Δ, g = x(xᵀΔ − ε). */
function regressionMicrobatches(rng: () => number): Record<string, Float32Array>[] {
  const { d, microbatches: k, microbatchSize: b, noiseVariance } = fx;
  return Array.from({ length: k }, () => {
    const g = new Float64Array(d);
    for (let n = 0; n < b; n++) {
      const x = Array.from({ length: d }, () => gaussian(rng));
      const residual = x.reduce((a, xi, i) => a + xi * fx.delta[i], 0) - Math.sqrt(noiseVariance) * gaussian(rng);
      x.forEach((xi, i) => (g[i] += (xi * residual) / b));
    }
    return { w: Float32Array.from(g) };
  });
}

describe('two-batch B_simple (McCandlish et al. appendix A)', () => {
  test('reproduces numpy on the fixture microbatches (rel 1e-9)', () => {
    for (const [i, s] of fx.shown.entries()) {
      const flat = loadF32(SET, s.micro);
      const micro = Array.from({ length: fx.microbatches }, (_, k) => ({ w: flat.slice(k * fx.d, (k + 1) * fx.d) }));
      const got = microbatchNoise(micro, fx.microbatchSize).overall;
      assertBelow(rel(got.gradSq, s.gradSq), 1e-9, `set ${i}: |G|² ${got.gradSq} vs numpy ${s.gradSq}, rel.`);
      assertBelow(rel(got.traceSigma, s.traceSigma), 1e-9, `set ${i}: tr Σ ${got.traceSigma} vs numpy ${s.traceSigma}, rel.`);
    }
  });

  test('unbiased: over 4000 seeds the means of |G|² and tr(Σ) lie within 3 standard errors of the exact values (numpy too)', (t) => {
    const rng = mulberry32(13);
    const samples = Array.from({ length: 4000 }, () => microbatchNoise(regressionMicrobatches(rng), fx.microbatchSize).overall);
    for (const key of ['gradSq', 'traceSigma'] as const) {
      const xs = samples.map((s) => s[key]);
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      const se = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1) / xs.length);
      const z = (mean - fx.exact[key]) / se;
      const zNumpy = (fx.numpyMean[key] - fx.exact[key]) / fx.numpyStandardError[key];
      t.diagnostic(`${key}: mean ${mean.toFixed(4)} ± ${se.toFixed(4)} vs exact ${fx.exact[key].toFixed(4)} (${z.toFixed(2)} SE); numpy ${zNumpy.toFixed(2)} SE`);
      assertBelow(Math.abs(z), 3, `${key}: TS mean ${mean} vs exact ${fx.exact[key]}, standard errors.`);
      assertBelow(Math.abs(zNumpy), 3, `${key}: numpy mean ${fx.numpyMean[key]} vs exact ${fx.exact[key]}, standard errors.`);
    }
    // The window's ratio of means converges to the exact tr(Σ)/|G|².
    const w = new NoiseWindow(samples.length);
    samples.forEach((s, i) => w.add(i, s));
    const want = fx.exact.traceSigma / fx.exact.gradSq;
    assertBelow(rel(w.average()!.bSimple!, want), 0.05, `window B_simple ${w.average()!.bSimple} vs exact ${want}, rel.`);
  });

  test('exact on expected norms; B_simple is null while |G|² ≤ 0 (exact)', () => {
    const s = twoBatchEstimate(2 + 30 / 4, 4, 2 + 30 / 64, 64);
    assertBelow(Math.abs(s.gradSq - 2), 1e-12, `|G|² ${s.gradSq} vs 2, abs.`);
    assertBelow(Math.abs(s.traceSigma - 30), 1e-12, `tr Σ ${s.traceSigma} vs 30, abs.`);
    assert.equal(bSimpleOf({ gradSq: -1, traceSigma: 5 }), null);
    assert.equal(bSimpleOf({ gradSq: 2, traceSigma: -1 }), 0);
    assert.throws(() => twoBatchEstimate(1, 8, 1, 8), /0 < b < B/);
  });
});

describe('noise window in steps', () => {
  test('holds the measurements of the last W steps, averages |G|² and tr(Σ) before dividing, and survives JSON (exact)', () => {
    const w = new NoiseWindow(100);
    assert.equal(w.average(), null, 'empty before any measurement');
    w.add(0, { gradSq: 1, traceSigma: 10 });
    w.add(60, { gradSq: 3, traceSigma: 30 });
    assert.deepEqual(w.average(), { gradSq: 2, traceSigma: 20, bSimple: 10, count: 2 });
    w.add(120, { gradSq: -1, traceSigma: 40 });
    // Step 0 is 120 steps old: out. Mean |G|² (3 − 1)/2 = 1, tr Σ 35.
    assert.deepEqual(w.average(), { gradSq: 1, traceSigma: 35, bSimple: 35, count: 2 });
    const back = NoiseWindow.fromJSON(JSON.parse(JSON.stringify(w)), 100);
    assert.deepEqual(back.average(), w.average());
    assert.deepEqual(NoiseWindow.fromJSON(w.toJSON(), 50).average(), { gradSq: -1, traceSigma: 40, bSimple: null, count: 1 }, 'a narrower window applies at once');
    assert.throws(() => NoiseWindow.fromJSON({ gradSqEma: 1 }, 100), /not a saved state/);
  });
});

describe('per-direction SNR with its interval', () => {
  test('noncentral-t CDF matches scipy (abs 1e-6) and the 95% intervals match scipy\'s root solves (abs 1e-5)', () => {
    for (const [t, dof, delta, want] of fx.nctCdf) assertBelow(Math.abs(noncentralTCdf(t, dof, delta) - want), 1e-6, `CDF(${t}; ${dof}, ${delta}) ${noncentralTCdf(t, dof, delta)} vs scipy ${want}, abs.`);
    for (const [t, dof, low, high] of fx.snrIntervals) {
      const got = snrInterval(t, dof);
      assertBelow(Math.abs(got.low - low), 1e-5, `low(${t}, ${dof}) ${got.low} vs scipy ${low}, abs.`);
      assertBelow(Math.abs(got.high - high), 1e-5, `high(${t}, ${dof}) ${got.high} vs scipy ${high}, abs.`);
    }
  });

  test('covers a true batch SNR of 2 with K = 8 in 95% ± 3 standard errors of 600 draws', (t) => {
    const rng = mulberry32(21);
    const k = 8;
    const mu = 2 / Math.sqrt(k);
    let covered = 0;
    const trials = 600;
    for (let i = 0; i < trials; i++) {
      const xs = Array.from({ length: k }, () => mu + gaussian(rng));
      const mean = xs.reduce((a, b) => a + b, 0) / k;
      const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (k - 1));
      const { low, high } = snrInterval((Math.sqrt(k) * Math.abs(mean)) / std, k - 1);
      if (low <= 2 && 2 <= high) covered++;
    }
    const rate = covered / trials;
    const tol = 3 * Math.sqrt((0.95 * 0.05) / trials);
    t.diagnostic(`coverage ${rate.toFixed(3)} (want 0.95 ± ${tol.toFixed(3)})`);
    assertBelow(Math.abs(rate - 0.95), tol, `coverage ${rate} vs 0.95, abs.`);
  });

  test('batch SNR √K·|mean|/std along u_i v_iᵀ from microbatches with known mean and std (rel 1e-4), inside its interval', () => {
    const rows = 10;
    const cols = 6;
    const pairs = { rows, cols, ...svd(randomMatrix(rows, cols, 8), rows, cols) };
    const means = [2, -0.5, 0.1];
    const stds = [0.5, 1, 2];
    const K = 16;
    const rng = mulberry32(4);
    // Standardised noise: sample mean exactly 0 and sample std exactly 1 per direction.
    const z = means.map(() => {
      const raw = Array.from({ length: K }, () => gaussian(rng));
      const m = raw.reduce((a, b) => a + b, 0) / K;
      const s = Math.sqrt(raw.reduce((a, b) => a + (b - m) ** 2, 0) / (K - 1));
      return raw.map((r) => (r - m) / s);
    });
    const kk = pairs.s.length;
    const micro = Array.from({ length: K }, (_, k) => {
      const g = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          let v = 0;
          means.forEach((m, i) => (v += (m + stds[i] * z[i][k]) * pairs.u[r * kk + i] * pairs.v[c * kk + i]));
          // A component along u_4 v_5ᵀ, orthogonal to every u_i v_iᵀ, must not leak into the projections.
          v += 3 * pairs.u[r * kk + 4] * pairs.v[c * kk + 5];
          g[r * cols + c] = v;
        }
      }
      return g;
    });
    directionSnr(micro, pairs, [0, 1, 2]).forEach((o, i) => {
      const want = (Math.sqrt(K) * Math.abs(means[i])) / stds[i];
      assertBelow(Math.abs(o.mean - means[i]), 1e-5 * Math.max(1, Math.abs(means[i])), `mean_${i} ${o.mean}`);
      assertBelow(rel(o.std, stds[i]), 1e-5, `std_${i} ${o.std}`);
      assertBelow(rel(o.snr, want), 1e-4, `snr_${i} ${o.snr} vs ${want}`);
      const ref = snrInterval(want, K - 1);
      assertBelow(Math.abs(o.low - ref.low) + Math.abs(o.high - ref.high), 1e-3, `interval_${i} [${o.low}, ${o.high}] vs [${ref.low}, ${ref.high}]`);
      assert.ok(o.low <= o.snr && o.snr <= o.high, `snr_${i} ${o.snr} inside [${o.low}, ${o.high}]`);
    });
  });
});
