/**
 * AdamW with torch.optim.AdamW's semantics (its single-tensor path, which CPU tensors take): decoupled
 * decay W ← W·(1 − lr·wd) before the moment updates, EMA moments, bias corrections 1 − β^t with t
 * counted from 1, and eps added to the bias-corrected √v. Elementwise, in JS doubles; values that
 * torch stores between operations (decayed weight, moments) are rounded to float32 where it does.
 */
import type * as tf from '@tensorflow/tfjs-core';
import { OptimizerBase } from './base.js';
import { ADAMW_DEFAULTS, checkBoolean, checkLr, checkNumber } from './hyperparameters.js';
import { bindParams, readGradients, readValues, writeValue, type ParamInput } from './params.js';
import { MuonscopeError } from '../../common/errors.js';

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
}

export type AdamWHyperparameters = {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
};

const OWNER = 'AdamW';

export function parseAdamWOptions(raw: unknown): AdamWHyperparameters {
  if (typeof raw !== 'object' || raw === null) throw new MuonscopeError('INVALID_HYPERPARAMETER', `${OWNER}: options must be an object`);
  const o = raw as AdamWOptions;
  const betas = o.betas ?? ADAMW_DEFAULTS.betas;
  if (!Array.isArray(betas) || betas.length !== 2) {
    throw new MuonscopeError('INVALID_HYPERPARAMETER', `${OWNER}: betas must be [beta1, beta2] (got ${JSON.stringify(betas)})`, { option: 'betas' });
  }
  return {
    lr: checkLr(OWNER, o.lr ?? ADAMW_DEFAULTS.lr),
    betas: [
      checkNumber(OWNER, 'betas[0]', betas[0], { min: 0, max: 1, maxExclusive: true }),
      checkNumber(OWNER, 'betas[1]', betas[1], { min: 0, max: 1, maxExclusive: true }),
    ],
    eps: checkNumber(OWNER, 'eps', o.eps ?? ADAMW_DEFAULTS.eps, { min: 0 }),
    weightDecay: checkNumber(OWNER, 'weightDecay', o.weightDecay ?? ADAMW_DEFAULTS.weightDecay, { min: 0 }),
    amsgrad: checkBoolean(OWNER, 'amsgrad', o.amsgrad ?? ADAMW_DEFAULTS.amsgrad),
  };
}

export class AdamW extends OptimizerBase<AdamWHyperparameters> {
  /** Any shapes; `layout` is ignored (AdamW is elementwise). */
  constructor(params: readonly ParamInput[], options: AdamWOptions = {}) {
    super('adamw', bindParams(params, OWNER, false), parseAdamWOptions(options));
  }

  protected bufferNames(hp: AdamWHyperparameters): string[] {
    return hp.amsgrad ? ['expAvg', 'expAvgSq', 'maxExpAvgSq'] : ['expAvg', 'expAvgSq'];
  }

  protected parseHyperparameters(raw: unknown): AdamWHyperparameters {
    return parseAdamWOptions(raw);
  }

  async prepareStep(grads: Record<string, tf.Tensor>): Promise<() => void> {
    const g = await readGradients(this.params, grads, OWNER);
    const weights = await readValues(this.params);
    const { lr, eps, weightDecay, amsgrad } = this.hp;
    const [beta1, beta2] = this.hp.betas;
    const t = this.steps + 1;
    const stepSize = lr / (1 - beta1 ** t);
    const bc2Sqrt = Math.sqrt(1 - beta2 ** t);
    const decay = 1 - lr * weightDecay;

    const results = this.params.map((p, k) => {
      const old = this.buffers.get(p.name)!;
      const w = new Float32Array(p.size);
      const m = new Float32Array(p.size);
      const v = new Float32Array(p.size);
      const vMax = amsgrad ? new Float32Array(p.size) : undefined;
      const gk = g[k];
      const wk = weights[k];
      for (let i = 0; i < p.size; i++) {
        const gi = gk[i];
        const wi = weightDecay !== 0 ? Math.fround(wk[i] * decay) : wk[i];
        // torch: exp_avg.lerp_(grad, 1 − β1) and exp_avg_sq.mul_(β2).addcmul_(grad, grad, 1 − β2).
        m[i] = old.expAvg[i] + (1 - beta1) * (gi - old.expAvg[i]);
        v[i] = Math.fround(old.expAvgSq[i] * beta2) + (1 - beta2) * gi * gi;
        let second = v[i];
        if (vMax) second = vMax[i] = Math.max(old.maxExpAvgSq[i], v[i]);
        const denom = Math.fround(Math.sqrt(second) / bc2Sqrt) + eps;
        w[i] = wi - (stepSize * m[i]) / denom;
      }
      const buffers: Record<string, Float32Array> = { expAvg: m, expAvgSq: v };
      if (vMax) buffers.maxExpAvgSq = vMax;
      return { w, buffers };
    });

    return () => {
      this.params.forEach((p, k) => {
        writeValue(p, results[k].w);
        this.buffers.set(p.name, results[k].buffers);
      });
      this.steps = t;
    };
  }
}
