/**
 * The one matmul every TF.js caller uses. TF.js-wasm's transposed-matmul path is 10–25× slower than
 * transposing first (docs/readings.md), and its built-in matMul gradient passes the transpose flags, so on
 * that backend we transpose explicitly, forward and backward.
 */
import * as tf from '@tensorflow/tfjs-core';

function slowTransposeFlags(): boolean {
  return tf.getBackend() === 'wasm';
}

/** a·b with optional transposes that never reach the backend's flagged path where it is slow. */
export function matMul(a: tf.Tensor2D, b: tf.Tensor2D, transposeA = false, transposeB = false): tf.Tensor2D {
  if (!slowTransposeFlags()) return tf.matMul(a, b, transposeA, transposeB);
  return tf.tidy(() => tf.matMul(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b));
}

/**
 * matMul with a gradient that transposes explicitly: dA = dY·Bᵀ, dB = Aᵀ·dY through `matMul` above.
 * Models use this for every dense product.
 */
export const matMulWithGrad: (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D = tf.customGrad(
  // customGrad's callback receives (...inputs, save); its typings cannot express that tuple.
  ((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    save([a, b]);
    return {
      value: matMul(a as tf.Tensor2D, b as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as tf.Tensor2D[];
        return [matMul(dy as tf.Tensor2D, sb, false, true), matMul(sa, dy as tf.Tensor2D, true, false)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** Batched a·b ([B, T, K]·[B, K, N]) with the same rule: transposes are explicit on wasm. */
function batchMatMul(a: tf.Tensor3D, b: tf.Tensor3D, transposeA = false, transposeB = false): tf.Tensor3D {
  if (!slowTransposeFlags()) return tf.matMul(a, b, transposeA, transposeB);
  return tf.tidy(() => tf.matMul(transposeA ? tf.transpose(a, [0, 2, 1]) : a, transposeB ? tf.transpose(b, [0, 2, 1]) : b));
}

/**
 * The 3-D counterpart of `matMulWithGrad`, for attention: dA = dY·Bᵀ, dB = Aᵀ·dY per batch entry, with
 * the transposes made explicitly on wasm.
 */
export const batchMatMulWithGrad: (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D = tf.customGrad(
  ((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    save([a, b]);
    return {
      value: batchMatMul(a as tf.Tensor3D, b as tf.Tensor3D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as tf.Tensor3D[];
        return [batchMatMul(dy as tf.Tensor3D, sb, false, true), batchMatMul(sa, dy as tf.Tensor3D, true, false)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0],
) as unknown as (a: tf.Tensor3D, b: tf.Tensor3D) => tf.Tensor3D;
