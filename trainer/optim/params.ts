/**
 * The optimizers' boundary with TF.js: binding variables by name, reading and checking gradients, and
 * writing new values back. Every check runs before any value is computed or written, so a refused step
 * changes nothing.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MuonscopeError } from '../../common/errors.js';
import { LAYOUTS, type Layout } from './types.js';

/** A variable, optionally with how its matrix is stored (default torch's (out, in)). */
export type ParamInput = tf.Variable | { variable: tf.Variable; layout?: Layout };

export interface BoundParam {
  name: string;
  variable: tf.Variable;
  shape: number[];
  size: number;
  layout: Layout;
}

export function bindParams(inputs: readonly ParamInput[], owner: string, matricesOnly: boolean): BoundParam[] {
  const seen = new Set<string>();
  return inputs.map((input) => {
    const { variable, layout = 'outIn' } = input instanceof tf.Variable ? { variable: input } : input;
    const { name, shape } = variable;
    if (seen.has(name)) throw new MuonscopeError('INVALID_ARGUMENT', `${owner}: parameter "${name}" is given twice`, { name });
    seen.add(name);
    if (variable.dtype !== 'float32') {
      throw new MuonscopeError('INVALID_ARGUMENT', `${owner}: parameter "${name}" is ${variable.dtype}; only float32 is supported`, { name });
    }
    if (matricesOnly && shape.length !== 2) {
      throw new MuonscopeError(
        'INVALID_ARGUMENT',
        `${owner} takes only 2-D parameters; "${name}" has shape [${shape.join(', ')}] (route it to AdamW)`,
        { name, shape },
      );
    }
    if (!LAYOUTS.includes(layout)) {
      throw new MuonscopeError('INVALID_ARGUMENT', `${owner}: parameter "${name}" has unknown layout ${JSON.stringify(layout)}; expected outIn or inOut`, {
        name,
        layout,
      });
    }
    return { name, variable, shape: [...shape], size: variable.size, layout };
  });
}

/**
 * Reads one gradient per parameter, refusing unknown names, missing gradients, wrong shapes and
 * non-finite values (naming the parameter and, for non-finite values, the first offending index).
 */
export async function readGradients(params: readonly BoundParam[], grads: Record<string, tf.Tensor>, owner: string): Promise<Float32Array[]> {
  const known = new Set(params.map((p) => p.name));
  for (const name of Object.keys(grads)) {
    if (!known.has(name)) throw new MuonscopeError('UNKNOWN_PARAMETER', `${owner}: gradient for unknown parameter "${name}"`, { name });
  }
  for (const p of params) {
    const g = grads[p.name];
    if (g === undefined) throw new MuonscopeError('MISSING_GRADIENT', `${owner}: no gradient for parameter "${p.name}"`, { name: p.name });
    if (g.shape.length !== p.shape.length || g.shape.some((d, i) => d !== p.shape[i])) {
      throw new MuonscopeError(
        'SHAPE_MISMATCH',
        `${owner}: gradient of "${p.name}" has shape [${g.shape.join(', ')}], the parameter has [${p.shape.join(', ')}]`,
        { name: p.name, gradShape: g.shape, paramShape: p.shape },
      );
    }
  }
  const data = await Promise.all(params.map(async (p) => Float32Array.from(await grads[p.name].data())));
  params.forEach((p, k) => {
    const g = data[k];
    for (let i = 0; i < g.length; i++) {
      if (!Number.isFinite(g[i])) {
        throw new MuonscopeError('NON_FINITE', `${owner}: gradient of "${p.name}" has a non-finite value (${g[i]}) at index ${i}`, {
          name: p.name,
          index: i,
          value: String(g[i]),
        });
      }
    }
  });
  return data;
}

export async function readValues(params: readonly BoundParam[]): Promise<Float32Array[]> {
  return Promise.all(params.map(async (p) => (await p.variable.data()) as Float32Array));
}

export function writeValue(p: BoundParam, value: Float32Array): void {
  const t = tf.tensor(value, p.shape, 'float32');
  p.variable.assign(t);
  t.dispose();
}
