/**
 * The loss surface as the curvature diagnostics see it: loss and gradient at any point θ of the whole
 * model, on one fixed batch. Points are plain Float32Arrays keyed by parameter name, so the curvature
 * math is pure and testable against an exact Hessian without any model.
 */
import * as tf from '@tensorflow/tfjs-core';

/** A point in parameter space (or a gradient there): every parameter of the model, by name. */
export type Theta = Record<string, Float32Array>;

export interface Landscape {
  readonly names: string[];
  readonly shapes: Record<string, number[]>;
  loss(theta: Theta): Promise<number>;
  gradient(theta: Theta): Promise<{ loss: number; grads: Theta }>;
}

/** The variables' current values: the θ the diagnostics perturb. */
export async function readTheta(variables: tf.Variable[]): Promise<Theta> {
  const out: Theta = {};
  // A copy: some backends hand out their own storage, which the next step overwrites.
  for (const v of variables) out[v.name] = ((await v.data()) as Float32Array).slice();
  return out;
}

/**
 * A landscape over TF.js variables. Each evaluation assigns θ to the variables, computes, and always
 * restores the original values (try/finally), so a diagnostic can never leave the model moved, even when
 * the loss throws. `lossOnFixedBatch` must read the variables and close over one batch: the curvature
 * estimates difference gradients, which is only meaningful on the same data.
 */
export function tfLandscape(variables: tf.Variable[], lossOnFixedBatch: () => tf.Scalar): Landscape {
  const names = variables.map((v) => v.name);
  const shapes = Object.fromEntries(variables.map((v) => [v.name, v.shape.slice()]));

  async function at<T>(theta: Theta, compute: () => Promise<T>): Promise<T> {
    // Clones share the variables' buffers (reference-counted), so saving costs no copy.
    const saved = variables.map((v) => tf.clone(v));
    try {
      for (const v of variables) {
        const values = theta[v.name];
        if (!values) throw new Error(`landscape: θ has no values for ${v.name}`);
        const t = tf.tensor(values, v.shape, 'float32');
        v.assign(t);
        t.dispose();
      }
      return await compute();
    } finally {
      variables.forEach((v, i) => v.assign(saved[i]));
      tf.dispose(saved);
    }
  }

  return {
    names,
    shapes,
    loss: (theta) =>
      at(theta, async () => {
        const loss = tf.tidy(lossOnFixedBatch);
        try {
          return (await loss.data())[0];
        } finally {
          loss.dispose();
        }
      }),
    gradient: (theta) =>
      at(theta, async () => {
        const { value, grads } = tf.variableGrads(lossOnFixedBatch, variables);
        try {
          const out: Theta = {};
          for (const name of names) out[name] = ((await grads[name].data()) as Float32Array).slice();
          return { loss: (await value.data())[0], grads: out };
        } finally {
          value.dispose();
          tf.dispose(grads);
        }
      }),
  };
}
