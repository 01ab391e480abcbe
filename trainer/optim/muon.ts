/**
 * Muon with torch.optim.Muon's semantics, per 2-D parameter W with gradient G and momentum buffer B:
 *
 *   B ← B + (1 − μ)(G − B)                     EMA ("lerp") momentum, as torch and KellerJordan/Muon
 *   U ← nesterov ? G + μ(B − G) : B            i.e. G.lerp(B, μ)
 *   O ← NS₅(U / max(‖U‖_F, eps))               on the short side first, (3.4445, −4.775, 2.0315)
 *   W ← W·(1 − lr·wd) − lr·scale·O             decay with the base lr, update with the adjusted one
 *
 * The update is linalg/muon-update.ts and the iteration linalg/ns-iteration.ts, the descriptions every
 * implementation follows. The whole step for one matrix is one `kernels.muonStep` call (one native graph
 * on onnxruntime). torch runs Newton–Schulz in bfloat16; this runs it in float32 (see docs/readings.md).
 */
import type * as tf from '@tensorflow/tfjs-core';
import { MuonscopeError } from '../../common/errors.js';
import type { MatrixOps, MuonStepOutput } from '../kernels/types.js';
import { NS_COEFFICIENT_SETS, expandNsSteps, type NsCoefficientName } from '../linalg/ns-coefficients.js';
import { OptimizerBase } from './base.js';
import { MUON_DEFAULTS, checkBoolean, checkInteger, checkLr, checkNumber, checkOneOf } from './hyperparameters.js';
import { bindParams, readGradients, readValues, writeValue, type BoundParam, type ParamInput } from './params.js';
import type { AdjustLr, Layout, MatrixStepInfo, StepInfo } from './types.js';

export type MuonCoefficients = Extract<NsCoefficientName, 'keller' | 'polarExpress'>;
export const MUON_COEFFICIENTS: readonly MuonCoefficients[] = ['keller', 'polarExpress'];
export const MUON_ADJUST_LR = ['original', 'match_rms_adamw'] as const satisfies readonly AdjustLr[];

export interface MuonOptions {
  lr?: number;
  weightDecay?: number;
  momentum?: number;
  nesterov?: boolean;
  coefficients?: MuonCoefficients;
  nsSteps?: number;
  eps?: number;
  /** torch's adjust_lr_fn; its default None means "original". */
  adjustLr?: 'original' | 'match_rms_adamw';
}

export type MuonHyperparameters = {
  lr: number;
  weightDecay: number;
  momentum: number;
  nesterov: boolean;
  coefficients: MuonCoefficients;
  nsSteps: number;
  eps: number;
  adjustLr: 'original' | 'match_rms_adamw';
};

/**
 * The learning-rate multiplier for a stored rows×cols matrix. torch computes it on param.shape, which
 * is (out, in); a TF.js (in, out) kernel has the shape swapped.
 */
export function adjustLrScale(mode: AdjustLr, rows: number, cols: number, layout: Layout): number {
  const [a, b] = layout === 'outIn' ? [rows, cols] : [cols, rows];
  switch (mode) {
    case 'original':
      return Math.sqrt(Math.max(1, a / b));
    case 'match_rms_adamw':
      return 0.2 * Math.sqrt(Math.max(a, b));
    case 'spectral_norm':
      return Math.sqrt(a / b);
  }
}

export function frobeniusNorm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

export function rms(x: ArrayLike<number>): number {
  return x.length === 0 ? 0 : frobeniusNorm(x) / Math.sqrt(x.length);
}

/** The options every Muon-like optimizer shares, checked once for Muon and DynMuon alike. */
export function parseMuonLikeOptions(owner: string, o: Record<string, unknown>, defaults: { nesterov: boolean }) {
  return {
    lr: checkLr(owner, o.lr ?? MUON_DEFAULTS.lr),
    weightDecay: checkNumber(owner, 'weightDecay', o.weightDecay ?? MUON_DEFAULTS.weightDecay, { min: 0 }),
    momentum: checkNumber(owner, 'momentum', o.momentum ?? MUON_DEFAULTS.momentum, { min: 0, max: 1, maxExclusive: true }),
    nesterov: checkBoolean(owner, 'nesterov', o.nesterov ?? defaults.nesterov),
    coefficients: checkOneOf(owner, 'coefficients', o.coefficients ?? MUON_DEFAULTS.coefficients, MUON_COEFFICIENTS, 'UNKNOWN_COEFFICIENTS'),
    nsSteps: checkInteger(owner, 'nsSteps', o.nsSteps ?? MUON_DEFAULTS.nsSteps, 1, 99),
    eps: checkNumber(owner, 'eps', o.eps ?? MUON_DEFAULTS.eps, { min: 0, minExclusive: true }),
  };
}

export function optionsObject(owner: string, raw: unknown): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new MuonscopeError('INVALID_HYPERPARAMETER', `${owner}: options must be an object`);
  }
  return raw as Record<string, unknown>;
}

const OWNER = 'Muon';

export function parseMuonOptions(raw: unknown): MuonHyperparameters {
  const o = optionsObject(OWNER, raw);
  return {
    ...parseMuonLikeOptions(OWNER, o, { nesterov: MUON_DEFAULTS.nesterov }),
    adjustLr: checkOneOf(OWNER, 'adjustLr', o.adjustLr ?? MUON_DEFAULTS.adjustLr, MUON_ADJUST_LR, 'INVALID_HYPERPARAMETER'),
  };
}

export class Muon extends OptimizerBase<MuonHyperparameters> {
  private readonly kernels: MatrixOps;
  private info: StepInfo | null = null;

  /** 2-D parameters only; `layout` tells the lr adjustment which side is "out". */
  constructor(params: readonly ParamInput[], options: MuonOptions, kernels: MatrixOps) {
    super('muon', bindParams(params, OWNER, true), parseMuonOptions(options));
    this.kernels = kernels;
  }

  protected bufferNames(): string[] {
    return ['momentum'];
  }

  protected parseHyperparameters(raw: unknown): MuonHyperparameters {
    return parseMuonOptions(raw);
  }

  /** What the last step did per matrix (p = 0: Newton–Schulz approximates the polar factor). */
  get lastStepInfo(): StepInfo | null {
    return this.info;
  }

  async prepareStep(grads: Record<string, tf.Tensor>): Promise<() => void> {
    const g = await readGradients(this.params, grads, OWNER);
    const weights = await readValues(this.params);
    const hp = this.hp;
    const set = NS_COEFFICIENT_SETS[hp.coefficients];
    const steps = expandNsSteps(set, hp.nsSteps);
    // One matrix at a time: the kernels run each product multi-threaded already.
    const results: { p: BoundParam; out: MuonStepOutput; info: MatrixStepInfo }[] = [];
    for (const [k, p] of this.params.entries()) {
      const [rows, cols] = p.shape;
      const scale = adjustLrScale(hp.adjustLr, rows, cols, p.layout);
      const out = await this.kernels.muonStep({
        rows,
        cols,
        weight: weights[k],
        grad: g[k],
        momentumBuffer: this.buffers.get(p.name)!.momentum,
        lr: hp.lr,
        weightDecay: hp.weightDecay,
        momentum: hp.momentum,
        nesterov: hp.nesterov,
        scale,
        steps,
        eps: hp.eps,
        normSafety: set.normSafety,
      });
      results.push({ p, out, info: { name: p.name, p: 0, normPowP: 1, updateRms: rms(out.update) * scale, method: 'ns' } });
    }
    const step = this.steps;
    return () => {
      for (const { p, out } of results) {
        writeValue(p, out.weight);
        this.buffers.set(p.name, { momentum: out.momentumBuffer });
      }
      this.info = { step, matrices: results.map((r) => r.info) };
      this.steps = step + 1;
    };
  }
}
