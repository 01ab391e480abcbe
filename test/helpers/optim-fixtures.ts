// The optimizer fixtures (test/fixtures/generate_optim.py: torch and float64 numpy trajectories) and how a
// test walks an optimizer through them.
import * as tf from '@tensorflow/tfjs-core';
import { loadF32, loadIndex, type ArrayRef } from './fixtures.js';
import { relFrobenius } from './random.js';

export const OPTIM_SET = 'optim';

export interface ShapeFixture {
  rows: number;
  cols: number;
  w0: ArrayRef;
  grads: ArrayRef[];
}

export interface OptimIndex {
  shapes: Record<string, ShapeFixture>;
  muon: { shape: string; lr: number; weight_decay: number; adjust_lr: 'original' | 'match_rms_adamw'; variant: 'fp32' | 'bf16'; params?: ArrayRef[]; final?: ArrayRef }[];
  adamw: { shape: string; lr: number; weight_decay: number; amsgrad: boolean; params: ArrayRef[] }[];
  dynmuon: ShapeFixture & {
    lr: number;
    weight_decay: number;
    momentum: number;
    exact: { p: number; damping: number; steps: number[]; params: ArrayRef[] }[];
    released: { p: number; steps: number[]; params: ArrayRef[] }[];
    lrOnly: { p: number; steps: number[]; params: ArrayRef[] }[];
  };
  direction: { rows: number; cols: number; x: ArrayRef; polar: ArrayRef; cases: { p: number; damping: number; direction: ArrayRef }[] };
}

export const optimIndex = loadIndex<OptimIndex>(OPTIM_SET);

let counter = 0;
/** A trainable variable with a name no other test uses. */
export function fixtureVariable(values: Float32Array, shape: number[], name = 'w'): tf.Variable {
  return tf.variable(tf.tensor(values, shape), true, `optim_test_${name}_${counter++}`);
}

export function diff(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: a.length }, (_, i) => a[i] - b[i]);
}

/**
 * Parameter errors are dominated by the weights themselves (a step moves them by ~1%), so each
 * trajectory is also checked on what the optimizer did: the change from the initial weights.
 */
export function changeErr(w: Float32Array, ref: Float32Array, w0: Float32Array): number {
  return relFrobenius(diff(w, w0), diff(ref, w0));
}

/** Runs one step per recorded gradient on a matrix fixture, calling `check` with the 1-based step and the parameter values. */
export async function trajectory(
  fx: ShapeFixture,
  make: (v: tf.Variable) => { step(g: Record<string, tf.Tensor>): Promise<void> },
  check: (step: number, w: Float32Array) => void,
): Promise<void> {
  const shape = [fx.rows, fx.cols];
  const v = fixtureVariable(loadF32(OPTIM_SET, fx.w0), shape);
  try {
    const opt = make(v);
    for (const [k, ref] of fx.grads.entries()) {
      const g = tf.tensor(loadF32(OPTIM_SET, ref), shape);
      await opt.step({ [v.name]: g });
      g.dispose();
      check(k + 1, (await v.data()) as Float32Array);
    }
  } finally {
    v.dispose();
  }
}
