// The native (onnxruntime) and TF.js kernel providers against float64 references.
// Tolerance: 2e-5 relative Frobenius error for the Newton–Schulz family (fp32 round-off amplified by the
// iteration; measured ~1e-6 at these sizes), 1e-6 for plain products.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { selectTfBackend } from '../../trainer/backend/tfjs-backend.js';
import { isMuonscopeError } from '../../common/errors.js';
import { loadKernels, type MatrixKernels } from '../../trainer/kernels/index.js';
import { newtonSchulzReference } from '../../trainer/linalg/newton-schulz.js';
import { NS_COEFFICIENT_SETS, expandNsSteps, type NsStep } from '../../trainer/linalg/ns-coefficients.js';
import { shapeExact } from '../../trainer/linalg/shaping.js';
import { singularValues } from '../../trainer/linalg/svd.js';
import { cachedShapingFit, shapeMatmulOnly } from '../../trainer/optim/shaping-matmul.js';
import { assertAtMost, assertBelow } from '../helpers/bounds.js';
import { randomMatrix, relFrobenius } from '../helpers/random.js';

const NS_TOL = 2e-5;
const SHAPES: [number, number][] = [
  [64, 32],
  [32, 64],
  [48, 48],
];

function matmul64(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p];
      for (let j = 0; j < n; j++) out[i * n + j] += aip * b[p * n + j];
    }
  return out;
}

function transpose64(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j];
  return out;
}

/** Σ w_k X_k over unnormalised iterates of X/divisor, in float64 (short side first). */
function nsCombinationReference(x: Float32Array, rows: number, cols: number, steps: NsStep[], weights: number[], divisor: number): Float64Array {
  const flip = rows > cols;
  const [m, n] = flip ? [cols, rows] : [rows, cols];
  let xk = (flip ? transpose64(x, rows, cols) : Float64Array.from(x)).map((v) => v / divisor);
  const sum = xk.map((v) => v * weights[0]);
  steps.forEach(([a, b, c], k) => {
    const gram = matmul64(xk, transpose64(xk, m, n), m, n, m);
    const gram2 = matmul64(gram, gram, m, m, m);
    const poly = gram.map((v, i) => b * v + c * gram2[i]);
    const px = matmul64(poly, xk, m, m, n);
    xk = xk.map((v, i) => a * v + px[i]);
    for (let i = 0; i < sum.length; i++) sum[i] += weights[k + 1] * xk[i];
  });
  return flip ? transpose64(sum, m, n) : sum;
}

const providers: Record<string, MatrixKernels> = {};

before(async () => {
  await selectTfBackend('cpu');
  providers.onnxruntime = (await loadKernels('onnxruntime-cpu')).kernels;
  providers.tfjs = (await loadKernels('tfjs')).kernels;
});

for (const providerName of ['onnxruntime', 'tfjs']) {
  describe(`${providerName} kernels`, () => {
    for (const [setName, set] of Object.entries(NS_COEFFICIENT_SETS)) {
      test(`orthogonalize (${setName}) matches the float64 reference within ${NS_TOL}`, async () => {
        for (const [rows, cols] of SHAPES) {
          const x = randomMatrix(rows, cols, rows * 7 + cols);
          const steps = expandNsSteps(set, 5);
          const got = await providers[providerName].orthogonalize({ rows, cols, x, steps, eps: 1e-7, normSafety: set.normSafety });
          const want = newtonSchulzReference(x, rows, cols, steps, 1e-7, set.normSafety);
          assertBelow(relFrobenius(got, want), NS_TOL, `${rows}x${cols}: ${relFrobenius(got, want)}`);
        }
      });
    }

    test(`muonStep = momentum, Nesterov, Newton–Schulz and decoupled decay (float64 reference, ${NS_TOL})`, async () => {
      for (const [rows, cols] of SHAPES) {
        for (const nesterov of [true, false]) {
          const [w, g, b] = [1, 2, 3].map((s) => randomMatrix(rows, cols, s * 100 + rows, 0.1));
          const steps = expandNsSteps(NS_COEFFICIENT_SETS.keller, 5);
          const args = { rows, cols, weight: w, grad: g, momentumBuffer: b, lr: 0.02, weightDecay: 0.1, momentum: 0.95, nesterov, scale: 1.5, steps, eps: 1e-7, normSafety: 1 };
          const out = await providers[providerName].muonStep(args);
          const buf = Array.from(b, (v, i) => v + 0.05 * (g[i] - v));
          const u = nesterov ? buf.map((v, i) => g[i] + 0.95 * (v - g[i])) : buf;
          const o = newtonSchulzReference(Float64Array.from(u), rows, cols, steps, 1e-7, 1);
          const wNew = Array.from(w, (v, i) => v * (1 - 0.02 * 0.1) - 0.02 * 1.5 * o[i]);
          assertBelow(relFrobenius(out.momentumBuffer, buf), 1e-6, 'momentum buffer, rel. Frobenius');
          assertBelow(relFrobenius(out.update, o), NS_TOL, `update ${relFrobenius(out.update, o)}`);
          assertBelow(relFrobenius(out.weight, wNew), 1e-6, `weight ${relFrobenius(out.weight, wNew)}`);
          assert.deepEqual(Array.from(w.slice(0, 3)), Array.from(randomMatrix(rows, cols, 100 + rows, 0.1).slice(0, 3)), 'inputs untouched');
        }
      }
    });

    test(`nsCombination matches a float64 combination of iterates within ${NS_TOL}, with a given divisor or σ_max found in the kernel`, async () => {
      const steps: NsStep[] = Array(6).fill([2.5, -2.5, 1]);
      const weights = [0.3, -0.2, 0.5, 0.1, -0.4, 0.7, 0.2];
      for (const [rows, cols] of SHAPES) {
        const x = randomMatrix(rows, cols, 11 + rows);
        const divisor = singularValues(x, rows, cols)[0] * 1.02;
        const want = nsCombinationReference(x, rows, cols, steps, weights, divisor);
        const given = await providers[providerName].nsCombination({ rows, cols, x, steps, weights, scale: { divisor } });
        assertBelow(relFrobenius(given, want), NS_TOL, `${rows}x${cols} given divisor: ${relFrobenius(given, want)}`);
        // 60 power iterations on X·Xᵀ of a Gaussian matrix: σ_max to ~1e-6, so the same result within the tolerance.
        const found = await providers[providerName].nsCombination({ rows, cols, x, steps, weights, scale: { sigmaMargin: 1.02, powerIterations: 60 } });
        assertBelow(relFrobenius(found, want), NS_TOL, `${rows}x${cols} σ_max in kernel: ${relFrobenius(found, want)}`);
      }
      const zero = await providers[providerName].nsCombination({ rows: 4, cols: 6, x: new Float32Array(24), steps, weights, scale: { sigmaMargin: 1.02, powerIterations: 5 } });
      assert.ok(zero.every((v) => v === 0), 'a zero matrix stays zero (no 0/0)');
    });

    test('matmul and gram match float64 within 1e-6', async () => {
      const a = randomMatrix(13, 17, 5);
      const b = randomMatrix(17, 9, 6);
      assertBelow(relFrobenius(await providers[providerName].matmul(a, b, 13, 17, 9), matmul64(a, b, 13, 17, 9)), 1e-6, '13×17 · 17×9 matmul, rel. Frobenius');
      for (const [rows, cols] of SHAPES) {
        const x = randomMatrix(rows, cols, 9);
        const flip = rows > cols;
        const xs = flip ? transpose64(x, rows, cols) : Float64Array.from(x);
        const [m, n] = flip ? [cols, rows] : [rows, cols];
        const want = matmul64(xs, transpose64(xs, m, n), m, n, m);
        assertBelow(relFrobenius(await providers[providerName].gram(x, rows, cols), want), 1e-6, `${rows}x${cols} gram, rel. Frobenius`);
      }
    });
  });
}

describe('matmul-only shaping', () => {
  test('tracks exact damped shaping U·φ_p(S)·Vᵀ within the fit error it reports', async () => {
    for (const p of [-0.5, -0.25, 0, 0.25, 0.5, 1]) {
      const fit = cachedShapingFit(p, 1e-3);
      for (const [rows, cols] of SHAPES) {
        const x = randomMatrix(rows, cols, 77 + rows);
        const { shaped, relError } = await shapeMatmulOnly(providers.onnxruntime, x, rows, cols, p, 1e-3);
        assert.equal(relError, fit.maxRelError);
        const exact = shapeExact(x, rows, cols, p, 1e-3);
        // Compare directions: DynMuon rescales both to Muon's update size.
        const scale = Math.hypot(...exact) / Math.hypot(...shaped);
        const err = relFrobenius(Array.from(shaped, (v) => v * scale), exact);
        assertAtMost(err, fit.maxRelError + 1e-4, `p=${p} ${rows}x${cols}: ${err} > fit bound ${fit.maxRelError}`);
      }
    }
  });

  test('the fit is exact at p = 1 and within 5% for |p| ≤ 0.25', () => {
    assertBelow(cachedShapingFit(1, 1e-3).maxRelError, 1e-9, 'fit error at p = 1');
    for (const p of [-0.25, 0, 0.25]) assertBelow(cachedShapingFit(p, 1e-3).maxRelError, 0.05, `p=${p}`);
  });

});

/**
 * Wherever the suite runs, whichever optional packages installed: auto takes the first provider, fastest
 * first, that works, after trying and skipping every faster one.
 */
function assertBestAvailable(report: { chosen: string; skipped: { name: string }[] }, fastestFirst: readonly string[]): void {
  const at = fastestFirst.indexOf(report.chosen);
  assert.ok(at >= 0, `chose ${report.chosen}, not one of ${fastestFirst.join(', ')}`);
  assert.deepEqual(report.skipped.map((s) => s.name), fastestFirst.slice(0, at), `every provider faster than ${report.chosen} was tried and skipped`);
}

describe('provider selection', () => {
  test('kernels: auto takes the fastest provider that works; each skipped one says why, and forced, fails with that reason', async () => {
    const { kernels, report } = await loadKernels('auto');
    assertBestAvailable(report, ['onnxruntime-cuda', 'onnxruntime-cpu', 'tfjs']);
    assert.equal(kernels.provider, report.chosen);
    await kernels.dispose();
    for (const { name, reason } of report.skipped) {
      assert.match(reason, /not installed|not supported|failed to (load|run)|wrong answer/, `${name} skipped, saying why`);
      await assert.rejects(loadKernels(name), (e) => isMuonscopeError(e, 'KERNELS_UNAVAILABLE') && e.message.includes(`${name}: ${reason}`), `forcing ${name} fails with its reason`);
    }
    const forced = await loadKernels(report.chosen);
    assert.equal(forced.report.chosen, report.chosen, 'the chosen provider loads when forced');
    await forced.kernels.dispose();
  });

  test('an unknown kernel provider fails clearly instead of falling back', async () => {
    await assert.rejects(loadKernels('bogus' as never), (e) => isMuonscopeError(e, 'KERNELS_UNAVAILABLE') && /unknown kernel provider "bogus"/.test(e.message));
  });

  test('TF.js backend: auto takes the fastest backend that loads; each skipped one names why (the package, if missing), and forced, fails with that reason', async () => {
    try {
      const report = await selectTfBackend('auto');
      assertBestAvailable(report, ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu']);
      for (const { name, reason } of report.skipped) {
        assert.match(reason, /not installed \(@tensorflow\/tfjs-[\w-]+ is optional|failed to load|did not initialise|no CUDA device/, `${name} skipped, saying why`);
        await assert.rejects(selectTfBackend(name), (e) => isMuonscopeError(e, 'BACKEND_UNAVAILABLE') && e.message.includes(`${name}: ${reason}`), `forcing ${name} fails with its reason`);
      }
      assert.equal((await selectTfBackend(report.chosen)).chosen, report.chosen, 'the chosen backend loads when forced');
    } finally {
      await selectTfBackend('cpu');
    }
  });
});
