/**
 * Gradient noise (docs/algorithms.md §5): the simple noise scale B_simple = tr(Σ)/|G|² of McCandlish et al.
 * (arXiv 1812.06162) by the two-batch estimator, and the signal-to-noise ratio of the gradient along the
 * momentum's top singular directions. Pure functions and one small EMA accumulator.
 */
import { MuonscopeError } from '../../common/errors.js';
import type { SingularPairs } from './curvature.js';

/** Unbiased single-step estimates of |G|² and tr(Σ) (per-example gradient covariance). */
export interface TwoBatchSample {
  gradSq: number;
  traceSigma: number;
}

/**
 * E|G_b|² = |G|² + tr(Σ)/b for a mean gradient over b examples, so two batch sizes b < B give
 * |G|² ≈ (B|G_B|² − b|G_b|²)/(B − b) and tr(Σ) ≈ (|G_b|² − |G_B|²)/(1/b − 1/B). Either may come out
 * negative on one step; only their averages are meaningful.
 */
export function twoBatchEstimate(smallNormSq: number, smallBatch: number, bigNormSq: number, bigBatch: number): TwoBatchSample {
  if (!(bigBatch > smallBatch && smallBatch > 0)) throw new MuonscopeError('INVALID_ARGUMENT', `twoBatchEstimate: need 0 < b < B, got b=${smallBatch}, B=${bigBatch}`);
  return {
    gradSq: (bigBatch * bigNormSq - smallBatch * smallNormSq) / (bigBatch - smallBatch),
    traceSigma: (smallNormSq - bigNormSq) / (1 / smallBatch - 1 / bigBatch),
  };
}

/** A gradient by parameter name, as `Landscape.gradient` or the training step produces it. */
export type Gradients = Record<string, Float32Array>;

/**
 * The two-batch estimate from K ≥ 2 microbatches of `microSize` examples each: the small batch is a
 * microbatch (|G_b|² averaged over all K, which keeps it unbiased and K times less noisy) and the big
 * batch is their mean (B = K·b). Per parameter and over the whole model, from the same gradients.
 */
export function microbatchNoise(micro: Gradients[], microSize: number): { perParam: Record<string, TwoBatchSample>; overall: TwoBatchSample } {
  const k = micro.length;
  if (k < 2) throw new MuonscopeError('INVALID_ARGUMENT', `microbatchNoise: need at least 2 microbatches, got ${k}`);
  const perParam: Record<string, TwoBatchSample> = {};
  let small = 0;
  let big = 0;
  for (const name of Object.keys(micro[0])) {
    const len = micro[0][name].length;
    const mean = new Float64Array(len);
    let smallSq = 0;
    for (const g of micro) {
      const x = g[name];
      for (let i = 0; i < len; i++) {
        smallSq += x[i] * x[i];
        mean[i] += x[i] / k;
      }
    }
    smallSq /= k;
    let bigSq = 0;
    for (let i = 0; i < len; i++) bigSq += mean[i] * mean[i];
    perParam[name] = twoBatchEstimate(smallSq, microSize, bigSq, k * microSize);
    small += smallSq;
    big += bigSq;
  }
  return { perParam, overall: twoBatchEstimate(small, microSize, big, k * microSize) };
}

/**
 * B_simple from bias-corrected EMAs of |G|² and tr(Σ), kept separately and divided at the end: the
 * ratio of single-step estimates is far too noisy (its denominator is often near 0 or negative). With
 * both EMAs updated together the bias correction cancels in B_simple itself; it matters for the two
 * corrected averages, which are meaningful on their own.
 */
export class NoiseScaleEma {
  private gradSqEma = 0;
  private traceEma = 0;
  private count = 0;

  constructor(readonly beta = 0.99) {
    if (!(beta >= 0 && beta < 1)) throw new MuonscopeError('INVALID_ARGUMENT', `NoiseScaleEma: beta must be in [0, 1), got ${beta}`);
  }

  /** The running sums, for checkpoints: a resumed run continues the same estimates. */
  toJSON(): { gradSqEma: number; traceEma: number; count: number; beta: number } {
    return { gradSqEma: this.gradSqEma, traceEma: this.traceEma, count: this.count, beta: this.beta };
  }

  static fromJSON(state: unknown): NoiseScaleEma {
    const s = state as { gradSqEma?: unknown; traceEma?: unknown; count?: unknown; beta?: unknown } | null;
    const ok = s && [s.gradSqEma, s.traceEma, s.count, s.beta].every((v) => typeof v === 'number' && Number.isFinite(v)) && Number.isInteger(s.count) && (s.count as number) >= 0;
    if (!ok) throw new MuonscopeError('INVALID_STATE', `NoiseScaleEma: not a saved state: ${JSON.stringify(state)?.slice(0, 200)}`);
    const ema = new NoiseScaleEma(s.beta as number);
    ema.gradSqEma = s.gradSqEma as number;
    ema.traceEma = s.traceEma as number;
    ema.count = s.count as number;
    return ema;
  }

  update(sample: TwoBatchSample): void {
    this.gradSqEma = this.beta * this.gradSqEma + (1 - this.beta) * sample.gradSq;
    this.traceEma = this.beta * this.traceEma + (1 - this.beta) * sample.traceSigma;
    this.count++;
  }

  /** Bias-corrected EMA of |G|²; null before the first update. */
  get gradSq(): number | null {
    return this.count > 0 ? this.gradSqEma / (1 - this.beta ** this.count) : null;
  }

  /** Bias-corrected EMA of tr(Σ); null before the first update. */
  get traceSigma(): number | null {
    return this.count > 0 ? this.traceEma / (1 - this.beta ** this.count) : null;
  }

  /**
   * tr(Σ)/|G|²; null until there is an estimate and while |G|² ≤ 0 (the signal is below the estimator's
   * noise). A negative tr(Σ) average means the noise is below the estimator's resolution: reported as 0.
   */
  get bSimple(): number | null {
    const g = this.gradSq;
    const t = this.traceSigma;
    if (g === null || t === null || !(g > 0)) return null;
    return Math.max(0, t) / g;
  }
}

export interface DirectionSnr {
  index: number;
  sigma: number;
  /** s_i = mean_k u_iᵀ G_k v_i. */
  mean: number;
  /** n_i = std_k u_iᵀ G_k v_i (sample standard deviation, K − 1). */
  std: number;
  /** |s_i|/n_i; when n_i = 0, 0 for a zero mean and Number.MAX_VALUE otherwise (∞ is not JSON). */
  snr: number;
}

/**
 * Signal-to-noise of the gradient along the singular directions u_i v_iᵀ of the momentum, from K ≥ 2
 * microbatch gradients stored like M (rows×cols row-major). Directions with SNR ≪ 1 are the ones a
 * negative p amplifies.
 */
export function directionSnr(micro: Float32Array[], pairs: SingularPairs, indices: number[]): DirectionSnr[] {
  const kk = micro.length;
  if (kk < 2) throw new MuonscopeError('INVALID_ARGUMENT', `directionSnr: need at least 2 microbatch gradients, got ${kk}`);
  const { rows, cols, u, v, s } = pairs;
  const k = s.length;
  return indices.map((i) => {
    const proj = micro.map((g) => {
      let total = 0;
      for (let r = 0; r < rows; r++) {
        let row = 0;
        for (let c = 0; c < cols; c++) row += g[r * cols + c] * v[c * k + i];
        total += u[r * k + i] * row;
      }
      return total;
    });
    const mean = proj.reduce((a, b) => a + b, 0) / kk;
    const std = Math.sqrt(proj.reduce((a, b) => a + (b - mean) ** 2, 0) / (kk - 1));
    const snr = std > 0 ? Math.abs(mean) / std : mean === 0 ? 0 : Number.MAX_VALUE;
    return { index: i, sigma: s[i], mean, std, snr };
  });
}
