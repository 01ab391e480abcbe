// trainer/diagnostics: spectral summaries on matrices with known spectra, finite-difference curvature
// against the exact Hessian of test/fixtures/generate_curvature.py (torch float64) (the noise
// estimators are in noise.test.ts), critical sharpness on a quadratic, the scheduler's
// budget, and the TF.js landscape's hygiene (variables restored, no tensors leaked).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { selectTfBackend } from '../../trainer/backend/tfjs-backend.js';
import {
  alignment,
  criticalSharpness,
  directionalCurvature,
  DiagnosticsScheduler,
  EXPENSIVE_DIAGNOSTICS,
  layerSpectra,
  orthogonalityError,
  orthogonalityErrorFromSpectrum,
  readTheta,
  restrictDirection,
  spectrumSummary,
  tfLandscape,
  hessianEigenvalues,
  updateRmsTheory,
  updateWeightRatio,
  curvatureAlongSingularDirections,
  curvatureVsSigmaFit,
  type DiagnosticName,
  type Direction,
  type Landscape,
  type Theta,
} from '../../trainer/diagnostics/index.js';
import { matmul, svd, transpose } from '../../trainer/linalg/index.js';
import { Mlp } from '../../trainer/models/mlp.js';
import type { MatrixStepInfo } from '../../trainer/optim/types.js';
import { loadF32, loadF64, loadIndex, type ArrayRef } from '../helpers/fixtures.js';
import { assertAbove, assertAtLeast, assertAtMost, assertBelow } from '../helpers/bounds.js';
import { randomMatrix } from '../helpers/random.js';

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

/** Q1·diag(σ)·Q2ᵀ (rows×cols) with Haar-ish orthonormal frames from the SVD of Gaussian matrices. */
function withSpectrum(rows: number, cols: number, sigmas: number[], seed: number): Float64Array {
  const k = Math.min(rows, cols);
  const q1 = svd(randomMatrix(rows, k, seed), rows, k).u;
  const q2 = svd(randomMatrix(cols, k, seed + 1), cols, k).u;
  const scaled = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) for (let j = 0; j < k; j++) scaled[i * k + j] = q1[i * k + j] * (sigmas[j] ?? 0);
  return matmul(scaled, transpose(q2, cols, k), rows, k, cols);
}

function summaryFromSigmas(s: number[]) {
  const max = Math.max(...s);
  const l1 = s.reduce((a, b) => a + b, 0);
  const l2 = s.reduce((a, b) => a + b * b, 0);
  const entropy = -s.filter((x) => x > 0).reduce((a, x) => a + (x / l1) * Math.log(x / l1), 0);
  return { sigmaMax: max, stableRank: l2 / max ** 2, effectiveRank: Math.exp(entropy), nuclearRank: l1 ** 2 / l2 };
}

function assertSummaryClose(actual: Record<string, number>, expected: Record<string, number>, tol: number, what: string) {
  for (const key of Object.keys(expected)) {
    assertBelow(rel(actual[key], expected[key]), tol, `${what} ${key}: ${actual[key]} vs ${expected[key]}`);
  }
}

describe('spectral summaries', () => {
  const sigmas = [5, 3, 2, 1, 0.5, 0.25, 0.1, 0.01];
  const rows = 12;
  const cols = 8;
  const x = withSpectrum(rows, cols, sigmas, 11);

  test('stable, effective and nuclear rank of a matrix with chosen σ in random frames (rel 1e-10)', () => {
    const { stats, spectra } = layerSpectra({
      name: 'w',
      rows,
      cols,
      G: x,
      M: x,
      O: x,
      W: x,
      deltaW: x,
      stepInfo: { name: 'w', p: 0, normPowP: 1, updateRms: 0.1, method: 'ns' },
      scale: 1,
    });
    assert.equal(spectra.exact, true);
    spectra.G.forEach((s, i) => assertBelow(Math.abs(s - sigmas[i]), 1e-12, `σ_${i}`));
    assertSummaryClose(stats.G, summaryFromSigmas(sigmas), 1e-10, 'G');
    const expectedOrth = Math.sqrt(sigmas.reduce((a, s) => a + (s * s - 1) ** 2, 0) / cols);
    assertBelow(rel(stats.orthogonalityError, expectedOrth), 1e-10, 'orthogonality error, rel. to the σ formula');
    assertBelow(rel(orthogonalityError(x, rows, cols), expectedOrth), 1e-10, 'direct (Gram) path');
    assertBelow(rel(orthogonalityError(transpose(x, rows, cols), cols, rows), expectedOrth), 1e-10, 'wide orientation');
    assertBelow(Math.abs(stats.alignment - 1), 1e-12, '|alignment − 1|');
    assert.equal(stats.updateWeightRatio, 1);
  });

  test('an exactly orthogonal O has orthogonality error 0 (abs 1e-12); Muon-like σ spread is reported raw', () => {
    const o = withSpectrum(6, 10, [1, 1, 1, 1, 1, 1], 3);
    assertBelow(orthogonalityError(o, 6, 10), 1e-12, 'orthogonality error of an orthogonal O');
    assert.equal(orthogonalityErrorFromSpectrum([1, 1, 1], 3), 0, 'orthogonality error from an all-ones spectrum');
    const ns = [1.15, 1.0, 0.85, 0.7];
    const expected = Math.sqrt(ns.reduce((a, s) => a + (s * s - 1) ** 2, 0) / 4);
    assertBelow(rel(orthogonalityErrorFromSpectrum(ns, 4), expected), 1e-14, 'orthogonality error from a spread spectrum, rel.');
  });

  test('zero matrices give zeros, never NaN (exact)', () => {
    const z = new Float64Array(6 * 4);
    assert.deepEqual(spectrumSummary(new Float64Array(4)), { sigmaMax: 0, stableRank: 0, effectiveRank: 0, nuclearRank: 0 });
    assert.deepEqual(spectrumSummary([], { frobenius: 0, shortSide: 4 }), { sigmaMax: 0, stableRank: 0, effectiveRank: 0, nuclearRank: 0 });
    assert.equal(alignment(z, z), 0);
    assert.equal(updateWeightRatio(z, z), 0);
    assert.equal(updateRmsTheory(0, 0, 1), 0);
    const { stats } = layerSpectra({
      name: 'z',
      rows: 6,
      cols: 4,
      G: z,
      M: z,
      O: z,
      W: z,
      deltaW: z,
      stepInfo: { name: 'z', p: 0, normPowP: 1, updateRms: 0, method: 'ns' },
      scale: 1,
    });
    for (const [k, v] of Object.entries(stats)) if (typeof v === 'number') assert.ok(Number.isFinite(v), `${k} = ${v}`);
    assert.equal(stats.orthogonalityError, 1, 'a zero O is as far from orthogonal as ‖I‖_F/sqrt(m)');
  });

  test('alignment of ±G and of an orthogonal pair (abs 1e-12); update RMS theory 1/sqrt(max(m, n))·scale (exact)', () => {
    const g = Float64Array.from(randomMatrix(5, 7, 2));
    assertBelow(Math.abs(alignment(g, g.map((v) => -3 * v)) + 1), 1e-12, '|alignment(G, −3G) + 1|');
    const a = new Float64Array([1, 0, 0, 0]);
    const b = new Float64Array([0, 2, 0, 0]);
    assert.equal(alignment(a, b), 0);
    assert.equal(updateRmsTheory(64, 256, 2), 2 / 16);
  });

  test('top-k + Frobenius: stable rank exact, flat tail recovered exactly, decaying tail read high (rel 1e-12)', () => {
    const n = 600;
    const k = 32;
    const flat = Array.from({ length: n }, (_, i) => (i < 4 ? 10 - i : i < k ? 5 - i / 10 : 1.5));
    const decaying = Array.from({ length: n }, (_, i) => 10 * Math.exp(-i / 40));
    for (const [name, s] of [
      ['flat', flat],
      ['decaying', decaying],
    ] as const) {
      const exact = summaryFromSigmas([...s]);
      const frobenius = Math.sqrt(s.reduce((a, x) => a + x * x, 0));
      const approx = spectrumSummary(s.slice(0, k), { frobenius, shortSide: n });
      assertBelow(rel(approx.stableRank, exact.stableRank), 1e-12, `${name} stable rank`);
      assert.equal(approx.sigmaMax, s[0]);
      if (name === 'flat') assertSummaryClose(approx, exact, 1e-12, name);
      else {
        assertAtLeast(approx.effectiveRank, exact.effectiveRank, `${name} effective rank, an upper estimate`);
        assertAtLeast(approx.nuclearRank, exact.nuclearRank, `${name} nuclear rank, an upper estimate`);
      }
    }
  });

  test('layerSpectra on the randomized path (short side above exactUpTo): stable rank and orthogonality exact (rel 1e-6)', () => {
    const sig = Array.from({ length: 30 }, (_, i) => 2 * Math.exp(-i / 5));
    const m = withSpectrum(40, 30, sig, 21);
    const step: MatrixStepInfo = { name: 'big', p: -0.25, normPowP: 1.7, updateRms: 0.05, method: 'exact', shapingRelError: 0.01 };
    const { stats, spectra } = layerSpectra({ name: 'big', rows: 40, cols: 30, G: m, M: m, O: m, W: m, deltaW: m, stepInfo: step, scale: 3, spectrum: { exactUpTo: 8, topK: 10 } });
    assert.equal(spectra.exact, false);
    assert.equal(spectra.G.length, 10);
    const exact = summaryFromSigmas(sig);
    assertBelow(rel(stats.W.stableRank, exact.stableRank), 1e-6, `stable rank ${stats.W.stableRank} vs ${exact.stableRank}, rel.`);
    assertBelow(rel(stats.W.sigmaMax, exact.sigmaMax), 1e-6, `σ_max ${stats.W.sigmaMax} vs ${exact.sigmaMax}, rel.`);
    const expectedOrth = Math.sqrt(sig.reduce((a, s) => a + (s * s - 1) ** 2, 0) / 30);
    assertBelow(rel(stats.orthogonalityError, expectedOrth), 1e-10, 'orthogonality error, rel. to the σ formula');
    assert.equal(stats.p, -0.25);
    assert.equal(stats.normPowP, 1.7);
    assert.equal(stats.shapingRelError, 0.01);
    assert.equal(stats.updateRmsTheory, 3 / Math.sqrt(40));
  });

  test('cost of layerSpectra on a 256×256 layer (reported)', (t) => {
    const mk = (seed: number) => randomMatrix(256, 256, seed, 0.05);
    const r = layerSpectra({
      name: 'w256',
      rows: 256,
      cols: 256,
      G: mk(1),
      M: mk(2),
      O: mk(3),
      W: mk(4),
      deltaW: mk(5),
      stepInfo: { name: 'w256', p: 0, normPowP: 1, updateRms: 0.06, method: 'ns' },
      scale: 1,
    });
    assert.equal(r.spectra.G.length, 256);
    t.diagnostic(`layerSpectra 256×256 (4 exact spectra + stats): ${r.costMs.toFixed(1)} ms`);
  });
});

// ---------- curvature on the fixture MLP ----------

interface ParamFixture {
  name: string;
  shape: number[];
  value: ArrayRef;
  grad: ArrayRef;
  direction: ArrayRef;
}
interface CurvatureIndex {
  model: { inputDim: number; hiddenDims: number[]; outputDim: number; batch: number };
  x: ArrayRef;
  y: ArrayRef;
  params: ParamFixture[];
  loss: number;
  topEigenvalue: number;
  /** np.linalg.eigh of the exact Hessian, ascending. */
  eigenvalues: number[];
  kappa: number;
  gradDotDirection: number;
  perLayer: Record<string, { topEigenvalue: number; kappa: number }>;
}

const SET = 'curvature';
const fx = loadIndex<CurvatureIndex>(SET);
const MATRICES = Object.keys(fx.perLayer);

describe('curvature (fixture MLP 6→8→3 tanh, exact Hessian from torch float64; TF.js cpu fp32 FD HVPs)', () => {
  let model: Mlp;
  let x: tf.Tensor2D;
  let y: tf.Tensor2D;
  let landscape: Landscape;
  let theta: Theta;
  let d: Direction;

  before(async () => {
    await selectTfBackend('cpu');
    model = new Mlp({ inputDim: 6, hiddenDims: [8], outputDim: 3, activation: 'tanh', seed: 1 });
    for (const p of fx.params) {
      const v = model.variables.find((w) => w.name === p.name)!;
      v.assign(tf.tensor(loadF32(SET, p.value), p.shape));
    }
    x = tf.tensor2d(loadF32(SET, fx.x), fx.x.shape as [number, number]);
    y = tf.tensor2d(loadF32(SET, fx.y), fx.y.shape as [number, number]);
    landscape = tfLandscape(model.variables, () => tf.mean(tf.square(tf.sub(model.forward(x), y))));
    theta = await readTheta(model.variables);
    d = Object.fromEntries(fx.params.map((p) => [p.name, loadF64(SET, p.direction)]));
  });

  after(() => {
    model.dispose();
    tf.dispose([x, y]);
  });

  test('the landscape reproduces torch loss and gradient (rel 1e-5)', async () => {
    const { loss, grads } = await landscape.gradient(theta);
    assertBelow(rel(loss, fx.loss), 1e-5, `loss ${loss} vs ${fx.loss}`);
    for (const p of fx.params) {
      const ref = loadF64(SET, p.grad);
      let num = 0;
      let den = 0;
      grads[p.name].forEach((g, i) => {
        num += (g - ref[i]) ** 2;
        den += ref[i] ** 2;
      });
      assertBelow(Math.sqrt(num / den), 1e-5, `${p.name} gradient`);
    }
  });

  test('landscape restores the variables and leaks no tensors, also when the loss throws (exact)', async () => {
    const before = tf.memory().numTensors;
    const moved = Object.fromEntries(Object.entries(theta).map(([k, v]) => [k, v.map((z) => z + 0.5)]));
    const l = await landscape.loss(moved);
    await landscape.gradient(moved);
    assert.notEqual(l, fx.loss);
    assert.equal(tf.memory().numTensors, before);
    for (const v of model.variables) assert.deepEqual(v.dataSync(), theta[v.name], v.name);
    const failing = tfLandscape(model.variables, () => {
      throw new Error('boom');
    });
    await assert.rejects(failing.gradient(moved), /boom/);
    await assert.rejects(failing.loss(moved), /boom/);
    await assert.rejects(landscape.loss({}), /no values/);
    assert.equal(tf.memory().numTensors, before);
    for (const v of model.variables) assert.deepEqual(v.dataSync(), theta[v.name], v.name);
  });

  test('Lanczos on FD HVPs: top 3 and most negative eigenvalue vs np.linalg.eigh of the exact Hessian', async (t) => {
    const exact = fx.eigenvalues;
    const n = exact.length;
    const norm = Math.max(Math.abs(exact[0]), Math.abs(exact[n - 1]));
    const nearest = (x: number) => Math.min(...exact.map((e) => Math.abs(e - x)));
    // 10 steps (the runner's budget): the top eigenvalue within 2% (the FD HVP's accuracy, as for κ), and every
    // pair flagged converged within its residual plus 1e-3·‖H‖ (Bauer–Fike, plus the FD operator's error).
    const short = await hessianEigenvalues(landscape, theta, null, { steps: 10, seed: 7 });
    t.diagnostic(`10 steps: top ${short.top.map((r) => `${r.value.toPrecision(5)} (res ${r.residual.toExponential(1)}${r.converged ? '' : ', not converged'})`).join(', ')}; bottom ${short.bottom.value.toPrecision(4)} (res ${short.bottom.residual.toExponential(1)}); exact top ${exact.slice(-3).reverse().map((e) => e.toPrecision(5)).join(', ')}, bottom ${exact[0].toPrecision(4)}; ${short.cost.gradientEvals} gradients, ${short.cost.ms.toFixed(1)} ms`);
    assert.equal(short.products, 10);
    assert.equal(short.cost.gradientEvals, 20);
    assert.ok(short.top[0].converged, `top Ritz value not converged: residual ${short.top[0].residual} vs tol ${short.tol}·‖H‖`);
    assertBelow(rel(short.top[0].value, exact[n - 1]), 0.02, `top eigenvalue ${short.top[0].value} vs ${exact[n - 1]}, rel.`);
    for (const r of [...short.top, short.bottom].filter((x) => x.converged)) assertBelow(nearest(r.value), r.residual + 1e-3 * norm, `converged Ritz value ${r.value}: distance to the spectrum`);
    // The whole Krylov space (n steps): the FD operator's spectrum, extremes within 1e-3·‖H‖ of exact, all converged.
    const full = await hessianEigenvalues(landscape, theta, null, { steps: n, seed: 7 });
    const got = [...full.top.map((r) => r.value), full.bottom.value];
    const want = [exact[n - 1], exact[n - 2], exact[n - 3], exact[0]];
    got.forEach((g, i) => assertBelow(Math.abs(g - want[i]), 1e-3 * norm, `full Lanczos eigenvalue ${i}: ${g} vs ${want[i]}`));
    assert.ok([...full.top, full.bottom].every((r) => r.converged), 'all converged with the whole space');
    for (const name of MATRICES) {
      const r = await hessianEigenvalues(landscape, theta, [name], { steps: 10, seed: 7 });
      const e = rel(r.top[0].value, fx.perLayer[name].topEigenvalue);
      t.diagnostic(`${name}: ${r.top[0].value} vs ${fx.perLayer[name].topEigenvalue} (rel ${e.toExponential(2)}), residual ${r.top[0].residual.toExponential(1)}`);
      assertBelow(e, 0.02, `${name} top eigenvalue ${r.top[0].value} vs ${fx.perLayer[name].topEigenvalue}, rel.`);
    }
    const again = await hessianEigenvalues(landscape, theta, null, { steps: 10, seed: 7 });
    assert.equal(again.top[0].value, short.top[0].value, 'deterministic for a seed');
  });

  test('directional curvature κ = dᵀHd/‖d‖² and gᵀd, whole model and per weight block, within 2% of exact', async (t) => {
    const whole = await directionalCurvature(landscape, theta, d);
    const e = rel(whole.kappa, fx.kappa);
    t.diagnostic(`whole model κ ${whole.kappa} vs ${fx.kappa} (rel ${e.toExponential(2)}), gᵀd rel ${rel(whole.gd, fx.gradDotDirection).toExponential(2)}, ${whole.cost.ms.toFixed(1)} ms`);
    assertBelow(e, 0.02, `whole-model κ ${whole.kappa} vs ${fx.kappa}, rel.`);
    assertBelow(rel(whole.gd, fx.gradDotDirection), 0.02, `gᵀd ${whole.gd} vs ${fx.gradDotDirection}, rel.`);
    assert.equal(whole.cost.gradientEvals, 2);
    if (whole.dHd > 0) assertBelow(rel(whole.etaStar!, whole.gd / whole.dHd), 1e-15, `η* ${whole.etaStar} vs gᵀd/dᵀHd ${whole.gd / whole.dHd}, rel.`);
    else assert.equal(whole.etaStar, null);
    for (const name of MATRICES) {
      const r = await directionalCurvature(landscape, theta, restrictDirection(d, [name]));
      const el = rel(r.kappa, fx.perLayer[name].kappa);
      t.diagnostic(`${name} κ ${r.kappa} vs ${fx.perLayer[name].kappa} (rel ${el.toExponential(2)})`);
      assertBelow(el, 0.02, `${name} κ ${r.kappa} vs ${fx.perLayer[name].kappa}, rel.`);
    }
    const zero = await directionalCurvature(landscape, theta, {});
    assert.deepEqual([zero.kappa, zero.etaStar, zero.cost.gradientEvals], [0, null, 0]);
  });

  test('curvature along singular directions u_i v_iᵀ equals the Hessian quadratic form (2%)', async (t) => {
    const name = 'mlp.layer0.weight';
    const [rows, cols] = fx.params.find((p) => p.name === name)!.shape;
    const m = randomMatrix(rows, cols, 5);
    const pairs = { rows, cols, ...svd(m, rows, cols) };
    const r = await curvatureAlongSingularDirections(landscape, theta, name, pairs, [0, 1, 5]);
    assert.equal(r.cost.gradientEvals, 6);
    const h = loadF64(SET, (loadIndex<{ hessian: ArrayRef }>(SET)).hessian);
    const n = Math.sqrt(h.length);
    const exact: [number, number][] = [];
    for (const dir of r.directions) {
      // The layer0.weight block comes first in the flattened parameters.
      const v = new Float64Array(n);
      const k = pairs.s.length;
      for (let a = 0; a < rows; a++) for (let b = 0; b < cols; b++) v[a * cols + b] = pairs.u[a * k + dir.index] * pairs.v[b * k + dir.index];
      let q = 0;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) q += v[i] * h[i * n + j] * v[j];
      t.diagnostic(`κ_${dir.index} = ${dir.kappa} vs ${q} (rel ${rel(dir.kappa, q).toExponential(2)})`);
      assertBelow(rel(dir.kappa, q), 0.02, `κ_${dir.index} ${dir.kappa} vs the quadratic form ${q}, rel.`);
      assert.equal(dir.sigma, pairs.s[dir.index]);
      exact.push([dir.sigma, q]);
    }
    // The GGᵀ ≈ αH test's log–log slope, against the one through the exact quadratic forms (least squares
    // written out here): κ within 2% moves ln κ by < 0.02, so the slope by < 0.04/ln(σ_max/σ_min) per point.
    const positive = exact.filter(([, q]) => q > 0);
    const fit = curvatureVsSigmaFit(r.directions);
    if (positive.length >= 2) {
      const xs = positive.map(([x]) => Math.log(x));
      const ys = positive.map(([, y]) => Math.log(y));
      const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
      const my = ys.reduce((a, b) => a + b, 0) / ys.length;
      const slope = xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) / xs.reduce((a, x) => a + (x - mx) ** 2, 0);
      const spread = Math.log(Math.max(...positive.map(([x]) => x)) / Math.min(...positive.map(([x]) => x)));
      t.diagnostic(`slope ${fit?.slope} vs exact ${slope}`);
      assertBelow(Math.abs(fit!.slope - slope), (2 * 0.04) / spread, 'log–log slope of κ against σ vs the exact Hessian\'s');
    }
    // Exact power laws: κ = 3σ² gives slope 2, r² 1; fewer than two distinct σ give no fit.
    const law = [0.5, 1, 2, 4].map((sigma, index) => ({ index, sigma, kappa: 3 * sigma ** 2 }));
    const exactFit = curvatureVsSigmaFit(law)!;
    assertBelow(Math.abs(exactFit.slope - 2), 1e-12, 'slope of an exact square law');
    assertBelow(Math.abs(exactFit.r2 - 1), 1e-12, 'r² of an exact law');
    assert.equal(curvatureVsSigmaFit([law[0], { ...law[0], index: 1 }, { index: 2, sigma: 3, kappa: -1 }]), null, 'one distinct σ with positive κ: no fit');
  });

  test('critical sharpness on the fixture model stays within 10 forward passes (reported)', async (t) => {
    const { grads } = await landscape.gradient(theta);
    const r = await criticalSharpness(landscape.loss, theta, grads, { initialStep: 0.01 });
    assertAtMost(r.cost.lossEvals, 10, 'forward passes');
    assert.ok(r.etaC !== null && r.etaC > r.bracket[0] && r.etaC < r.bracket[1]!, `η_c ${r.etaC} inside its bracket ${JSON.stringify(r.bracket)}`);
    t.diagnostic(`η_c ${r.etaC}, λ_c ${r.lambdaC} (top eigenvalue ${fx.topEigenvalue}), ${r.cost.lossEvals} passes, ${r.cost.ms.toFixed(1)} ms`);
  });
});

// ---------- critical sharpness on a quadratic ----------

describe('critical sharpness on a quadratic L = ½θᵀAθ', () => {
  const eig = [4, 1, 0.25, 0.05];
  const quadLoss = async (th: Theta) => 0.5 * th.w.reduce((a, v, i) => a + eig[i] * v * v, 0);

  test('along an eigenvector: η_c = 2/λ, λ_c = λ (rel 1e-4, ≤ 10 passes from a step 1000× too small)', async () => {
    for (const [i, lambda] of eig.entries()) {
      const th = { w: Float32Array.from(eig, (_, j) => (j === i ? 1 : 0)) };
      const g = { w: Float64Array.from(th.w, (v, j) => eig[j] * v) };
      const r = await criticalSharpness(quadLoss, th, g, { initialStep: 2e-3 / lambda });
      assertAtMost(r.cost.lossEvals, 10, 'forward passes');
      assertBelow(rel(r.etaC!, 2 / lambda), 1e-4, `λ=${lambda}: η_c ${r.etaC}`);
      assertBelow(rel(r.lambdaC!, lambda), 1e-4, `λ=${lambda}: λ_c ${r.lambdaC}, rel.`);
    }
  });

  test('along a mixed gradient: λ_c = gᵀAg/gᵀg (rel 1e-4); an ascent direction has no η_c', async () => {
    const th = { w: new Float32Array([0.3, -1, 2, 0.5]) };
    const g = { w: Float64Array.from(th.w, (v, j) => eig[j] * v) };
    const gAg = g.w.reduce((a, v, j) => a + eig[j] * v * v, 0);
    const gg = g.w.reduce((a, v) => a + v * v, 0);
    const r = await criticalSharpness(quadLoss, th, g, { initialStep: 10 });
    assertBelow(rel(r.lambdaC!, gAg / gg), 1e-4, `${r.lambdaC} vs ${gAg / gg}`);
    const up = await criticalSharpness(quadLoss, th, { w: g.w.map((v) => -v) }, { initialStep: 1 });
    assert.equal(up.etaC, null);
    assert.equal(up.cost.lossEvals, 10);
  });
});

// ---------- scheduler ----------

/** Runs the scheduler against a fixed cost model; returns how often each diagnostic ran, and the overhead. */
function simulate(s: DiagnosticsScheduler, steps: number, stepMs: number, cost: (n: DiagnosticName) => number, afterStep: (step: number) => void = () => undefined) {
  const runs = new Map<DiagnosticName, number[]>();
  for (let step = 0; step < steps; step++) {
    s.recordStep(stepMs);
    for (const name of s.due(step)) {
      s.recordRun(name, step, cost(name));
      runs.set(name, [...(runs.get(name) ?? []), step]);
    }
    afterStep(step);
  }
  return runs;
}

describe('diagnostics scheduler', () => {
  test('expensive diagnostics costing 10× a step are spaced so the overhead from step 0 stays within the 10% budget once the first probes are paid back (planned ≤ 10%)', () => {
    // A starvation cap (64·K) above the plan's spacing (28·K here), so that only the budget decides.
    const s = new DiagnosticsScheduler({ every: 20, adaptive: true, budgetPct: 10 }, { maxSpacing: 64 });
    const cost = (n: DiagnosticName) => (n === 'spectra' ? 0.2 : 10);
    let worst = { excess: -Infinity, step: -1, measured: 0 };
    const runs = simulate(s, 100_000, 1, cost, (step) => {
      // Once the first probes (5 × 10 ms by step 80) are paid back, the overhead counted from step 0 exceeds
      // the budget by at most the spectra (0.2) that run every K regardless; an expensive run waits until
      // its cost fits.
      if (step < 1000) return;
      const excess = s.measuredOverheadPct() - (10 + (100 * 0.2) / (step + 1));
      if (excess > worst.excess) worst = { excess, step, measured: s.measuredOverheadPct() };
    });
    assertAtMost(s.plannedOverheadPct()!, 10, `planned ${s.plannedOverheadPct()}`);
    assertAtMost(worst.excess, 1e-9, `measured ${worst.measured}% at step ${worst.step}`);
    assertAtMost(s.measuredOverheadPct(), 10.1, `measured ${s.measuredOverheadPct()}`);
    assert.equal(runs.get('spectra')!.length, 100_000 / 20, 'cheap ones every K');
    for (const name of EXPENSIVE_DIAGNOSTICS) {
      const r = runs.get(name)!;
      const window = s.spacing(name) * 20;
      const gaps = r.slice(1).map((v, i) => v - r[i]);
      // The first run is a probe between K-step points; every later one is on a K-step point.
      assert.ok(window > 20 && gaps.every((g) => g >= window) && r.slice(1).every((v) => v % 20 === 0), `${name}: runs at ${r.slice(0, 4)}…, gaps ${[...new Set(gaps)]} against the planned ${window}`);
      // Waiting for the budget delays runs, but paying back the first probes costs only a few of them.
      assertAtLeast(r.length, 0.98 * (100_000 / window), `${name} ran ${r.length} times; the plan allows ${100_000 / window}`);
    }
  });

  test('cheap expensive diagnostics run every K when the budget allows; costly ones take the rest (water-filling)', () => {
    const s = new DiagnosticsScheduler({ every: 10, adaptive: true, budgetPct: 10 });
    simulate(s, 5000, 10, (n) => (n === 'noise' ? 0.5 : n === 'spectra' ? 1 : 40));
    assert.equal(s.spacing('noise'), 1);
    assert.equal(s.spacing('spectra'), 1);
    assertAbove(s.spacing('topEigenvalue'), 1, 'top-eigenvalue spacing (the costly one is thinned)');
    assertAtMost(s.plannedOverheadPct()!, 10, 'planned overhead %');
  });

  test('no diagnostic starves: at 1000× a step each still runs by the first K-step point N·K steps after its last (N = 32 default)', () => {
    const s = new DiagnosticsScheduler({ every: 5, adaptive: true, budgetPct: 10 });
    const runs = simulate(s, 5 * 32 * 10, 1, (n) => (n === 'spectra' ? 0.1 : 1000));
    for (const name of EXPENSIVE_DIAGNOSTICS) {
      const r = runs.get(name)!;
      assertAtLeast(r.length, 9, `${name} ran ${r.length} times`);
      // By the first K-step point N·K after the previous run (the first run may sit between K-step points).
      r.slice(1).forEach((v, i) => assertAtMost(v, Math.ceil((r[i] + 5 * 32) / 5) * 5, `${name} ran at ${v} after ${r[i]}`));
    }
  });

  test('external work that shares the budget (the p-probe) counts in the overhead, and the diagnostics plan for what it leaves', () => {
    const s = new DiagnosticsScheduler({ every: 20, adaptive: true, budgetPct: 10 }, { maxSpacing: 64 });
    // 5 ms of p-probe every 100 steps of 1 ms: 5% of training time, half the budget.
    simulate(s, 100_000, 1, (n) => (n === 'spectra' ? 0.2 : 10), (step) => {
      if (step % 100 === 99) s.recordExternal('pProbe', 5);
    });
    assertAtMost(s.measuredOverheadPct(), 10, `diagnostics and probe together: ${s.measuredOverheadPct()}%`);
    assertAtLeast(s.measuredOverheadPct(), 9.5, `the budget is used: ${s.measuredOverheadPct()}%`);
    assertAtMost(s.plannedOverheadPct()!, 5, `the diagnostics' own plan takes the other half: ${s.plannedOverheadPct()}%`);
    assert.equal(s.costSummary().costsMs.pProbe, 5, 'the probe is in the cost summary');
  });

  test('only the diagnostics the run can take are scheduled: with curvature off, noise alone is probed, on K-step points, and takes the whole budget', () => {
    const s = new DiagnosticsScheduler({ every: 10, adaptive: true, budgetPct: 10 }, { expensive: ['noise'] });
    const runs = simulate(s, 1000, 1, (n) => (n === 'spectra' ? 0.1 : 0.5));
    assert.deepEqual([...runs.keys()].sort(), ['noise', 'spectra']);
    const noise = runs.get('noise')!;
    assert.ok(noise.every((step) => step % 10 === 0), `noise at ${noise.slice(0, 5)}…`);
    // A window's budget, 10% of 10 ms less the spectra's 0.1 ms, fits the 0.5 ms noise estimate every K.
    assert.equal(s.spacing('noise'), 1);
    s.configure({ every: 10, adaptive: false, budgetPct: 10 });
    assert.deepEqual(s.due(10), ['spectra', 'noise']);
  });

  test('before its cost is known, each expensive diagnostic is probed alone, spread over the first K steps; after that only K-step points count', () => {
    const s = new DiagnosticsScheduler({ every: 100, adaptive: true, budgetPct: 10 });
    const ran: [number, DiagnosticName[]][] = [];
    for (let step = 0; step < 200; step++) {
      s.recordStep(1);
      const due = s.due(step);
      for (const name of due) s.recordRun(name, step, name === 'spectra' ? 0.1 : 2);
      if (due.length) ran.push([step, due]);
    }
    // K/5 = 20 apart; at step 100 the five probes (10 ms) have overspent the budget (10% of 100 ms), so
    // only the cheap spectra run.
    assert.deepEqual(ran, [
      [0, ['spectra', 'noise']],
      [20, ['criticalSharpness']],
      [40, ['singularCurvature']],
      [60, ['topEigenvalue']],
      [80, ['curvature']],
      [100, ['spectra']],
    ]);
  });

  test('unmeasured expensive diagnostics are probed one per diagnostics step; non-adaptive runs all every K; K changes at runtime', () => {
    const s = new DiagnosticsScheduler({ every: 10, adaptive: true, budgetPct: 10 });
    s.recordStep(1);
    assert.deepEqual(s.due(0), ['spectra', 'noise']);
    assert.deepEqual(s.due(5), []);
    s.configure({ every: 5, adaptive: false, budgetPct: 10 });
    assert.deepEqual(s.due(5), ['spectra', ...EXPENSIVE_DIAGNOSTICS]);
    assert.deepEqual(s.due(7), []);
    assert.throws(() => s.configure({ every: 0, adaptive: true, budgetPct: 10 }), /every/);
    assert.deepEqual(s.current, { every: 5, adaptive: false, budgetPct: 10 });
    s.recordRun('spectra', 5, 3);
    assert.deepEqual(s.costSummary(), { costsMs: { spectra: 3 }, overheadPct: 300, every: 5 });
  });
});
