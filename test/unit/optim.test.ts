// Muon, AdamW and DynMuon against the references recorded by test/fixtures/generate_optim.py, where the
// optimizer's own wiring is under test (the per-implementation cases, every kernel provider and the
// float64 reference, are in implementations.test.ts); and the refusals (typed error, nothing changed).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { isMuonscopeError, type MuonscopeErrorCode } from '../../common/errors.js';
import { loadKernels } from '../../trainer/kernels/index.js';
import type { MatrixKernels } from '../../trainer/kernels/types.js';
import { AdamW, DynMuon, Muon, createOptimizer, encodeState, exactShapedDirection } from '../../trainer/optim/index.js';
import { loadF32, loadF64 } from '../helpers/fixtures.js';
import { OPTIM_SET as SET, changeErr, fixtureVariable as variable, optimIndex as index, trajectory, type ShapeFixture } from '../helpers/optim-fixtures.js';
import { relFrobenius as relErr } from '../helpers/random.js';

// Worst errors seen, printed at the end so the numbers in the report come from this run.
const worst: Record<string, number> = {};
function note(key: string, value: number): void {
  worst[key] = Math.max(worst[key] ?? 0, value);
}
after(() => {
  for (const [k, v] of Object.entries(worst)) console.log(`# worst ${k}: ${v.toExponential(2)}`);
});

test('AdamW matches torch.optim.AdamW after each of 5 steps (parameters and change since step 0 ≤ 1e-4 relative Frobenius)', async () => {
  for (const c of index.adamw) {
    const fx = index.shapes[c.shape];
    const w0 = loadF32(SET, fx.w0);
    await trajectory(
      fx,
      // torch's default betas, which the fixtures were recorded with (AdamW's own default β₂ is 0.95).
      (v) => new AdamW([v], { lr: c.lr, weightDecay: c.weight_decay, amsgrad: c.amsgrad, betas: [0.9, 0.999] }),
      (step, w) => {
        const ref = loadF32(SET, c.params[step - 1]);
        const e = relErr(w, ref);
        const ec = changeErr(w, ref, w0);
        note('AdamW vs torch, parameters', e);
        note('AdamW vs torch, change', ec);
        assert.ok(e <= 1e-4 && ec <= 1e-4, `${c.shape} wd ${c.weight_decay} amsgrad ${c.amsgrad} step ${step}: ${e}, change ${ec}`);
      },
    );
  }
});

/** Bound on the change since step 0, where a float32 step against a float64 reference shows more. */
const EXACT_CHANGE_TOL = 1e-5;

describe('with the default (onnxruntime) kernels', () => {
  let kernels: MatrixKernels;
  before(async () => {
    kernels = (await loadKernels('onnxruntime')).kernels;
  });
  after(async () => {
    await kernels.dispose();
  });

  test('Muon with inOut layout on the transposed matrix gives the transposed torch fp32 result (≤ 1e-4)', async () => {
    const c = index.muon.find((m) => m.variant === 'fp32' && m.shape === 'tall' && m.adjust_lr === 'original')!;
    const fx = index.shapes.tall;
    const t = (x: Float32Array) => {
      const out = new Float32Array(x.length);
      for (let i = 0; i < fx.rows; i++) for (let j = 0; j < fx.cols; j++) out[j * fx.rows + i] = x[i * fx.cols + j];
      return out;
    };
    const transposed: ShapeFixture = { rows: fx.cols, cols: fx.rows, w0: fx.w0, grads: fx.grads };
    const v = variable(t(loadF32(SET, fx.w0)), [fx.cols, fx.rows]);
    const opt = new Muon([{ variable: v, layout: 'inOut' }], { lr: c.lr, weightDecay: c.weight_decay }, kernels);
    for (const ref of transposed.grads) {
      const g = tf.tensor(t(loadF32(SET, ref)), [fx.cols, fx.rows]);
      await opt.step({ [v.name]: g });
      g.dispose();
    }
    const e = relErr((await v.data()) as Float32Array, t(loadF32(SET, c.params![4])));
    v.dispose();
    assert.ok(e <= 1e-4, `inOut: ${e}`);
  });

  test('Muon with Polar Express coefficients runs and reports its steps', async () => {
    const fx = index.shapes.square;
    const v = variable(loadF32(SET, fx.w0), [fx.rows, fx.cols]);
    const opt = new Muon([v], { lr: 0.02, coefficients: 'polarExpress' }, kernels);
    const g = tf.tensor(loadF32(SET, fx.grads[0]), [fx.rows, fx.cols]);
    await opt.step({ [v.name]: g });
    g.dispose();
    const info = opt.lastStepInfo!;
    assert.equal(info.step, 0);
    assert.equal(info.matrices[0].method, 'ns');
    // Polar Express maps normalised singular values into ≈[0.86, 1.14]: the RMS is near 1/sqrt(64).
    assert.ok(Math.abs(info.matrices[0].updateRms * 8 - 1) < 0.15, `updateRms ${info.matrices[0].updateRms}`);
    v.dispose();
  });

  const dyn = index.dynmuon;
  const dynW0 = loadF32(SET, dyn.w0);
  const dynOptions = { lr: dyn.lr, weightDecay: dyn.weight_decay, momentum: dyn.momentum, totalSteps: 100 };

  test('DynMuon exact matches the float64 numpy SVD reference after steps 1 and 5 (parameters and change since step 0 ≤ 1e-5 relative Frobenius), p ∈ {−0.5, −0.25, 0, 0.25, 0.5, 1}', async () => {
    for (const c of dyn.exact) {
      await trajectory(
        dyn,
        // The reference damps with ε alone: no gain bound (at p = −0.5, ε = 1e-3 allows 19.6×; the default bound is 10×).
        (v) => new DynMuon([v], { ...dynOptions, mode: 'exact', damping: c.damping, maxGain: null, schedule: { type: 'constant', p: c.p } }, kernels),
        (step, w) => {
          const at = c.steps.indexOf(step);
          if (at < 0) return;
          const ref = loadF32(SET, c.params[at]);
          const e = relErr(w, ref);
          const ec = changeErr(w, ref, dynW0);
          note('DynMuon exact vs numpy, parameters', e);
          note('DynMuon exact vs numpy, change', ec);
          assert.ok(e <= 1e-5 && ec <= EXACT_CHANGE_TOL, `change ${ec}; parameters: ` + `p ${c.p} damping ${c.damping} step ${step}: ${e}`);
        },
      );
    }
  });
});

test('exact shaped direction vs numpy SVD U·φ_p(S)·Vᵀ at Muon size (≤ 1e-6), singular values over 4 decades', () => {
  const { rows, cols } = index.direction;
  const x = loadF32(SET, index.direction.x);
  for (const c of index.direction.cases) {
    const e = relErr(exactShapedDirection(x, rows, cols, c.p, c.damping), loadF64(SET, c.direction));
    note('exact direction vs numpy', e);
    assert.ok(e <= 1e-6, `p ${c.p} damping ${c.damping}: ${e}`);
  }
});

test('exact shaping at p = 0 without damping is the exact polar factor U·Vᵀ (≤ 1e-6)', () => {
  const { rows, cols } = index.direction;
  const d = exactShapedDirection(loadF32(SET, index.direction.x), rows, cols, 0, 0);
  const e = relErr(d, loadF64(SET, index.direction.polar));
  note('p = 0 vs polar factor', e);
  assert.ok(e <= 1e-6, `${e}`);
});

// ---- refusals: a typed error naming the culprit, and nothing changed -----------------------------

async function snapshot(vars: tf.Variable[], opt: { getState(): Parameters<typeof encodeState>[0] }): Promise<string> {
  const values = await Promise.all(vars.map(async (v) => Array.from((await v.data()) as Float32Array).join(',')));
  return values.join('|') + '#' + Buffer.from(encodeState(opt.getState())).toString('base64');
}

async function refuses(code: MuonscopeErrorCode, mentions: string, fn: () => unknown): Promise<void> {
  await assert.rejects(
    async () => fn(),
    (e: unknown) => {
      assert.ok(isMuonscopeError(e, code), `expected ${code}, got ${String(e)}`);
      assert.ok((e as Error).message.includes(mentions), `message "${(e as Error).message}" should name ${mentions}`);
      return true;
    },
  );
}

describe('bad input is refused with a typed error and changes nothing', () => {
  let kernels: MatrixKernels;
  before(async () => {
    kernels = (await loadKernels('tfjs')).kernels;
  });

  type Opt = { step(g: Record<string, tf.Tensor>): Promise<void>; getState(): Parameters<typeof encodeState>[0] };
  const makers: Record<string, (vs: tf.Variable[]) => Opt> = {
    Muon: (vs) => new Muon(vs, { lr: 0.02 }, kernels),
    DynMuon: (vs) => new DynMuon(vs, { totalSteps: 10 }, kernels),
    'DynMuon released': (vs) => new DynMuon(vs, { totalSteps: 10, mode: 'released' }, kernels),
    AdamW: (vs) => new AdamW(vs),
  };

  for (const [label, make] of Object.entries(makers)) {
    test(`${label}: non-finite, wrongly shaped, unknown and missing gradients`, async () => {
      const a = variable(Float32Array.from({ length: 12 }, (_, i) => i / 7), [3, 4], 'a');
      const b = variable(Float32Array.from({ length: 8 }, (_, i) => -i / 5), [4, 2], 'b');
      const opt = make([a, b]);
      const ok = () => ({ [a.name]: tf.ones([3, 4]), [b.name]: tf.ones([4, 2]) });
      await opt.step(ok()); // some state to protect
      const before = await snapshot([a, b], opt);

      const nan = Float32Array.from({ length: 8 }, (_, i) => (i === 5 ? NaN : 1));
      await refuses('NON_FINITE', b.name, () => opt.step({ ...ok(), [b.name]: tf.tensor(nan, [4, 2]) }));
      await refuses('NON_FINITE', a.name, () => opt.step({ ...ok(), [a.name]: tf.fill([3, 4], Infinity) }));
      await refuses('SHAPE_MISMATCH', b.name, () => opt.step({ ...ok(), [b.name]: tf.ones([2, 4]) }));
      await refuses('UNKNOWN_PARAMETER', 'ghost', () => opt.step({ ...ok(), ghost: tf.ones([1]) }));
      await refuses('MISSING_GRADIENT', a.name, () => opt.step({ [b.name]: tf.ones([4, 2]) }));
      assert.equal(await snapshot([a, b], opt), before);
      a.dispose();
      b.dispose();
    });
  }

  test('hybrid: a bad AdamW gradient refuses the whole step, the matrix part unchanged too', async () => {
    const w = variable(Float32Array.from({ length: 12 }, (_, i) => i / 7), [3, 4], 'hidden');
    const bias = variable(Float32Array.from([1, 2, 3, 4]), [4], 'bias');
    const opt = createOptimizer([w, bias], { matrix: { type: 'muon', lr: 0.02 } }, kernels);
    await opt.step({ [w.name]: tf.ones([3, 4]), [bias.name]: tf.ones([4]) });
    const before = await snapshot([w, bias], opt);
    await refuses('NON_FINITE', bias.name, () => opt.step({ [w.name]: tf.ones([3, 4]), [bias.name]: tf.tensor([1, NaN, 0, 0]) }));
    await refuses('UNKNOWN_PARAMETER', 'nope', () => opt.step({ [w.name]: tf.ones([3, 4]), [bias.name]: tf.ones([4]), nope: tf.ones([1]) }));
    assert.equal(await snapshot([w, bias], opt), before);
    w.dispose();
    bias.dispose();
  });

  test('unknown optimizer, schedule, mode, method and coefficients names', async () => {
    const w = variable(new Float32Array(6), [2, 3], 'names');
    const cfg = (matrix: unknown) => () => createOptimizer([w], { matrix: matrix as never }, kernels);
    await refuses('UNKNOWN_OPTIMIZER', 'sgd', cfg({ type: 'sgd' }));
    await refuses('UNKNOWN_SCHEDULE', 'exponential', () => new DynMuon([w], { totalSteps: 5, schedule: { type: 'exponential' } as never }, kernels));
    await refuses('UNKNOWN_MODE', 'fancy', () => new DynMuon([w], { totalSteps: 5, mode: 'fancy' as never }, kernels));
    await refuses('UNKNOWN_MODE', 'svd', () => new DynMuon([w], { totalSteps: 5, method: 'svd' as never }, kernels));
    await refuses('UNKNOWN_COEFFICIENTS', 'newton', () => new Muon([w], { coefficients: 'newton' as never }, kernels));
    await refuses('INVALID_HYPERPARAMETER', 'adjustLr', () => new Muon([w], { adjustLr: 'spectral_norm' as never }, kernels));
    await refuses('INVALID_ARGUMENT', 'only 2-D', () => new Muon([variable(new Float32Array(4), [4], 'vec')], {}, kernels));
    w.dispose();
  });

  test('p outside [−1, 1] and negative lr, at construction and mid-run, change nothing', async () => {
    const w = variable(Float32Array.from({ length: 6 }, (_, i) => i), [2, 3], 'p');
    await refuses('P_OUT_OF_RANGE', '1.5', () => new DynMuon([w], { totalSteps: 5, schedule: { type: 'constant', p: 1.5 } }, kernels));
    await refuses('P_OUT_OF_RANGE', '-2', () => new DynMuon([w], { totalSteps: 5, schedule: { type: 'linear', from: 0, to: -2 } }, kernels));
    await refuses('INVALID_HYPERPARAMETER', '-0.1', () => new Muon([w], { lr: -0.1 }, kernels));
    await refuses('INVALID_HYPERPARAMETER', '-1', () => new AdamW([w], { lr: -1 }));

    const opt = new DynMuon([w], { totalSteps: 5, lr: 0.01 }, kernels);
    await opt.step({ [w.name]: tf.ones([2, 3]) });
    const before = await snapshot([w], opt);
    await refuses('P_OUT_OF_RANGE', '-1.25', () => opt.replaceSchedule({ type: 'cosine', from: 0, to: -1.25 }));
    await refuses('INVALID_HYPERPARAMETER', 'lr', () => opt.setLr(-0.5));
    assert.equal(await snapshot([w], opt), before);
    assert.equal(opt.lr, 0.01);

    const hybrid = createOptimizer([w], { matrix: { type: 'muon', lr: 0.02 } }, kernels);
    await refuses('INVALID_HYPERPARAMETER', 'lr', () => hybrid.setLr(Number.NaN));
    assert.equal(hybrid.lr, 0.02);
    w.dispose();
  });
});

test('hybrid: routes, setLr moves AdamW by the same factor, lastStepInfo from the matrix optimizer', async () => {
  const kernels = (await loadKernels('tfjs')).kernels;
  const hidden = variable(Float32Array.from({ length: 12 }, (_, i) => Math.sin(i)), [3, 4], 'dense/kernel');
  const bias = variable(new Float32Array(4), [4], 'dense/bias');
  const emb = variable(Float32Array.from({ length: 8 }, (_, i) => i), [2, 4], 'embed/table');
  const opt = createOptimizer([hidden, bias, emb], { matrix: { type: 'dynmuon', totalSteps: 4, lr: 1e-3 }, adamw: { lr: 1e-3 } }, kernels);
  assert.deepEqual(
    opt.routes.map((r) => r.route),
    ['matrix', 'adamw', 'adamw'],
  );
  opt.setLr(2e-3); // the matrix lr doubles (configured 1e-3), so AdamW's does too
  assert.equal(opt.matrix!.lr, 2e-3);
  assert.equal(opt.adamw.lr, 2e-3);
  await opt.step({ [hidden.name]: tf.ones([3, 4]), [bias.name]: tf.ones([4]), [emb.name]: tf.ones([2, 4]) });
  const info = opt.lastStepInfo!;
  assert.equal(info.matrices.length, 1);
  assert.equal(info.matrices[0].name, hidden.name);
  assert.equal(info.matrices[0].method, 'exact');
  assert.ok(Math.abs(info.matrices[0].p - 0.1155292893150024) < 1e-12);
  [hidden, bias, emb].forEach((v) => v.dispose());
});
