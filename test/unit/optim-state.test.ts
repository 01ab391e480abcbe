// Optimizer snapshots: restore into a fresh optimizer continues bit for bit; bad snapshots are refused
// without changing anything; the binary encoding round-trips exactly.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { isMuonscopeError } from '../../common/errors.js';
import { loadKernels } from '../../trainer/kernels/index.js';
import type { MatrixKernels } from '../../trainer/kernels/types.js';
import { AdamW, DynMuon, Muon, createOptimizer, decodeState, encodeState, type OptimizerState } from '../../trainer/optim/index.js';

interface Snapshottable {
  step(g: Record<string, tf.Tensor>): Promise<void>;
  getState(): OptimizerState;
  setState(s: OptimizerState): void;
}

const SHAPES: Record<string, number[]> = { 'h/kernel': [12, 8], 'h2/kernel': [8, 20], 'h/bias': [8] };

/** Deterministic, step-dependent gradients (a cheap hash, so no two steps look alike). */
function grads(names: string[], step: number): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [k, name] of names.entries()) {
    const shape = SHAPES[name];
    const size = shape.reduce((a, b) => a * b, 1);
    out[name] = tf.tensor(
      Float32Array.from({ length: size }, (_, i) => Math.sin(1.7 * i + 3.1 * step + k) * (1 + 0.3 * Math.cos(i * step))),
      shape,
    );
  }
  return out;
}

function makeVars(names: string[], values?: Float32Array[]): tf.Variable[] {
  return names.map((name, k) => {
    const shape = SHAPES[name];
    const size = shape.reduce((a, b) => a * b, 1);
    const v = values?.[k] ?? Float32Array.from({ length: size }, (_, i) => Math.cos(0.37 * i + k) / 4);
    return tf.variable(tf.tensor(v, shape), true, name);
  });
}

async function values(vars: tf.Variable[]): Promise<Float32Array[]> {
  return Promise.all(vars.map(async (v) => Float32Array.from((await v.data()) as Float32Array)));
}

async function run(opt: Snapshottable, names: string[], from: number, to: number): Promise<void> {
  for (let s = from; s < to; s++) {
    const g = grads(names, s);
    await opt.step(g);
    tf.dispose(Object.values(g));
  }
}

function bytesEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

describe('state round-trip: 3 steps, snapshot, encode/decode, restore into a fresh optimizer, 2 more steps: bit-identical', () => {
  let kernels: MatrixKernels;
  before(async () => {
    kernels = (await loadKernels('auto')).kernels;
  });

  const cases: { label: string; names: string[]; make: (vars: tf.Variable[]) => Snapshottable; midRun?: (opt: Snapshottable) => void }[] = [
    { label: 'Muon (Polar Express)', names: ['h/kernel', 'h2/kernel'], make: (vs) => new Muon(vs, { lr: 0.02, coefficients: 'polarExpress' }, kernels) },
    { label: 'AdamW (amsgrad)', names: ['h/kernel', 'h/bias'], make: (vs) => new AdamW(vs, { lr: 1e-2, amsgrad: true }) },
    {
      label: 'DynMuon exact with a schedule replaced mid-run',
      names: ['h/kernel', 'h2/kernel'],
      make: (vs) => new DynMuon(vs, { totalSteps: 6, lr: 0.02 }, kernels),
      midRun: (opt) => (opt as DynMuon).replaceSchedule({ type: 'linear', from: 0.5, to: -0.5 }, { source: 'test', reason: 'mid-run edit' }),
    },
    {
      label: 'DynMuon released (Taylor path)',
      names: ['h/kernel', 'h2/kernel'],
      make: (vs) => new DynMuon(vs, { totalSteps: 6, lr: 0.02, mode: 'released', schedule: { type: 'constant', p: -0.25 } }, kernels),
    },
    {
      label: 'DynMuon lrOnly',
      names: ['h/kernel'],
      make: (vs) => new DynMuon(vs, { totalSteps: 6, lr: 0.02, mode: 'lrOnly', schedule: { type: 'constant', p: 0.5 } }, kernels),
    },
    {
      label: 'hybrid DynMuon + AdamW with lr changed mid-run',
      names: ['h/kernel', 'h2/kernel', 'h/bias'],
      make: (vs) => createOptimizer(vs, { matrix: { type: 'dynmuon', totalSteps: 6, lr: 0.02 }, adamw: { lr: 1e-2 } }, kernels),
      midRun: (opt) => (opt as ReturnType<typeof createOptimizer>).setLr(0.01),
    },
  ];

  for (const c of cases) {
    test(c.label, async () => {
      const a = makeVars(c.names);
      const optA = c.make(a);
      await run(optA, c.names, 0, 2);
      c.midRun?.(optA);
      await run(optA, c.names, 2, 3);
      const atStep3 = await values(a);
      const bytes = encodeState(optA.getState());
      await run(optA, c.names, 3, 5);
      const finalA = await values(a);
      const stateA = encodeState(optA.getState());
      a.forEach((v) => v.dispose());

      // The restored run: same names (as after a restart), weights from the step-3 checkpoint.
      const b = makeVars(c.names, atStep3);
      const optB = c.make(b);
      optB.setState(decodeState(bytes));
      await run(optB, c.names, 3, 5);
      const finalB = await values(b);
      b.forEach((v) => v.dispose());
      finalA.forEach((x, k) => assert.ok(bytesEqual(x, finalB[k]), `${c.names[k]} differs after restore`));
      assert.ok(Buffer.from(stateA).equals(Buffer.from(encodeState(optB.getState()))), 'optimizer states differ after restore');
    });
  }
});

describe('bad snapshots are refused (INVALID_STATE) and change nothing', () => {
  test('wrong kind, parameters, shapes, buffers, hyperparameters or schedule', async () => {
    const kernels = (await loadKernels('tfjs')).kernels;
    const names = ['h/kernel', 'h2/kernel'];
    const vars = makeVars(names);
    const opt = new DynMuon(vars, { totalSteps: 10, lr: 0.02 }, kernels);
    await run(opt, names, 0, 2);
    const good = opt.getState();
    const before = Buffer.from(encodeState(good));
    const mutate = (f: (s: OptimizerState) => void): OptimizerState => {
      const s = decodeState(encodeState(good));
      f(s);
      return s;
    };
    const bad: [string, OptimizerState][] = [
      ['"muon" optimizer', mutate((s) => (s.kind = 'muon'))],
      ['lacks parameter', mutate((s) => delete s.params['h2/kernel'])],
      ['ghost', mutate((s) => (s.params['ghost'] = { shape: [1], buffers: { momentum: new Float32Array(1) } }))],
      ['shape', mutate((s) => (s.params['h/kernel'].shape = [8, 12]))],
      ['values', mutate((s) => (s.params['h/kernel'].buffers.momentum = new Float32Array(5)))],
      ['Float32Array', mutate((s) => ((s.params['h/kernel'].buffers as Record<string, unknown>).momentum = [1, 2]))],
      ['unknown buffer', mutate((s) => (s.params['h/kernel'].buffers.velocity = new Float32Array(96)))],
      ['lr', mutate((s) => (s.hyperparameters.lr = -1))],
      ['mode', mutate((s) => (s.hyperparameters.mode = 'magic'))],
      ['step', mutate((s) => (s.step = -3))],
      ['schedule', mutate((s) => (s.schedule = { version: 1, entries: [{ fromStep: 0, spec: { type: 'constant', p: 7 }, source: 'x', reason: '' }] }))],
    ];
    for (const [mentions, state] of bad) {
      assert.throws(
        () => opt.setState(state),
        (e: unknown) => isMuonscopeError(e, 'INVALID_STATE') && e.message.includes(mentions),
        mentions,
      );
    }
    assert.ok(Buffer.from(encodeState(opt.getState())).equals(before), 'a refused state leaves the optimizer state byte for byte as it was');

    const hybrid = createOptimizer(makeVars(['h/bias']), { matrix: { type: 'muon' } }, kernels);
    assert.throws(() => hybrid.setState(good), (e: unknown) => isMuonscopeError(e, 'INVALID_STATE'));
    vars.forEach((v) => v.dispose());
    tf.disposeVariables();
  });

  test('corrupt bytes', () => {
    const refuses = (bytes: Uint8Array) => assert.throws(() => decodeState(bytes), (e: unknown) => isMuonscopeError(e, 'INVALID_STATE'));
    const good = encodeState({ kind: 'adamw', step: 1, hyperparameters: { lr: 1 }, params: { x: { shape: [2], buffers: { expAvg: new Float32Array(2) } } } });
    refuses(good.slice(0, 3));
    refuses(Uint8Array.from([...good.slice(0, 4).reverse(), ...good.slice(4)]));
    refuses(good.slice(0, good.length - 4)); // payload cut short
    const hugeHeader = good.slice();
    new DataView(hugeHeader.buffer).setUint32(4, 1e6, true);
    refuses(hugeHeader);
  });
});

test('encodeState/decodeState round-trip every float32 bit pattern that is a number, and the JSON around it', () => {
  const special = Float32Array.from([0, -0, 1.401298464324817e-45, -3.4028234663852886e38, Math.PI, Infinity, -Infinity, 1e-40]);
  const state: OptimizerState = {
    kind: 'hybrid',
    step: 7,
    hyperparameters: { lr: 0.1 + 0.2, nested: { list: [1, 'a', true, null] } },
    params: {},
    children: { adamw: { kind: 'adamw', step: 7, hyperparameters: { lr: 1e-3 }, params: { p: { shape: [8], buffers: { expAvg: special, expAvgSq: new Float32Array(0) } } } } },
  };
  const back = decodeState(encodeState(state));
  const expAvg = back.children!.adamw.params.p.buffers.expAvg;
  assert.deepEqual(new Uint8Array(expAvg.buffer, expAvg.byteOffset, expAvg.byteLength), new Uint8Array(special.buffer), 'special values, bit for bit');
  assert.equal(back.children!.adamw.params.p.buffers.expAvgSq.length, 0);
  assert.deepEqual(back.hyperparameters, state.hyperparameters);
  assert.deepEqual({ ...back, children: undefined }, { ...state, children: undefined });
});
