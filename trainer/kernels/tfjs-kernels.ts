/**
 * MatrixKernels on TF.js ops: the fallback when onnxruntime-node cannot load. The Newton–Schulz
 * iteration (linalg/ns-iteration.ts) and Muon's update (linalg/muon-update.ts) are run on the algebras
 * below, in float32, with every product through the transpose-safe matMul.
 */
import * as tf from '@tensorflow/tfjs-core';
import { matMul } from '../backend/matmul.js';
import { muonUpdate, stepScalars, type UpdateAlgebra } from '../linalg/muon-update.js';
import { nsCombination, orthogonalize, shortSideFirst, type NsAlgebra } from '../linalg/ns-iteration.js';
import type {
  MatrixKernels,
  MuonStepInput,
  MuonStepOutput,
  NsCombinationInput,
  OrthogonalizeInput,
} from './types.js';

const TFJS_NS: NsAlgebra<tf.Tensor2D, tf.Tensor | number> = {
  constant: (value) => value,
  constantColumn: (values) => tf.tensor2d(values as number[], [values.length, 1]),
  transpose: (x) => tf.transpose(x),
  gram: (x) => matMul(x, x, false, true),
  matmul: (a, b) => matMul(a, b),
  add: (a, b) => tf.add(a, b) as tf.Tensor2D,
  scale: (x, s) => tf.mul(x, s) as tf.Tensor2D,
  divide: (x, s) => tf.div(x, s) as tf.Tensor2D,
  norm: (x) => tf.norm(x),
  dot: (a, b) => tf.sum(tf.mul(a, b)),
  sqrt: (s) => tf.sqrt(s),
  mulScalars: (a, b) => tf.mul(a, b),
  maxScalars: (a, b) => tf.maximum(a, b),
};

// μ, the decay and the step size stay JS numbers, each rounded once to float32 where it meets a tensor.
const TFJS_UPDATE: UpdateAlgebra<tf.Tensor2D, number> = {
  lerp: (a, b, w) => tf.add(a, tf.mul(tf.sub(b, a), w)) as tf.Tensor2D,
  oneMinus: (s) => 1 - s,
  scale: (x, s) => tf.mul(x, s) as tf.Tensor2D,
  subScaled: (a, b, s) => tf.sub(a, tf.mul(b, s)) as tf.Tensor2D,
};

async function read(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

export class TfjsKernels implements MatrixKernels {
  readonly provider = 'tfjs' as const;

  async muonStep(input: MuonStepInput): Promise<MuonStepOutput> {
    const { rows, cols } = input;
    const { decay, stepSize } = stepScalars(input.lr, input.weightDecay, input.scale);
    const [w, buf, o] = tf.tidy(() => {
      const out = muonUpdate(TFJS_UPDATE, (u) => orthogonalize(TFJS_NS, u, rows, cols, input), {
        weight: tf.tensor2d(input.weight, [rows, cols]),
        grad: tf.tensor2d(input.grad, [rows, cols]),
        buffer: tf.tensor2d(input.momentumBuffer, [rows, cols]),
        momentum: input.momentum,
        nesterov: input.nesterov,
        decay,
        stepSize,
      });
      return [out.weight, out.buffer, out.update];
    });
    try {
      return { weight: await read(w), momentumBuffer: await read(buf), update: await read(o) };
    } finally {
      tf.dispose([w, buf, o]);
    }
  }

  async orthogonalize(input: OrthogonalizeInput): Promise<Float32Array> {
    const out = tf.tidy(() => orthogonalize(TFJS_NS, tf.tensor2d(input.x, [input.rows, input.cols]), input.rows, input.cols, input));
    try {
      return await read(out);
    } finally {
      out.dispose();
    }
  }

  async nsCombination(input: NsCombinationInput): Promise<Float32Array> {
    const { rows, cols } = input;
    const out = tf.tidy(() => nsCombination(TFJS_NS, tf.tensor2d(input.x, [rows, cols]), rows, cols, input.steps, input.weights, input.scale));
    try {
      return await read(out);
    } finally {
      out.dispose();
    }
  }

  async matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Promise<Float32Array> {
    const out = tf.tidy(() => matMul(tf.tensor2d(a, [m, k]), tf.tensor2d(b, [k, n])));
    try {
      return await read(out);
    } finally {
      out.dispose();
    }
  }

  async gram(x: Float32Array, rows: number, cols: number): Promise<Float32Array> {
    const out = tf.tidy(() => TFJS_NS.gram(shortSideFirst(TFJS_NS, tf.tensor2d(x, [rows, cols]), rows, cols)));
    try {
      return await read(out);
    } finally {
      out.dispose();
    }
  }

  async dispose(): Promise<void> {}
}
