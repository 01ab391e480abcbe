/**
 * A multilayer perceptron with named parameters that routing understands: hidden matrices
 * `mlp.layerN.weight` go to Muon/DynMuon, biases and the output `head` to AdamW. Weights are stored
 * (in, out) as TF.js dense kernels are, and declared so (`layout: 'inOut'`) for Muon's lr scale.
 */
import * as tf from '@tensorflow/tfjs-core';
import { matMulWithGrad } from '../backend/matmul.js';
import { gaussianArray, mulberry32 } from '../data/random.js';
import type { Layout } from '../optim/types.js';

export type Activation = 'relu' | 'tanh' | 'gelu';

export interface MlpConfig {
  inputDim: number;
  hiddenDims: number[];
  outputDim: number;
  activation: Activation;
  seed: number;
}

interface Dense {
  weight: tf.Variable<tf.Rank.R2>;
  bias: tf.Variable<tf.Rank.R1>;
}

function activate(x: tf.Tensor2D, kind: Activation): tf.Tensor2D {
  if (kind === 'relu') return tf.relu(x);
  if (kind === 'tanh') return tf.tanh(x);
  // tanh approximation of GELU, built from ops whose gradients every backend has.
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1)) as tf.Tensor2D;
}

export class Mlp {
  readonly layers: Dense[];
  readonly head: Dense;

  constructor(readonly config: MlpConfig) {
    const rng = mulberry32(config.seed);
    // Kaiming-style fan-in scaling keeps activations O(1) at any width.
    const dense = (name: string, fanIn: number, fanOut: number): Dense => ({
      weight: tf.variable(tf.tensor2d(gaussianArray(fanIn * fanOut, rng, 1 / Math.sqrt(fanIn)), [fanIn, fanOut]), true, `${name}.weight`),
      bias: tf.variable(tf.zeros([fanOut]), true, `${name}.bias`),
    });
    const dims = [config.inputDim, ...config.hiddenDims];
    this.layers = config.hiddenDims.map((d, i) => dense(`mlp.layer${i}`, dims[i], d));
    this.head = dense('mlp.head', dims[dims.length - 1], config.outputDim);
  }

  get variables(): tf.Variable[] {
    return [...this.layers, this.head].flatMap((l) => [l.weight, l.bias]);
  }

  /** How each weight is stored, for the optimizers' lr scale. */
  get layouts(): Record<string, Layout> {
    return Object.fromEntries([...this.layers, this.head].map((l) => [l.weight.name, 'inOut' as const]));
  }

  forward(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      let h = x;
      for (const layer of this.layers) h = activate(tf.add(matMulWithGrad(h, layer.weight), layer.bias), this.config.activation);
      return tf.add(matMulWithGrad(h, this.head.weight), this.head.bias);
    });
  }

  dispose(): void {
    tf.dispose(this.variables);
  }
}
