/**
 * Gradient noise (docs/algorithms.md §5): the simple noise scale B_simple = tr(Σ)/|G|² of McCandlish et al.
 * (arXiv 1812.06162, appendix A) by the unbiased two-batch estimators, averaged over a window of steps, and
 * the signal-to-noise ratio of the batch gradient along the momentum's singular directions with its
 * confidence interval. Pure functions and one small window accumulator.
 */
import { MuonscopeError } from '../../common/errors.js';
import type { RecordOf } from '../../common/protocol.js';
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

/** tr(Σ)/|G|²: null while |G|² ≤ 0 (the signal is below the estimator's noise); a negative tr(Σ) reads as 0. */
export function bSimpleOf(s: TwoBatchSample): number | null {
  return s.gradSq > 0 ? Math.max(0, s.traceSigma) / s.gradSq : null;
}

interface WindowEntry extends TwoBatchSample {
  step: number;
}

/**
 * The measurements of the last `steps` training steps, averaged: |G|² and tr(Σ) separately (each an
 * unbiased estimate, so their means are too), divided at the end — the ratio of single estimates is far
 * too noisy, its denominator often near 0 or negative. A window in steps, not in measurements, follows a
 * noise scale that grows during training however far apart the measurements are.
 */
export class NoiseWindow {
  private entries: WindowEntry[] = [];

  constructor(readonly steps: number) {
    if (!(Number.isInteger(steps) && steps >= 1)) throw new MuonscopeError('INVALID_ARGUMENT', `NoiseWindow: steps must be a whole number ≥ 1, got ${steps}`);
  }

  /** Adds the measurement at `step` and drops those `steps` or more steps older. */
  add(step: number, sample: TwoBatchSample): void {
    this.entries.push({ step, ...sample });
    this.entries = this.entries.filter((e) => step - e.step < this.steps);
  }

  /** The window's mean |G|² and tr(Σ), B_simple from them, and how many measurements it holds. */
  average(): { gradSq: number; traceSigma: number; bSimple: number | null; count: number } | null {
    const n = this.entries.length;
    if (n === 0) return null;
    const mean = { gradSq: this.entries.reduce((a, e) => a + e.gradSq, 0) / n, traceSigma: this.entries.reduce((a, e) => a + e.traceSigma, 0) / n };
    return { ...mean, bSimple: bSimpleOf(mean), count: n };
  }

  /** The measurements it holds, for checkpoints: a resumed run continues the same window. */
  toJSON(): { steps: number; entries: WindowEntry[] } {
    return { steps: this.steps, entries: this.entries.map((e) => ({ ...e })) };
  }

  /** A saved window; its width is the one configured now (`steps`), so a changed config applies at once. */
  static fromJSON(state: unknown, steps: number): NoiseWindow {
    const s = state as { entries?: unknown } | null;
    const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
    const ok = Array.isArray(s?.entries) && s.entries.every((e: Partial<WindowEntry> | null) => e && Number.isInteger(e.step) && finite(e.gradSq) && finite(e.traceSigma));
    if (!ok) throw new MuonscopeError('INVALID_STATE', `NoiseWindow: not a saved state: ${JSON.stringify(state)?.slice(0, 200)}`);
    const w = new NoiseWindow(steps);
    const entries = (s!.entries as WindowEntry[]).map((e) => ({ step: e.step, gradSq: e.gradSq, traceSigma: e.traceSigma }));
    const last = entries.at(-1)?.step ?? 0;
    w.entries = entries.filter((e) => last - e.step < steps);
    return w;
  }
}

/** What a per-direction SNR is of: one microbatch's gradient, the K-microbatch batch's (×√K), or the momentum's (×~1/√(1−μ) more). */
export type SnrOf = NonNullable<RecordOf<'noise'>['snrOf']>;

/** The confidence level of the SNR intervals. */
export const SNR_CONFIDENCE = 0.95;

export interface DirectionSnr {
  index: number;
  sigma: number;
  /** s_i = mean_k u_iᵀ G_k v_i over the K microbatches. */
  mean: number;
  /** n_i = std_k u_iᵀ G_k v_i (sample standard deviation, K − 1). */
  std: number;
  /**
   * SNR of the batch (the mean of the K microbatches): √K·|s_i|/n_i, the t statistic. When n_i = 0, 0 for
   * a zero mean and 1e12 otherwise (∞ is not JSON).
   */
  snr: number;
  /** SNR_CONFIDENCE interval of the batch SNR, from the noncentral t distribution with K − 1 degrees of freedom. */
  low: number;
  high: number;
}

/**
 * Signal-to-noise of the gradient along the singular directions u_i v_iᵀ of the momentum, from K ≥ 2
 * microbatch gradients stored like M (rows×cols row-major), as the SNR of the batch they make up, with its
 * interval. Directions with SNR ≪ 1 are the ones a negative p amplifies.
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
    if (!(std > 0)) {
      const snr = mean === 0 ? 0 : MAX_SNR;
      return { index: i, sigma: s[i], mean, std, snr, low: snr, high: snr };
    }
    const snr = Math.min(MAX_SNR, (Math.sqrt(kk) * Math.abs(mean)) / std);
    return { index: i, sigma: s[i], mean, std, snr, ...snrInterval(snr, kk - 1) };
  });
}

/** The largest SNR recorded (a finite stand-in for a direction without measurable noise). */
const MAX_SNR = 1e12;

/**
 * The confidence interval of δ = √K·μ/σ from the observed t = √K·|mean|/std: t is noncentral-t with ν = K − 1
 * degrees of freedom and noncentrality δ, and P(T ≤ t; ν, δ) falls as δ grows, so the bounds solve
 * P(T ≤ t; ν, δ_low) = (1 + c)/2 and P(T ≤ t; ν, δ_high) = (1 − c)/2 (δ_low = 0 when even δ = 0 cannot
 * reach it). Exact for a signed mean; for |mean| it is at least as wide as needed.
 */
export function snrInterval(t: number, dof: number, confidence = SNR_CONFIDENCE): { low: number; high: number } {
  const upperTail = (1 + confidence) / 2;
  const lowerTail = (1 - confidence) / 2;
  const solve = (target: number): number => {
    let lo = -1;
    let hi = Math.max(1, 2 * t);
    while (noncentralTCdf(t, dof, hi) > target) hi *= 2;
    for (let i = 0; i < 60 && hi - lo > 1e-7 * Math.max(1, hi); i++) {
      const mid = (lo + hi) / 2;
      if (noncentralTCdf(t, dof, mid) > target) lo = mid;
      else hi = mid;
    }
    return (lo + hi) / 2;
  };
  const low = noncentralTCdf(t, dof, 0) > upperTail ? Math.max(0, solve(upperTail)) : 0;
  return { low, high: Math.max(low, solve(lowerTail)) };
}

/**
 * P(T ≤ t) for T = (Z + δ)/√(V/ν), Z standard normal, V χ² with ν degrees of freedom:
 * E_s[Φ(t·s − δ)] over s = √(V/ν), by Simpson's rule on s's density (a scaled χ_ν), which lies within
 * [0, 1 + 12/√ν] to well below 1e-12.
 */
export function noncentralTCdf(t: number, dof: number, delta: number): number {
  const n = 400;
  const top = 1 + 12 / Math.sqrt(dof) + (dof < 3 ? 6 : 0);
  const h = top / n;
  // log density of s: log 2 + (ν/2)·log(ν/2) − lnΓ(ν/2) + (ν − 1)·log s − ν s²/2.
  const logNorm = Math.log(2) + (dof / 2) * Math.log(dof / 2) - logGamma(dof / 2);
  let total = 0;
  for (let i = 0; i <= n; i++) {
    const x = i * h;
    const density = x === 0 ? (dof === 1 ? Math.exp(logNorm) : 0) : Math.exp(logNorm + (dof - 1) * Math.log(x) - (dof * x * x) / 2);
    const w = i === 0 || i === n ? 1 : i % 2 === 1 ? 4 : 2;
    total += w * density * normalCdf(t * x - delta);
  }
  return Math.min(1, Math.max(0, (total * h) / 3));
}

/** Φ(x) from erfc. */
function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** erfc with fractional error below 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms: ~1e-15 relative). */
function logGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const y = x - 1;
  let a = c[0];
  const t = y + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (y + i);
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(a);
}
