// trainer/linalg against numpy references (test/fixtures/generate_linalg.py) and exact identities.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { isMuonscopeError } from '../../common/errors';
import {
  KELLER_QUINTIC,
  eigh,
  frobeniusNorm,
  identity,
  matmul,
  newtonSchulzReference,
  phi,
  shapeExact,
  singularValues,
  spectrum,
  svd,
  topKSingular,
  transpose,
  type NsStep,
} from '../../trainer/linalg/index';
import { loadArray, loadF64, loadIndex, type ArrayRef } from '../helpers/fixtures';

interface SvdCase {
  name: string;
  rows: number;
  cols: number;
  input: ArrayRef;
  singularValues: ArrayRef;
}
interface EighCase {
  name: string;
  n: number;
  input: ArrayRef;
  values: ArrayRef;
}
interface ShapingCase {
  name: string;
  rows: number;
  cols: number;
  input: ArrayRef;
  singularValues: number[];
  polar: ArrayRef;
  shaped: ArrayRef[];
}
interface LinalgIndex {
  svd: SvdCase[];
  eigh: EighCase[];
  topk: { name: string; rows: number; cols: number; k: number; input: ArrayRef; singularValues: number[] };
  shaping: { damping: number; ps: number[]; cases: ShapingCase[] };
  ns: { rows: number; cols: number; steps: NsStep[]; eps: number; input: ArrayRef; output: ArrayRef };
}

const SET = 'linalg';
const fixtures = loadIndex<LinalgIndex>(SET);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

function maxAbs(a: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]));
  return worst;
}

/** ‖a − b‖_F / ‖b‖_F */
function relFrobenius(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  const diff = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) diff[i] = a[i] - b[i];
  return frobeniusNorm(diff) / frobeniusNorm(Float64Array.from(b));
}

/** ‖QᵀQ − I‖_F for the rows×k row-major Q. */
function orthonormalityError(q: Float64Array, rows: number, k: number): number {
  const qtq = matmul(transpose(q, rows, k), q, k, rows, k);
  const id = identity(k);
  for (let i = 0; i < qtq.length; i++) qtq[i] -= id[i];
  return frobeniusNorm(qtq);
}

/** U·diag(s)·Vᵀ for row-major U (rows×k) and V (cols×k). */
function reconstruct(u: Float64Array, s: Float64Array, v: Float64Array, rows: number, cols: number): Float64Array {
  const k = s.length;
  const us = u.map((value, index) => value * s[index % k]);
  return matmul(us, transpose(v, cols, k), rows, k, cols);
}

function fmt(x: number): string {
  return x.toExponential(2);
}

describe('singularValues / svd (exact, Golub–Kahan) vs numpy', () => {
  for (const c of fixtures.svd) {
    const x = loadArray(SET, c.input);
    const ref = loadF64(SET, c.singularValues);

    test(`${c.name}: max|σ − σ̂| / σ_max ≤ 1e-10, input untouched`, (t) => {
      const before = x.slice();
      const s = singularValues(x, c.rows, c.cols);
      assert.deepEqual(x, before);
      const err = maxAbsDiff(s, ref) / ref[0];
      t.diagnostic(`error ${fmt(err)}`);
      assert.ok(err <= 1e-10, `error ${err}`);
    });

    test(`${c.name}: ‖U·S·Vᵀ − X‖_F/‖X‖_F ≤ 1e-10, ‖UᵀU − I‖_F, ‖VᵀV − I‖_F ≤ 1e-10`, (t) => {
      const before = x.slice();
      const { u, s, v } = svd(x, c.rows, c.cols);
      assert.deepEqual(x, before);
      const k = Math.min(c.rows, c.cols);
      assert.equal(u.length, c.rows * k);
      assert.equal(v.length, c.cols * k);
      const recon = relFrobenius(reconstruct(u, s, v, c.rows, c.cols), x);
      const ou = orthonormalityError(u, c.rows, k);
      const ov = orthonormalityError(v, c.cols, k);
      const values = maxAbsDiff(s, ref) / ref[0];
      t.diagnostic(`reconstruction ${fmt(recon)}, UᵀU ${fmt(ou)}, VᵀV ${fmt(ov)}, σ ${fmt(values)}`);
      assert.ok(recon <= 1e-10 && ou <= 1e-10 && ov <= 1e-10 && values <= 1e-10);
    });
  }

  test('zero matrix: σ = 0 and orthonormal factors', () => {
    assert.deepEqual(singularValues(new Float64Array(12), 3, 4), new Float64Array(3));
    const { u, s, v } = svd(new Float32Array(12), 4, 3);
    assert.deepEqual(s, new Float64Array(3));
    assert.ok(orthonormalityError(u, 4, 3) <= 1e-15 && orthonormalityError(v, 3, 3) <= 1e-15);
  });

  test('1×1 and empty matrices', () => {
    assert.deepEqual(singularValues(Float64Array.of(-3), 1, 1), Float64Array.of(3));
    const { u, s, v } = svd(Float64Array.of(-3), 1, 1);
    assert.equal(u[0] * s[0] * v[0], -3);
    assert.equal(singularValues(new Float64Array(0), 0, 5).length, 0);
    assert.equal(svd(new Float64Array(0), 5, 0).s.length, 0);
  });
});

describe('eigh (tred2 + tql2) vs numpy', () => {
  for (const c of fixtures.eigh) {
    const a = loadF64(SET, c.input);
    const ref = loadF64(SET, c.values);

    test(`${c.name}: max|λ − λ̂| / max|λ| ≤ 1e-10; ‖AQ − QΛ‖_F/‖A‖_F, ‖QᵀQ − I‖_F ≤ 1e-10`, (t) => {
      const before = a.slice();
      const valuesOnly = eigh(a, c.n);
      assert.equal(valuesOnly.vectors, undefined);
      const { values, vectors } = eigh(a, c.n, { vectors: true });
      assert.deepEqual(a, before);
      const err = maxAbsDiff(values, ref) / maxAbs(ref);
      const errValuesOnly = maxAbsDiff(valuesOnly.values, ref) / maxAbs(ref);
      const q = vectors!;
      const aq = matmul(a, q, c.n, c.n, c.n);
      const qLambda = q.map((value, index) => value * values[index % c.n]);
      const residual = relFrobenius(aq, qLambda) * (frobeniusNorm(qLambda) / frobeniusNorm(a));
      const ortho = orthonormalityError(q, c.n, c.n);
      t.diagnostic(`λ ${fmt(err)} (values only ${fmt(errValuesOnly)}), residual ${fmt(residual)}, QᵀQ ${fmt(ortho)}`);
      assert.ok(err <= 1e-10 && errValuesOnly <= 1e-10 && residual <= 1e-10 && ortho <= 1e-10);
    });
  }

  test('zero, 1×1 and diagonal matrices', () => {
    assert.deepEqual(eigh(new Float64Array(9), 3).values, new Float64Array(3));
    assert.deepEqual(eigh(Float64Array.of(2), 1, { vectors: true }), { values: Float64Array.of(2), vectors: Float64Array.of(1) });
    const { values, vectors } = eigh(Float64Array.of(3, 0, 0, -1), 2, { vectors: true });
    assert.deepEqual(values, Float64Array.of(-1, 3));
    assert.deepEqual(vectors!.map(Math.abs), Float64Array.of(0, 1, 1, 0));
  });
});

describe('randomized top-k', () => {
  const c = fixtures.topk;
  const x = loadArray(SET, c.input);

  test(`${c.name}: each of the top ${c.k} within 1e-3 relative (defaults: oversample 10, 2 power iterations)`, (t) => {
    const before = x.slice();
    const { s, u, v } = topKSingular(x, c.rows, c.cols, c.k, { vectors: true, seed: 7 });
    assert.deepEqual(x, before);
    assert.equal(s.length, c.k);
    const worst = Math.max(...c.singularValues.map((ref, i) => Math.abs(s[i] - ref) / ref));
    t.diagnostic(`worst relative error ${fmt(worst)}`);
    assert.ok(worst <= 1e-3, `worst ${worst}`);
    // The vectors are orthonormal and uᵢᵀ·X·vᵢ reproduces σᵢ.
    assert.ok(orthonormalityError(u!, c.rows, c.k) <= 1e-10 && orthonormalityError(v!, c.cols, c.k) <= 1e-10);
    const xv = matmul(Float64Array.from(x), v!, c.rows, c.cols, c.k);
    for (let i = 0; i < c.k; i++) {
      let uxv = 0;
      for (let r = 0; r < c.rows; r++) uxv += u![r * c.k + i] * xv[r * c.k + i];
      assert.ok(Math.abs(uxv - s[i]) <= 1e-10 * s[0]);
    }
  });

  test('same seed, same values; the seed is used', () => {
    const a = topKSingular(x, c.rows, c.cols, 4, { seed: 1, powerIterations: 0, oversample: 0 }).s;
    const b = topKSingular(x, c.rows, c.cols, 4, { seed: 1, powerIterations: 0, oversample: 0 }).s;
    const other = topKSingular(x, c.rows, c.cols, 4, { seed: 2, powerIterations: 0, oversample: 0 }).s;
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, other);
  });

  test('spectrum: exact up to exactUpTo, randomized top-k beyond', () => {
    const small = fixtures.svd.find((s) => s.name === 'small7x5')!;
    const exact = spectrum(loadArray(SET, small.input), small.rows, small.cols);
    assert.equal(exact.exact, true);
    assert.ok(maxAbsDiff(exact.values, loadF64(SET, small.singularValues)) <= 1e-14);
    const approx = spectrum(x, c.rows, c.cols, { exactUpTo: 512, topK: 8 });
    assert.equal(approx.exact, false);
    assert.equal(approx.values.length, 8);
    assert.ok(maxAbsDiff(approx.values, c.singularValues.slice(0, 8)) <= 1e-3 * c.singularValues[0]);
  });
});

describe('shapeExact vs numpy U·φ_p(S)·Vᵀ (float64 SVD)', () => {
  const { damping, ps, cases } = fixtures.shaping;
  for (const c of cases) {
    const x = loadArray(SET, c.input);

    test(`${c.name}: ‖mine − ref‖_F/‖ref‖_F ≤ 1e-6 for p ∈ {${ps.join(', ')}}, damping ${damping}`, (t) => {
      const before = x.slice();
      const errors = ps.map((p, i) => relFrobenius(shapeExact(x, c.rows, c.cols, p, damping), loadF64(SET, c.shaped[i])));
      assert.deepEqual(x, before);
      t.diagnostic(`errors ${errors.map(fmt).join(', ')}`);
      assert.ok(Math.max(...errors) <= 1e-6);
    });

    test(`${c.name}: p = 0 is the polar factor U·Vᵀ: undamped ≤ 1e-6; damped differs by exactly ‖I − φ_0(S)‖_F/√k`, (t) => {
      const polar = loadF64(SET, c.polar);
      const undamped = relFrobenius(shapeExact(x, c.rows, c.cols, 0, 0), polar);
      const damped = relFrobenius(shapeExact(x, c.rows, c.cols, 0, damping), polar);
      const delta = (damping * c.singularValues[0]) ** 2;
      const predicted = Math.sqrt(c.singularValues.reduce((sum, s) => sum + (1 - phi(s, 0, delta)) ** 2, 0) / c.singularValues.length);
      t.diagnostic(`undamped ${fmt(undamped)}; damped ${fmt(damped)} (predicted ${fmt(predicted)})`);
      assert.ok(undamped <= 1e-6);
      assert.ok(Math.abs(damped - predicted) <= 1e-6);
    });
  }

  test('zero matrix gives zeros; 1×1 gives sign·φ_p(|x|)', () => {
    for (const p of [-0.5, 0, 0.5]) assert.deepEqual(shapeExact(new Float32Array(6), 2, 3, p), new Float64Array(6));
    const delta = (1e-3 * 3) ** 2;
    assert.ok(Math.abs(shapeExact(Float64Array.of(-3), 1, 1, -0.5)[0] + phi(3, -0.5, delta)) <= 1e-15);
  });

  test('phi: φ_p(0) = 0, φ_1(σ) = σ, undamped φ_0(σ) = 1', () => {
    assert.equal(phi(0, -0.5, 0), 0);
    assert.equal(phi(2.5, 1, 1e-6), 2.5);
    assert.equal(phi(0.3, 0, 0), 1);
  });
});

describe('newtonSchulzReference vs numpy (torch.optim.Muon steps, float64)', () => {
  const c = fixtures.ns;
  const x = loadArray(SET, c.input);

  test(`5 Keller steps on ${c.rows}×${c.cols}: ‖mine − ref‖_F/‖ref‖_F ≤ 1e-10`, (t) => {
    const before = x.slice();
    assert.deepEqual(c.steps[0], [...KELLER_QUINTIC]);
    const err = relFrobenius(newtonSchulzReference(x, c.rows, c.cols, c.steps, c.eps), loadF64(SET, c.output));
    assert.deepEqual(x, before);
    t.diagnostic(`error ${fmt(err)}`);
    assert.ok(err <= 1e-10);
  });

  test('zero matrix stays zero (eps guards the division)', () => {
    assert.deepEqual(newtonSchulzReference(new Float64Array(6), 3, 2, [KELLER_QUINTIC]), new Float64Array(6));
  });
});

describe('bad input', () => {
  const calls: [string, (x: Float64Array) => unknown][] = [
    ['singularValues', (x) => singularValues(x, 2, 2)],
    ['svd', (x) => svd(x, 2, 2)],
    ['topKSingular', (x) => topKSingular(x, 2, 2, 1)],
    ['eigh', (x) => eigh(x, 2)],
    ['shapeExact', (x) => shapeExact(x, 2, 2, -0.25)],
  ];
  for (const [name, call] of calls) {
    test(`${name}: NaN and ±Inf throw MuonscopeError NON_FINITE; a wrong length throws SHAPE_MISMATCH`, () => {
      for (const bad of [NaN, Infinity, -Infinity]) {
        assert.throws(() => call(Float64Array.of(1, 0, bad, 1)), (e) => isMuonscopeError(e, 'NON_FINITE') && /non-finite/.test(e.message));
      }
      assert.throws(() => call(Float64Array.of(1, 0, 1)), (e) => isMuonscopeError(e, 'SHAPE_MISMATCH'));
    });
  }
});
