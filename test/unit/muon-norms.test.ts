// The per-layer quantities in Muon's own norms (layer_stats) and DynMuon exact's normalisations and gain
// bound, against the numpy references of test/fixtures/generate_muon_norms.py: norms from numpy's SVD,
// NS(M) by running the matrix iteration, polar(M) from the SVD, the bounded damping by bisection on a grid.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { isMuonscopeError } from '../../common/errors.js';
import { optimizerLabel } from '../../common/optimizer-label.js';
import { validateLogRecord, type LayerStats, type SpectrumSummary } from '../../common/protocol.js';
import { gainBoundedDamping, maxShapingGain, phi } from '../../common/shaping.js';
import { layerSpectra, UpdateHistory } from '../../trainer/diagnostics/index.js';
import { createTfjsKernels } from '../../trainer/kernels/index.js';
import type { MatrixKernels } from '../../trainer/kernels/types.js';
import { singularValues } from '../../trainer/linalg/svd.js';
import { decodeState, DynMuon, encodeState, exactShapedDirection, type ShapedNormalization } from '../../trainer/optim/index.js';
import type { Layout, MatrixStepInfo } from '../../trainer/optim/types.js';
import { validateRunConfig } from '../../trainer/run/config.js';
import { loadArray, loadF32, loadF64, loadIndex, type ArrayRef } from '../helpers/fixtures.js';
import { relFrobenius } from '../helpers/random.js';
import { assertAtMost } from '../helpers/bounds.js';

const SET = 'muon-norms';

interface LayerCase {
  name: string;
  rows: number;
  cols: number;
  layout: Layout;
  G: ArrayRef;
  M: ArrayRef;
  O: ArrayRef;
  Oprev: ArrayRef;
  W: ArrayRef;
  deltaW: ArrayRef;
  expected: {
    deltaW: SpectrumSummary;
    updateRmsToRms: number;
    weightRmsToRms: number;
    updateWeightOpRatio: number;
    nuclearAlignment: number;
    oOpNorm: number;
    nsPolarError: number;
    nsNearOne: number;
    mRank: number;
    updateCosine: number;
  };
}

interface DynCase {
  name: string;
  rows: number;
  cols: number;
  u: ArrayRef;
  ps: ({ p: number; damping: number; maxGainOverSpectrum: number; polarOpNormRatioFrobenius: number } & Record<ShapedNormalization, ArrayRef>)[];
}

const index = loadIndex<{ band: [number, number]; layers: LayerCase[]; dynmuon: { damping: number; maxGain: number; cases: DynCase[] } }>(SET);
const NORMALIZATIONS: ShapedNormalization[] = ['frobenius', 'spectral', 'none'];

/** |a − b|/|b|: every reference here is far from zero. */
const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);
const STEP_INFO: MatrixStepInfo = { name: 'x', p: 0, normPowP: 1, updateRms: 0, method: 'ns' };

// Worst errors, printed at the end so the numbers in the report come from this run.
const worst: Record<string, number> = {};
function note(key: string, value: number): void {
  worst[key] = Math.max(worst[key] ?? 0, value);
}
after(() => {
  for (const [k, v] of Object.entries(worst)) console.log(`# worst ${k}: ${v.toExponential(2)}`);
});

describe('layer_stats in Muon norms vs numpy (rel 1e-12; the NS count and lag exact)', () => {
  for (const c of index.layers) {
    test(`${c.name} (${c.layout})`, () => {
      const updates = new UpdateHistory();
      const input = {
        name: c.name,
        rows: c.rows,
        cols: c.cols,
        layout: c.layout,
        G: loadArray(SET, c.G),
        M: loadArray(SET, c.M),
        W: loadArray(SET, c.W),
        deltaW: loadArray(SET, c.deltaW),
        stepInfo: STEP_INFO,
        scale: 1,
      };
      const first = layerSpectra({ ...input, O: loadArray(SET, c.Oprev), history: { updates, step: 10 } }).stats;
      assert.equal(first.updateCosine, undefined, 'no cosine at the first measurement');
      const { stats } = layerSpectra({ ...input, O: loadArray(SET, c.O), history: { updates, step: 30 } });
      const e = c.expected;
      const checks: [string, number | undefined, number][] = [
        ['‖ΔW‖_op', stats.deltaW?.sigmaMax, e.deltaW.sigmaMax],
        ['stable rank of ΔW', stats.deltaW?.stableRank, e.deltaW.stableRank],
        ['effective rank of ΔW', stats.deltaW?.effectiveRank, e.deltaW.effectiveRank],
        ['nuclear rank of ΔW', stats.deltaW?.nuclearRank, e.deltaW.nuclearRank],
        ['‖ΔW‖ RMS→RMS', stats.updateRmsToRms, e.updateRmsToRms],
        ['‖W‖ RMS→RMS', stats.weightRmsToRms, e.weightRmsToRms],
        ['‖ΔW‖_op/‖W‖_op', stats.updateWeightOpRatio, e.updateWeightOpRatio],
        ['⟨G,O⟩/‖G‖_*', stats.nuclearAlignment, e.nuclearAlignment],
        ['‖O‖_op', stats.O.sigmaMax, e.oOpNorm],
        ['‖NS(M) − polar(M)‖/‖polar(M)‖', stats.nsPolarError, e.nsPolarError],
        ['update cosine', stats.updateCosine, e.updateCosine],
      ];
      for (const [what, mine, ref] of checks) {
        assert.ok(mine !== undefined, `${c.name}: ${what} missing`);
        note(what, rel(mine, ref));
        assertAtMost(rel(mine, ref), 1e-12, `${c.name}: ${what} ${mine} vs numpy ${ref}`);
      }
      assert.equal(stats.nsNearOne, e.nsNearOne, `${c.name}: σ of NS(M) in [${index.band}] (M has rank ${e.mRank})`);
      assert.equal(stats.updateCosineLag, 20, 'lag: the steps between the two measurements');
      assert.ok(Math.abs(stats.nuclearAlignment!) <= stats.O.sigmaMax, `⟨G,O⟩/‖G‖_* ${stats.nuclearAlignment} ≤ ‖O‖_op ${stats.O.sigmaMax}`);
      const record = validateLogRecord({ kind: 'layer_stats', seq: 1, t: 0, step: 30, layers: [stats] });
      assert.ok(record.ok, `the record validates: ${JSON.stringify(!record.ok && record.issues)}`);
    });
  }

  test('randomized path: NS fields absent (they need every σ), the rest present and ‖ΔW‖_op from the top-k (rel 1e-6)', () => {
    const c = index.layers[0];
    const dw = loadArray(SET, c.deltaW);
    const { stats } = layerSpectra({
      name: c.name, rows: c.rows, cols: c.cols, layout: c.layout,
      G: loadArray(SET, c.G), M: loadArray(SET, c.M), O: loadArray(SET, c.O), W: loadArray(SET, c.W), deltaW: dw,
      stepInfo: STEP_INFO, scale: 1, spectrum: { exactUpTo: 8, topK: 12 },
    });
    assert.equal(stats.nsPolarError, undefined, 'no NS error from a top-k spectrum');
    assert.equal(stats.nsNearOne, undefined, 'no NS count from a top-k spectrum');
    assertAtMost(rel(stats.deltaW!.sigmaMax, c.expected.deltaW.sigmaMax), 1e-6, `‖ΔW‖_op ${stats.deltaW!.sigmaMax}`);
    assertAtMost(rel(stats.deltaW!.stableRank, c.expected.deltaW.stableRank), 1e-6, `stable rank (exact from ‖ΔW‖_F) ${stats.deltaW!.stableRank}`);
    // The tail estimate of ‖G‖_* is an upper one, so |⟨G,O⟩/‖G‖_*| can only read low.
    assertAtMost(Math.abs(stats.nuclearAlignment!), Math.abs(c.expected.nuclearAlignment) * (1 + 1e-9), 'nuclear alignment from the tail estimate');
  });

  test('zero matrices give zeros, never NaN; the cosine with a zero update is 0', () => {
    const z = new Float32Array(6 * 4);
    const updates = new UpdateHistory();
    const base = { name: 'z', rows: 6, cols: 4, G: z, M: z, O: z, W: z, deltaW: z, stepInfo: STEP_INFO, scale: 1 };
    layerSpectra({ ...base, history: { updates, step: 1 } });
    const { stats } = layerSpectra({ ...base, history: { updates, step: 2 } });
    const fields: (keyof LayerStats)[] = ['updateRmsToRms', 'weightRmsToRms', 'updateWeightOpRatio', 'nuclearAlignment', 'nsPolarError', 'nsNearOne', 'updateCosine'];
    for (const f of fields) assert.equal(stats[f], 0, `${f} of zero matrices`);
    assert.deepEqual(stats.deltaW, { sigmaMax: 0, stableRank: 0, effectiveRank: 0, nuclearRank: 0 });
  });
});

describe('DynMuon exact: the gain bound on the damping', () => {
  const { damping, maxGain } = index.dynmuon;

  test('the bounded damping matches numpy (grid bisection) to rel 1e-7, and is ε itself where the bound does not bind', () => {
    for (const p of index.dynmuon.cases[0].ps) {
      const mine = gainBoundedDamping(p.p, damping, maxGain);
      note('bounded damping vs numpy', rel(mine, p.damping));
      assertAtMost(rel(mine, p.damping), 1e-7, `p ${p.p}: ε ${mine} vs numpy ${p.damping}`);
    }
  });

  test('p = −1: ε = 1e-3 allowed 500× the top direction\'s step, the bound makes it 10× (rel 1e-9)', () => {
    assertAtMost(rel(maxShapingGain(-1, 1e-3), 500.0005), 1e-9, `unbounded gain ${maxShapingGain(-1, 1e-3)}`);
    const eps = gainBoundedDamping(-1, 1e-3, 10);
    assertAtMost(rel(maxShapingGain(-1, eps), 10), 1e-9, `bounded gain ${maxShapingGain(-1, eps)} at ε ${eps}`);
    // The sup by brute force over σ/σ_max ∈ [1e-9, 1], independently of the closed form.
    let sup = 0;
    for (let i = 0; i <= 90_000; i++) {
      const r = 10 ** (-9 + i / 10_000);
      sup = Math.max(sup, phi(r, -1, eps * eps) / phi(1, -1, eps * eps));
    }
    assertAtMost(sup, 10 * (1 + 1e-9), `brute-force sup ${sup}`);
    assertAtMost(rel(sup, 10), 1e-6, `and it is reached: ${sup}`);
  });

  test('p = −0.25: ε = 1e-3 gives 4.11×, under the bound, so nothing changes; a bound of 2 binds exactly', () => {
    assert.equal(gainBoundedDamping(-0.25, 1e-3, 10), 1e-3, 'ε unchanged');
    assertAtMost(maxShapingGain(-0.25, 1e-3), 10, 'within the bound');
    assertAtMost(rel(maxShapingGain(-0.25, 1e-3), 4.113144947905063), 1e-9, `gain ${maxShapingGain(-0.25, 1e-3)}`);
    const eps = gainBoundedDamping(-0.25, 1e-3, 2);
    assertAtMost(rel(maxShapingGain(-0.25, eps), 2), 1e-9, `bound 2: gain ${maxShapingGain(-0.25, eps)} at ε ${eps}`);
  });

  test('on the fixture spectra (σ from 1 to 1e-4) no direction exceeds the bound: φ_p(σ_i)/φ_p(σ_1) vs numpy (rel 1e-7)', () => {
    for (const c of index.dynmuon.cases) {
      const s = singularValues(loadF32(SET, c.u), c.rows, c.cols);
      for (const p of c.ps) {
        const eps = gainBoundedDamping(p.p, damping, maxGain);
        const delta = (eps * s[0]) ** 2;
        const gains = Array.from(s, (v) => phi(v, p.p, delta) / phi(s[0], p.p, delta));
        const top = Math.max(...gains);
        assertAtMost(top, maxGain * (1 + 1e-12), `${c.name} p ${p.p}: largest gain ${top}`);
        assertAtMost(rel(top, p.maxGainOverSpectrum), 1e-7, `${c.name} p ${p.p}: ${top} vs numpy ${p.maxGainOverSpectrum}`);
      }
    }
  });

  test('p ≥ 0 is unchanged: the damping is returned as given, for any bound', () => {
    for (const p of [0, 0.25, 0.5, 1]) {
      for (const eps of [0, 1e-3, 0.1]) for (const bound of [1, 10, null]) assert.equal(gainBoundedDamping(p, eps, bound), eps, `p ${p} ε ${eps} bound ${bound}`);
    }
  });
});

describe('DynMuon exact normalisations vs numpy U·φ_p(S)·Vᵀ (SVD)', () => {
  let kernels: MatrixKernels;
  before(() => {
    kernels = createTfjsKernels();
  });
  after(async () => {
    await kernels.dispose();
  });

  test('exactShapedDirection per normalisation, p ∈ {−1, −0.5, −0.25, 0, 0.5, 1}, bounded damping (rel Frobenius ≤ 1e-8)', () => {
    for (const c of index.dynmuon.cases) {
      const u = loadF32(SET, c.u);
      for (const p of c.ps) {
        const eps = gainBoundedDamping(p.p, index.dynmuon.damping, index.dynmuon.maxGain);
        for (const n of NORMALIZATIONS) {
          const e = relFrobenius(exactShapedDirection(u, c.rows, c.cols, p.p, eps, n), loadF64(SET, p[n]));
          note(`exact direction (${n}) vs numpy`, e);
          assertAtMost(e, 1e-8, `${c.name} p ${p.p} ${n}`);
        }
      }
    }
  });

  /** One DynMuon step from W = 0 with momentum 0 and no Nesterov, so U is the gradient itself: ΔW = −lr·scale·D. */
  async function oneStep(c: DynCase, p: number, options: Record<string, unknown>): Promise<{ dw: Float32Array; opt: DynMuon }> {
    const v = tf.variable(tf.zeros([c.rows, c.cols]), true, `muon_norms_${c.name}_${Math.random()}`);
    const opt = new DynMuon([v], { totalSteps: 10, lr: 0.02, momentum: 0, nesterov: false, schedule: { type: 'constant', p }, ...options }, kernels);
    const g = tf.tensor(loadF32(SET, c.u), [c.rows, c.cols]);
    await opt.step({ [v.name]: g });
    const dw = (await v.data()) as Float32Array;
    tf.dispose([g, v]);
    return { dw, opt };
  }

  test('the optimizer\'s step per normalisation is −lr·scale·D (rel ≤ 1e-6), and layer stats report its operator norm (rel ≤ 1e-6)', async () => {
    const lr = 0.02;
    for (const c of index.dynmuon.cases) {
      // adjust_lr "original", rows = out: sqrt(max(1, out/in)).
      const scale = Math.sqrt(Math.max(1, c.rows / c.cols));
      for (const p of c.ps.filter((x) => x.p === -1 || x.p === 0.5)) {
        for (const n of NORMALIZATIONS) {
          const { dw } = await oneStep(c, p.p, { normalization: n, method: 'exact' });
          const ref = loadF64(SET, p[n]);
          const e = relFrobenius(dw, Float64Array.from(ref, (x) => -lr * scale * x));
          note(`DynMuon step (${n}) vs numpy`, e);
          assertAtMost(e, 1e-6, `${c.name} p ${p.p} ${n}: step`);
          const { stats } = layerSpectra({ name: c.name, rows: c.rows, cols: c.cols, G: loadF32(SET, c.u), M: loadF32(SET, c.u), O: ref, W: dw, deltaW: dw, stepInfo: STEP_INFO, scale });
          const expected = lr * scale * singularValues(ref, c.rows, c.cols)[0];
          if (n === 'spectral') assertAtMost(rel(expected, lr * scale), 1e-9, 'spectral: ‖D‖_op = 1');
          note(`‖ΔW‖_op in layer stats (${n})`, rel(stats.deltaW!.sigmaMax, expected));
          assertAtMost(rel(stats.deltaW!.sigmaMax, expected), 1e-6, `${c.name} p ${p.p} ${n}: ‖ΔW‖_op ${stats.deltaW!.sigmaMax} vs lr·scale·‖D‖_op ${expected}`);
        }
      }
    }
  });

  test('operator norm of the Frobenius-matched step against Muon\'s polar factor (reported), and the spectral one is 1', (t) => {
    const c = index.dynmuon.cases[0];
    const u = loadF32(SET, c.u);
    const lines: string[] = [];
    for (const p of c.ps) {
      const op = (n: ShapedNormalization) => singularValues(exactShapedDirection(u, c.rows, c.cols, p.p, p.damping, n), c.rows, c.cols)[0];
      const frob = op('frobenius');
      assertAtMost(rel(frob, p.polarOpNormRatioFrobenius), 1e-6, `p ${p.p}: ${frob} vs numpy ${p.polarOpNormRatioFrobenius}`);
      assertAtMost(rel(op('spectral'), 1), 1e-9, `p ${p.p}: spectral ‖D‖_op ${op('spectral')}`);
      lines.push(`p ${p.p}: frobenius ${frob.toFixed(3)}, spectral ${op('spectral').toFixed(3)}, none ${op('none').toFixed(3)}`);
    }
    t.diagnostic(`‖D‖_op (Muon's polar factor: 1), ${c.rows}×${c.cols}, σ from 1 to 1e-4: ${lines.join('; ')}`);
  });

  test('matmul-only shaping: spectral gives ‖D‖_op = 1 (rel 1e-3), none and frobenius match numpy within the fit\'s error', async () => {
    const c = index.dynmuon.cases[0];
    const lr = 0.02;
    for (const p of c.ps.filter((x) => x.p === -0.5 || x.p === 0.5)) {
      for (const n of NORMALIZATIONS) {
        const { dw, opt } = await oneStep(c, p.p, { normalization: n, method: 'matmul' });
        const info = opt.lastStepInfo!.matrices[0];
        assert.equal(info.method, 'matmul');
        const d = Float64Array.from(dw, (x) => -x / lr);
        const ref = loadF64(SET, p[n]);
        const opMine = singularValues(d, c.rows, c.cols)[0];
        const opRef = singularValues(ref, c.rows, c.cols)[0];
        note(`matmul ‖D‖_op (${n}) vs numpy`, rel(opMine, opRef));
        // The fitted polynomial's error bound (relative, per singular value in [1e-3, 1]·σ_max), with room for the power iteration.
        const tol = n === 'spectral' ? 1e-3 : info.shapingRelError! + 1e-3;
        assertAtMost(rel(opMine, opRef), tol, `${n} p ${p.p}: ‖D‖_op ${opMine} vs numpy ${opRef} (fit error ${info.shapingRelError})`);
      }
    }
  });

  test('the options: refused when unknown or out of range, saved in the snapshot, and an older snapshot resumes on ε alone', async () => {
    const c = index.dynmuon.cases[0];
    const v = tf.variable(tf.zeros([c.rows, c.cols]), true, 'muon_norms_options');
    const refused = (options: Record<string, unknown>, option: string) =>
      assert.throws(
        () => new DynMuon([v], { totalSteps: 5, ...options }, kernels),
        (e: unknown) => isMuonscopeError(e) && e.code === 'INVALID_HYPERPARAMETER' && e.message.includes(option),
        `${JSON.stringify(options)} refused naming ${option}`,
      );
    refused({ normalization: 'l2' }, 'normalization');
    refused({ maxGain: 0.5 }, 'maxGain');
    const opt = new DynMuon([v], { totalSteps: 5, normalization: 'spectral', maxGain: null }, kernels);
    assert.deepEqual([opt.hyperparameters.normalization, opt.hyperparameters.maxGain], ['spectral', null]);
    const fresh = new DynMuon([v], { totalSteps: 5 }, kernels);
    assert.deepEqual([fresh.hyperparameters.normalization, fresh.hyperparameters.maxGain], ['frobenius', 10], 'defaults');
    fresh.setState(decodeState(encodeState(opt.getState())));
    assert.deepEqual([fresh.hyperparameters.normalization, fresh.hyperparameters.maxGain], ['spectral', null], 'restored from the snapshot');
    const old = opt.getState();
    const { normalization: _n, maxGain: _g, ...before } = old.hyperparameters as Record<string, unknown>;
    fresh.setState({ ...old, hyperparameters: before as typeof old.hyperparameters });
    assert.deepEqual([fresh.hyperparameters.normalization, fresh.hyperparameters.maxGain], ['frobenius', null], 'a snapshot from before the options: Frobenius size, no bound');
    v.dispose();
  });
});

describe('the normalisation in the run config and the label', () => {
  test('run config: defaults filled, each value accepted, others refused with their path', () => {
    const filled = validateRunConfig({ optimizer: { type: 'dynmuon' } });
    assert.ok(filled.ok);
    const o = filled.config.optimizer as { normalization?: string; maxGain?: number | null };
    assert.deepEqual([o.normalization, o.maxGain], ['frobenius', 10]);
    for (const n of NORMALIZATIONS) assert.ok(validateRunConfig({ optimizer: { type: 'dynmuon', normalization: n, maxGain: null } }).ok, n);
    // A schedule of another type than the default's once left the whole optimizer section undefaulted.
    const scheduled = validateRunConfig({ optimizer: { type: 'dynmuon', normalization: 'spectral', schedule: { type: 'constant', p: 0.5 } } });
    assert.ok(scheduled.ok);
    const so = scheduled.config.optimizer as { mode?: string; normalization?: string; maxGain?: number | null; schedule?: unknown };
    assert.deepEqual([so.mode, so.normalization, so.maxGain, so.schedule], ['exact', 'spectral', 10, { type: 'constant', p: 0.5 }], 'defaults beside a given constant schedule');
    const bad = validateRunConfig({ optimizer: { type: 'dynmuon', normalization: 'l2' } });
    assert.ok(!bad.ok && bad.issues.some((i) => i.path.includes('normalization')), `refused: ${JSON.stringify(!bad.ok && bad.issues)}`);
  });

  test('optimizerLabel names exact mode\'s normalisation, and nothing it does not have', () => {
    assert.equal(optimizerLabel({ type: 'dynmuon', mode: 'exact', normalization: 'spectral' }), 'dynmuon (exact, spectral)');
    assert.equal(optimizerLabel({ type: 'dynmuon', mode: 'exact' }), 'dynmuon (exact)', 'a config from before the option');
    assert.equal(optimizerLabel({ type: 'dynmuon', mode: 'released', normalization: 'frobenius' }), 'dynmuon (released)', 'released mode does not normalise');
    assert.equal(optimizerLabel({ type: 'muon' }), 'muon');
    assert.equal(optimizerLabel(undefined), undefined);
  });
});
