// Step stability in Muon's units (docs/algorithms.md §4) against numpy on a quadratic
// (test/fixtures/generate_stability.py): η* before the step, the edge along the update, η*_after = η* − η,
// the overshoot sign g_{t+1}ᵀd_t; Lanczos on an explicit matrix against np.linalg.eigh; the overshoot
// tracker on TF.js gradient descent.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { selectTfBackend } from '../../trainer/backend/tfjs-backend.js';
import { directionalCurvature, dotDirections, stepStability, type Landscape, type Theta } from '../../trainer/diagnostics/index.js';
import { OvershootTracker, OvershootWindow } from '../../trainer/diagnostics/overshoot.js';
import { lanczos } from '../../trainer/linalg/lanczos.js';
import { loadF64, loadIndex, type ArrayRef } from '../helpers/fixtures.js';
import { assertBelow } from '../helpers/bounds.js';

interface Case {
  gd: number;
  dHd: number;
  kappa: number;
  etaStar: number;
  steps: { eta: number; edge: number; etaStarAfter: number; gdAfter: number; lossRose: boolean }[];
}
interface StabilityIndex {
  n: number;
  A: ArrayRef;
  b: number[];
  theta: number[];
  direction: number[];
  eigenvalues: number[];
  descent: Case;
  uphill: Case;
}

const SET = 'stability';
const fx = loadIndex<StabilityIndex>(SET);
const A = loadF64(SET, fx.A);
const n = fx.n;
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

function matvec(v: ArrayLike<number>): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i] += A[i * n + j] * v[j];
  return out;
}

/** L = ½θᵀAθ − bᵀθ as the diagnostics see a model: float32 points and gradients, one block "w". */
const quadratic: Landscape = {
  names: ['w'],
  shapes: { w: [n] },
  loss: async (t) => {
    const w = t.w;
    const aw = matvec(w);
    return w.reduce((s, x, i) => s + 0.5 * x * aw[i] - fx.b[i] * x, 0);
  },
  gradient: async (t) => {
    const g = matvec(t.w).map((x, i) => x - fx.b[i]);
    return { loss: await quadratic.loss(t), grads: { w: Float32Array.from(g) } };
  },
};

/** Relative tolerance of FD-HVP quantities on a quadratic: exact up to the fp32 rounding of θ ± εv and of the gradients. */
const FD_TOL = 1e-4;

describe('step stability on a quadratic (numpy float64 reference)', () => {
  const theta: Theta = { w: Float32Array.from(fx.theta) };
  const d = { w: Float64Array.from(fx.direction) };
  const dd = dotDirections(d, d);

  test('before the step: gᵀd, dᵀHd, κ_d, η* and the edge 2·gᵀd/(η‖d‖²) match numpy; η/η* > 2 exactly when the loss rises', async () => {
    const c = await directionalCurvature(quadratic, theta, d);
    const ref = fx.descent;
    assertBelow(rel(c.gd, ref.gd), FD_TOL, `gᵀd ${c.gd} vs ${ref.gd}`);
    assertBelow(rel(c.dHd, ref.dHd), FD_TOL, `dᵀHd ${c.dHd} vs ${ref.dHd}`);
    for (const s of ref.steps) {
      const st = stepStability(c.gd, c.dHd, dd, s.eta);
      assertBelow(rel(st.kappa, ref.kappa), FD_TOL, `κ_d ${st.kappa} vs ${ref.kappa}`);
      assertBelow(rel(st.etaStar!, ref.etaStar), FD_TOL, `η* ${st.etaStar} vs ${ref.etaStar}`);
      assertBelow(rel(st.edge, s.edge), FD_TOL, `edge at η = ${s.eta}: ${st.edge} vs ${s.edge}`);
      // The two forms of the test agree, and both say what the loss did (numpy).
      assert.equal(st.kappa > st.edge, st.etaRatio! > 2, `κ_d > edge ⇔ η/η* > 2 at η = ${s.eta}`);
      assert.equal(st.etaRatio! > 2, s.lossRose, `η/η* = ${st.etaRatio} at η = ${s.eta}; numpy says the loss ${s.lossRose ? 'rose' : 'fell'}`);
    }
  });

  test('after the step: η*_after = η*_before − η (numpy, and exactly so), and g_{t+1}ᵀd < 0 exactly when η > η*', async () => {
    const before = await directionalCurvature(quadratic, theta, d);
    for (const s of fx.descent.steps) {
      const after = await directionalCurvature(quadratic, { w: Float32Array.from(theta.w, (x, i) => x - s.eta * d.w[i]) }, d);
      // η*_after crosses zero near η = η*, so compare on the scale of η*.
      assertBelow(Math.abs(after.etaStar! - s.etaStarAfter) / fx.descent.etaStar, FD_TOL, `η*_after at η = ${s.eta}: ${after.etaStar} vs numpy ${s.etaStarAfter}`);
      assertBelow(Math.abs(after.etaStar! - (before.etaStar! - s.eta)) / fx.descent.etaStar, FD_TOL, `η*_after ${after.etaStar} vs η*_before − η ${before.etaStar! - s.eta}`);
      assert.equal(after.gd < 0, s.gdAfter < 0, `overshoot sign at η = ${s.eta} (η* = ${fx.descent.etaStar}): gᵀd after ${after.gd} vs numpy ${s.gdAfter}`);
      assert.equal(after.gd < 0, s.eta > fx.descent.etaStar, `g_{t+1}ᵀd < 0 ⇔ η > η* at η = ${s.eta}`);
    }
  });

  test('uphill (gᵀd < 0): η* is still recorded, negative, and η/η* is negative', async () => {
    const up = { w: d.w.map((x) => -x) };
    const c = await directionalCurvature(quadratic, theta, up);
    assertBelow(rel(c.etaStar!, fx.uphill.etaStar), FD_TOL, `η* ${c.etaStar} vs ${fx.uphill.etaStar}`);
    const st = stepStability(c.gd, c.dHd, dd, fx.uphill.steps[0].eta);
    assert.ok(st.etaRatio! < 0, `η/η* ${st.etaRatio}`);
    assertBelow(rel(st.edge, fx.uphill.steps[0].edge), FD_TOL, `edge ${st.edge} vs ${fx.uphill.steps[0].edge}`);
    assert.ok(fx.uphill.steps.every((s) => s.lossRose), 'numpy: every step uphill raises the loss');
  });

  test('no positive curvature along d: η* and η/η* are null, κ_d and the edge are still given', () => {
    const st = stepStability(0.25, -0.5, 4, 0.125);
    assert.deepEqual(st, { kappa: -0.125, etaStar: null, edge: 1, etaRatio: null });
  });
});

describe('Lanczos on an explicit matrix (np.linalg.eigh reference)', () => {
  const exact = fx.eigenvalues;
  const mv = async (v: Float64Array) => matvec(v);
  const start = Float64Array.from({ length: n }, (_, i) => Math.cos(1 + 3 * i));

  test('the whole Krylov space (n steps) gives the whole spectrum to 1e-12·‖A‖, all converged', async () => {
    const r = await lanczos(mv, start, { steps: n });
    const norm = Math.max(...exact.map(Math.abs));
    assert.equal(r.products, n);
    r.ritz.forEach((p, i) => assertBelow(Math.abs(p.value - exact[i]), 1e-12 * norm, `Ritz value ${i}: ${p.value} vs ${exact[i]}`));
    assert.ok(r.ritz.every((p) => p.converged && p.residual < 1e-10 * norm), `residuals ${r.ritz.map((p) => p.residual)}`);
  });

  test('fewer steps: each Ritz value lies within its residual of an eigenvalue (the residual is a true bound), inside the spectrum', async () => {
    const r = await lanczos(mv, start, { steps: 6 });
    assert.equal(r.products, 6);
    for (const p of r.ritz) {
      const dist = Math.min(...exact.map((e) => Math.abs(e - p.value)));
      assertBelow(dist, p.residual * (1 + 1e-9) + 1e-12, `Ritz value ${p.value}: distance ${dist} to the spectrum vs residual ${p.residual}`);
    }
    // Ritz values interlace from inside: never beyond the extreme eigenvalues.
    assert.ok(r.ritz.at(-1)!.value <= exact.at(-1)! + 1e-12 && r.ritz[0].value >= exact[0] - 1e-12, 'inside the spectrum');
    // Evenly spaced eigenvalues are Lanczos's hard case: 6 steps do not pin the top one, and it says so.
    assert.equal(r.ritz.at(-1)!.converged, false, `top Ritz value ${r.ritz.at(-1)!.value} vs ${exact.at(-1)}, residual ${r.ritz.at(-1)!.residual}`);
  });
});

describe('overshoot tracker: cos(g_{t+1}, d_t) on TF.js gradient descent', () => {
  before(async () => {
    await selectTfBackend('cpu');
  });

  test('the window counts negative cosines over its last `size` steps', () => {
    const w = new OvershootWindow(4);
    assert.equal(w.fraction, null);
    for (const c of [0.5, -0.1, -0.2, 0.3, -0.4]) w.push(c);
    assert.deepEqual([w.count, w.fraction, w.latest], [4, 0.75, -0.4]);
    w.push(NaN);
    assert.deepEqual([w.count, w.latest], [4, -0.4]);
  });

  test('the latest cosine and the fraction match float64 gradient descent on ½wᵀAw − bᵀw, at a small and a large lr (1e-4)', async () => {
    for (const lr of [0.05, 0.39]) {
      const w = tf.variable(tf.tensor1d(fx.theta), true, 'w');
      const tracker = new OvershootTracker([w]);
      const before = tf.memory().numTensors;
      let ref = Float64Array.from(fx.theta);
      let prevDelta: Float64Array | null = null;
      const expected: number[] = [];
      for (let step = 0; step < 8; step++) {
        const g = matvec(ref).map((x, i) => x - fx.b[i]);
        if (prevDelta) expected.push(dot(g, prevDelta) / Math.sqrt(dot(g, g) * dot(prevDelta, prevDelta)));
        const gt = tf.tensor1d(Float32Array.from(g));
        await tracker.beforeStep({ w: gt });
        const next = tf.tidy(() => tf.sub(w, tf.mul(gt, lr))) as tf.Tensor1D;
        w.assign(next);
        tf.dispose([next, gt]);
        tracker.afterStep();
        prevDelta = g.map((x) => lr * x);
        ref = ref.map((x, i) => x - prevDelta![i]);
      }
      tracker.dispose();
      assert.equal(tf.memory().numTensors, before, `no tensors leaked at lr = ${lr}`);
      // Only the last update's cosine is kept: compare the latest, and the fraction against the float64 signs.
      assertBelow(Math.abs(tracker.window.latest! - expected.at(-1)!), 1e-4, `latest cosine ${tracker.window.latest} vs ${expected.at(-1)} at lr = ${lr}`);
      assert.equal(tracker.window.fraction, expected.filter((c) => c < 0).length / expected.length, `fraction at lr = ${lr}: float64 cosines ${expected.map((c) => c.toFixed(3))}`);
      w.dispose();
    }
  });
});

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
