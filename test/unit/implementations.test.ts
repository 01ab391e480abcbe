// Every implementation of the optimizer's matrix math, on the same inputs, against the recorded references
// (test/fixtures/generate_linalg.py: numpy float64; generate_optim.py: torch.optim.Muon and float64 numpy
// DynMuon). One table of implementations, one of cases: the float64 TypeScript reference, TF.js on each
// backend, onnxruntime on each execution provider. Each failure names the implementation. The optional
// native ones (tfjs-node, tfjs-node-gpu, onnxruntime's CUDA provider) are skipped, with the reason, where
// they do not load; the others must.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isMuonscopeError } from '../../common/errors.js';
import { selectTfBackend, type TfBackendName } from '../../trainer/backend/tfjs-backend.js';
import { TfjsKernels, loadKernels } from '../../trainer/kernels/index.js';
import type { MatrixOps } from '../../trainer/kernels/types.js';
import { transpose } from '../../trainer/linalg/matrix.js';
import { NS_COEFFICIENT_SETS, expandNsSteps, type NsStep } from '../../trainer/linalg/ns-coefficients.js';
import { DynMuon, Muon } from '../../trainer/optim/index.js';
import { assertAtMost } from '../helpers/bounds.js';
import { loadF32, loadF64, loadIndex, type ArrayRef } from '../helpers/fixtures.js';
import { OPTIM_SET, changeErr, optimIndex, trajectory } from '../helpers/optim-fixtures.js';
import { relFrobenius } from '../helpers/random.js';
import { referenceOps } from '../helpers/reference-ops.js';

type Precision = 'float64' | 'float32';

interface Implementation {
  name: string;
  /** Where Newton–Schulz runs in float64, the bounds against float64 references are far tighter. */
  precision: Precision;
  /** An optional native package or device: skipped, with the reason, where it does not load. */
  optional: boolean;
  /** Makes it current (its TF.js backend too: the optimizers' variables live there). */
  load(): Promise<{ ops: MatrixOps; dispose?: () => Promise<void> }>;
}

const tfjs = (backend: TfBackendName, optional: boolean): Implementation => ({
  name: `TF.js (${backend})`,
  precision: 'float32',
  optional,
  load: async () => {
    await selectTfBackend(backend);
    return { ops: new TfjsKernels() };
  },
});

const onnx = (provider: 'onnxruntime-cpu' | 'onnxruntime-cuda', optional: boolean): Implementation => ({
  name: `ONNX (${provider})`,
  precision: 'float32',
  optional,
  load: async () => {
    await selectTfBackend('cpu');
    const { kernels } = await loadKernels(provider);
    return { ops: kernels, dispose: () => kernels.dispose() };
  },
});

const IMPLEMENTATIONS: Implementation[] = [
  {
    name: 'TS float64 reference',
    precision: 'float64',
    optional: false,
    load: async () => {
      await selectTfBackend('cpu');
      return { ops: referenceOps };
    },
  },
  tfjs('cpu', false),
  tfjs('wasm', false),
  tfjs('tensorflow', true),
  tfjs('tensorflow-gpu', true),
  onnx('onnxruntime-cpu', false),
  onnx('onnxruntime-cuda', true),
];

// ---- the cases: each runs one implementation and returns the errors it measured, by name -------------

interface NsFixture {
  rows: number;
  cols: number;
  steps: NsStep[];
  eps: number;
  input: ArrayRef;
  output: ArrayRef;
}

/** A bound on a relative Frobenius error, per precision of the implementation, and what it bounds. */
type Bound = Record<Precision, number> & { of: string };

interface Case {
  name: string;
  run(ops: MatrixOps, check: (what: string, error: number, bound: Bound) => void): Promise<void>;
}

/**
 * Newton–Schulz against numpy: the float32 kernels' round-off, amplified by the iteration; the reference
 * computes in float64 but returns float32 like every kernel (its float64 result: linalg.test.ts, 1e-10).
 */
const NS_BOUND: Bound = { of: 'result', float64: 1e-7, float32: 4e-6 };
/**
 * torch.optim.Muon with fp32 Newton–Schulz, 5 steps: the parameters, and the change they made. Every
 * implementation stores the weights in float32, which alone puts errors of a few 1e-6 into the change.
 */
const MUON_PARAMS_BOUND: Bound = { of: 'parameters', float64: 5e-7, float32: 5e-7 };
const MUON_CHANGE_BOUND: Bound = { of: 'change since step 0', float64: 1e-5, float32: 1e-5 };
/**
 * Stock torch.optim.Muon runs Newton–Schulz in bfloat16: about twice the worst measured (1.08e-3 on
 * the parameters, 1.03e-2 on the 5-step change), the difference being torch's bfloat16 rounding.
 */
const BF16_PARAMS_BOUND: Bound = { of: 'parameters', float64: 2.5e-3, float32: 2.5e-3 };
const BF16_CHANGE_BOUND: Bound = { of: '5-step change', float64: 2.1e-2, float32: 2.1e-2 };
/** DynMuon against float64 numpy, after steps 1 and 5. */
const DYN_PARAMS_BOUND: Bound = { of: 'parameters', float64: 5e-7, float32: 5e-7 };
const DYN_CHANGE_BOUND: Bound = { of: 'change since step 0', float64: 2e-5, float32: 2e-5 };
/** The matmul-only shaping tracks the exact one to within its fit error (1.1e-4 after 5 steps at p = 0.5). */
const MATMUL_SHAPING_BOUND: Bound = { of: 'parameters', float64: 3e-4, float32: 3e-4 };

const dyn = optimIndex.dynmuon;
const dynW0 = loadF32(OPTIM_SET, dyn.w0);
const dynOptions = { lr: dyn.lr, weightDecay: dyn.weight_decay, momentum: dyn.momentum, totalSteps: 100 };

const CASES: Case[] = [
  {
    name: 'Newton–Schulz, 5 of Keller’s steps, vs numpy float64 on 64×32 and its transpose',
    async run(ops, check) {
      const ns = loadIndex<{ ns: NsFixture }>('linalg').ns;
      assert.deepEqual(ns.steps, expandNsSteps(NS_COEFFICIENT_SETS.keller, 5), 'the fixture ran the coefficient table’s steps');
      const x = loadF32('linalg', ns.input);
      const want = loadF64('linalg', ns.output);
      const spec = { steps: ns.steps, eps: ns.eps, normSafety: NS_COEFFICIENT_SETS.keller.normSafety };
      const before = x.slice();
      check(`${ns.rows}×${ns.cols}`, relFrobenius(await ops.orthogonalize({ rows: ns.rows, cols: ns.cols, x, ...spec }), want), NS_BOUND);
      assert.deepEqual(x, before, 'the input is left untouched');
      const xt = Float32Array.from(transpose(x, ns.rows, ns.cols));
      const got = await ops.orthogonalize({ rows: ns.cols, cols: ns.rows, x: xt, ...spec });
      check(`${ns.cols}×${ns.rows}`, relFrobenius(got, transpose(want, ns.rows, ns.cols)), NS_BOUND);
    },
  },
  {
    name: 'a zero matrix stays zero: orthogonalisation (the eps floor) and the combination with σ_max found in place',
    async run(ops) {
      const steps = expandNsSteps(NS_COEFFICIENT_SETS.keller, 5);
      const o = await ops.orthogonalize({ rows: 3, cols: 2, x: new Float32Array(6), steps, eps: 1e-7, normSafety: 1 });
      assert.deepEqual(Array.from(o, Math.abs), [0, 0, 0, 0, 0, 0], `orthogonalize: ${Array.from(o)}`);
      const weights = steps.map(() => 0.5).concat(1);
      const y = await ops.nsCombination({ rows: 4, cols: 6, x: new Float32Array(24), steps, weights, scale: { sigmaMargin: 1.02, powerIterations: 5 } });
      assert.ok(y.every((v) => v === 0), `nsCombination: ${Array.from(y)}`);
    },
  },
  {
    name: 'Muon vs torch.optim.Muon (fp32 Newton–Schulz) after each of 5 steps: all shapes, weight decays, adjust_lr',
    async run(ops, check) {
      for (const c of optimIndex.muon.filter((m) => m.variant === 'fp32')) {
        const fx = optimIndex.shapes[c.shape];
        const w0 = loadF32(OPTIM_SET, fx.w0);
        const label = `${c.shape} wd ${c.weight_decay} ${c.adjust_lr}`;
        await trajectory(
          fx,
          (v) => new Muon([v], { lr: c.lr, weightDecay: c.weight_decay, adjustLr: c.adjust_lr }, ops),
          (step, w) => {
            const ref = loadF32(OPTIM_SET, c.params![step - 1]);
            check(`${label} step ${step}, ${MUON_PARAMS_BOUND.of}`, relFrobenius(w, ref), MUON_PARAMS_BOUND);
            check(`${label} step ${step}, ${MUON_CHANGE_BOUND.of}`, changeErr(w, ref, w0), MUON_CHANGE_BOUND);
          },
        );
      }
    },
  },
  {
    name: 'Muon vs unmodified bfloat16 torch.optim.Muon after 5 steps',
    async run(ops, check) {
      for (const c of optimIndex.muon.filter((m) => m.variant === 'bf16')) {
        const fx = optimIndex.shapes[c.shape];
        const w0 = loadF32(OPTIM_SET, fx.w0);
        const ref = loadF32(OPTIM_SET, c.final!);
        const label = `${c.shape} wd ${c.weight_decay} ${c.adjust_lr}`;
        await trajectory(
          fx,
          (v) => new Muon([v], { lr: c.lr, weightDecay: c.weight_decay, adjustLr: c.adjust_lr }, ops),
          (step, w) => {
            if (step !== fx.grads.length) return;
            check(`${label}, ${BF16_PARAMS_BOUND.of}`, relFrobenius(w, ref), BF16_PARAMS_BOUND);
            check(`${label}, ${BF16_CHANGE_BOUND.of}`, changeErr(w, ref, w0), BF16_CHANGE_BOUND);
          },
        );
      }
    },
  },
  {
    name: 'DynMuon released (Dion’s Newton–Schulz, the Taylor path) vs the float64 re-implementation of the published code, after steps 1 and 5',
    async run(ops, check) {
      for (const c of dyn.released) {
        let opt!: DynMuon;
        await trajectory(
          dyn,
          (v) => (opt = new DynMuon([v], { ...dynOptions, mode: 'released', schedule: { type: 'constant', p: c.p } }, ops)),
          (step, w) => {
            assert.equal(opt.lastStepInfo!.matrices[0].method, c.p >= 0.25 ? 'identity' : c.p >= 0 ? 'ns' : 'taylor', `p ${c.p}`);
            const at = c.steps.indexOf(step);
            if (at < 0) return;
            const ref = loadF32(OPTIM_SET, c.params[at]);
            check(`p ${c.p} step ${step}, ${DYN_PARAMS_BOUND.of}`, relFrobenius(w, ref), DYN_PARAMS_BOUND);
            check(`p ${c.p} step ${step}, ${DYN_CHANGE_BOUND.of}`, changeErr(w, ref, dynW0), DYN_CHANGE_BOUND);
          },
        );
      }
    },
  },
  {
    name: 'DynMuon lrOnly (Muon × ‖M‖_F^p) vs float64 numpy, after steps 1 and 5',
    async run(ops, check) {
      for (const c of dyn.lrOnly) {
        await trajectory(
          dyn,
          (v) => new DynMuon([v], { ...dynOptions, mode: 'lrOnly', schedule: { type: 'constant', p: c.p } }, ops),
          (step, w) => {
            const at = c.steps.indexOf(step);
            if (at < 0) return;
            const ref = loadF32(OPTIM_SET, c.params[at]);
            check(`p ${c.p} step ${step}, ${DYN_PARAMS_BOUND.of}`, relFrobenius(w, ref), DYN_PARAMS_BOUND);
            check(`p ${c.p} step ${step}, ${DYN_CHANGE_BOUND.of}`, changeErr(w, ref, dynW0), DYN_CHANGE_BOUND);
          },
        );
      }
    },
  },
  {
    name: 'DynMuon matmul-only shaping (σ_max by power iteration in the kernel) vs the exact numpy reference after 5 steps, p = 0.5',
    async run(ops, check) {
      const exact = dyn.exact.find((c) => c.p === 0.5 && c.steps.includes(5))!;
      let opt!: DynMuon;
      await trajectory(
        dyn,
        (v) => (opt = new DynMuon([v], { ...dynOptions, method: 'matmul', schedule: { type: 'constant', p: 0.5 } }, ops)),
        (step, w) => {
          const info = opt.lastStepInfo!.matrices[0];
          assert.equal(info.method, 'matmul');
          assert.ok(Number.isFinite(info.shapingRelError), `shapingRelError ${info.shapingRelError}`);
          if (step !== 5) return;
          check('parameters', relFrobenius(w, loadF32(OPTIM_SET, exact.params[exact.steps.indexOf(5)])), MATMUL_SHAPING_BOUND);
        },
      );
    },
  },
];

// ---- the table: every case on every implementation -------------------------------------------------

/** Worst error per implementation and case, printed at the end so the numbers quoted come from this run. */
const worst = new Map<string, { error: number; bound: number }>();
after(() => {
  for (const [key, { error, bound }] of worst) console.log(`# worst ${key}: ${error.toExponential(2)} (bound ${bound})`);
});

for (const impl of IMPLEMENTATIONS) {
  describe(impl.name, () => {
    let loaded: { ops: MatrixOps; dispose?: () => Promise<void> } | undefined;
    let unavailable: string | undefined;
    before(async () => {
      try {
        loaded = await impl.load();
      } catch (e) {
        const missing = isMuonscopeError(e, 'BACKEND_UNAVAILABLE') || isMuonscopeError(e, 'KERNELS_UNAVAILABLE');
        if (!impl.optional || !missing) throw e;
        unavailable = (e as Error).message;
      }
    });
    after(async () => {
      await loaded?.dispose?.();
    });

    for (const c of CASES) {
      test(c.name, async (t) => {
        if (unavailable) return t.skip(`${impl.name} is not available here: ${unavailable}`);
        try {
          await c.run(loaded!.ops, (what, error, bound) => {
            const key = `${impl.name} | ${c.name} | ${bound.of}`;
            const b = bound[impl.precision];
            const seen = worst.get(key);
            if (!seen || error > seen.error) worst.set(key, { error, bound: b });
            assertAtMost(error, b, `${what}: relative error`);
          });
        } catch (e) {
          // Every failure names the implementation, whichever assertion it came from.
          if (e instanceof assert.AssertionError) e.message = `${impl.name}: ${e.message}`;
          throw e;
        }
      });
    }
  });
}
