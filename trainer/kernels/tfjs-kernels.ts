/**
 * MatrixKernels on TF.js ops: the fallback when onnxruntime-node cannot load. Same math as the ONNX
 * graphs, in float32, with every product through the transpose-safe matMul.
 */
import * as tf from '@tensorflow/tfjs-core';
import { matMul } from '../backend/matmul.js';
import type { NsStep } from '../linalg/ns-coefficients.js';
import type {
  MatrixKernels,
  MuonStepInput,
  MuonStepOutput,
  NsCombinationInput,
  OrthogonalizeInput,
} from './types.js';

function shortSideFirst(x: tf.Tensor2D, rows: number, cols: number): tf.Tensor2D {
  return rows > cols ? tf.transpose(x) : x;
}

function nsStep(x: tf.Tensor2D, [a, b, c]: NsStep, gram?: tf.Tensor2D): tf.Tensor2D {
  const gramA = gram ?? matMul(x, x, false, true);
  const poly = tf.add(tf.mul(gramA, b), tf.mul(matMul(gramA, gramA), c)) as tf.Tensor2D;
  return tf.add(tf.mul(x, a), matMul(poly, x)) as tf.Tensor2D;
}

function orthogonalizeTensor(u: tf.Tensor2D, input: Omit<OrthogonalizeInput, 'x'>): tf.Tensor2D {
  const { rows, cols } = input;
  const xt = shortSideFirst(u, rows, cols);
  const norm = tf.mul(tf.norm(xt), input.normSafety);
  let x = tf.div(xt, tf.maximum(norm, input.eps)) as tf.Tensor2D;
  for (const s of input.steps) x = nsStep(x, s);
  return shortSideFirst(x, rows, cols);
}

async function read(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

export class TfjsKernels implements MatrixKernels {
  readonly provider = 'tfjs' as const;

  async muonStep(input: MuonStepInput): Promise<MuonStepOutput> {
    const { rows, cols, momentum: mu } = input;
    const [w, buf, o] = tf.tidy(() => {
      const grad = tf.tensor2d(input.grad, [rows, cols]);
      const oldBuf = tf.tensor2d(input.momentumBuffer, [rows, cols]);
      const newBuf = tf.add(oldBuf, tf.mul(tf.sub(grad, oldBuf), 1 - mu)) as tf.Tensor2D;
      const u = input.nesterov ? (tf.add(grad, tf.mul(tf.sub(newBuf, grad), mu)) as tf.Tensor2D) : newBuf;
      const update = orthogonalizeTensor(u, input);
      const weight = tf.tensor2d(input.weight, [rows, cols]);
      const newW = tf.sub(tf.mul(weight, 1 - input.lr * input.weightDecay), tf.mul(update, input.lr * input.scale));
      return [newW, newBuf, update];
    });
    try {
      return { weight: await read(w), momentumBuffer: await read(buf), update: await read(o) };
    } finally {
      tf.dispose([w, buf, o]);
    }
  }

  async orthogonalize(input: OrthogonalizeInput): Promise<Float32Array> {
    const out = tf.tidy(() => orthogonalizeTensor(tf.tensor2d(input.x, [input.rows, input.cols]), input));
    try {
      return await read(out);
    } finally {
      out.dispose();
    }
  }

  async nsCombination(input: NsCombinationInput): Promise<Float32Array> {
    const { rows, cols, weights } = input;
    const out = tf.tidy(() => {
      const xs = shortSideFirst(tf.tensor2d(input.x, [rows, cols]), rows, cols);
      let x: tf.Tensor2D;
      let firstGram: tf.Tensor2D | undefined;
      if ('divisor' in input.scale) {
        x = tf.div(xs, input.scale.divisor) as tf.Tensor2D;
      } else {
        const gram = matMul(xs, xs, false, true);
        const m = gram.shape[0];
        let v = tf.tensor2d(Array.from({ length: m }, (_, i) => 1 + 0.5 * Math.sin(12.9898 * (i + 1))), [m, 1]);
        for (let i = 0; i < input.scale.powerIterations; i++) {
          const w = matMul(gram, v);
          v = tf.div(w, tf.maximum(tf.norm(w), 1e-30)) as tf.Tensor2D;
        }
        const lambda = tf.sum(tf.mul(v, matMul(gram, v)));
        const divisor = tf.maximum(tf.mul(tf.sqrt(lambda), input.scale.sigmaMargin), 1e-30);
        x = tf.div(xs, divisor) as tf.Tensor2D;
        firstGram = tf.div(tf.div(gram, divisor), divisor) as tf.Tensor2D;
      }
      let sum = tf.mul(x, weights[0]);
      input.steps.forEach((s, k) => {
        x = nsStep(x, s, k === 0 ? firstGram : undefined);
        sum = tf.add(sum, tf.mul(x, weights[k + 1]));
      });
      return shortSideFirst(sum as tf.Tensor2D, rows, cols);
    });
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
    const out = tf.tidy(() => {
      const xt = shortSideFirst(tf.tensor2d(x, [rows, cols]), rows, cols);
      return matMul(xt, xt, false, true);
    });
    try {
      return await read(out);
    } finally {
      out.dispose();
    }
  }

  async dispose(): Promise<void> {}
}
