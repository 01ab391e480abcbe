/**
 * The model-based choice of DynMuon's p (docs/algorithms.md §10), after the DynMuon paper's mode model.
 *
 * Measurements along k singular directions of one layer's momentum M — its singular value σ_i, the curvature
 * h_i along u_i·v_iᵀ (Hessian-vector products), the mean gradient component g_i and its noise variance c_i —
 * are fitted (h against σ, whose log–log slope is 2 when GGᵀ ≈ αH; the noise law c ∝ h^β), interpolated to a
 * log-spaced grid of modes, each weighted by how many singular values it stands for, and every mode's error
 * is rolled forward in expectation over the next steps for each p on a grid:
 *
 *     δ_{t+1} = (1 − η_t·s(p)·P_i(p)·h_i)·δ_t − η_t·s(p)·P_i(p)·ξ_t,   E[ξ_t²] = c_i/B,
 *
 * with P_i(p) = (σ_i² + (ε·σ_max)²)^((p−1)/2), DynMuon `exact`'s damped shaping φ_p(σ)/σ, applied to the
 * stochastic gradient, and s(p) the normalisation of the shaped update (Frobenius-matched to Muon's √r,
 * spectral-matched to Muon's 1, or none). The recommended p minimises the expected loss Σ h_i·E[δ_i²] at the
 * end of the horizon, averaged over a seeded bootstrap of the k measurements, which also says how firmly the
 * data pick it.
 *
 * Pure: numbers and typed arrays in, numbers out; no TF.js.
 */
import { mulberry32 } from '../data/random.js';
import type { ShapedNormalization } from '../optim/dynmuon.js';
import { fitLogLog, type LogLogFit } from '../linalg/log-log-fit.js';

export { fitLogLog, type LogLogFit };

/** DynMuon exact's normalisation of the shaped step (the optimizer's own option). */
export type ShapingNormalisation = ShapedNormalization;

/** −0.5 … 0.75 in steps of 0.125. */
export const DEFAULT_P_GRID: readonly number[] = Array.from({ length: 11 }, (_, i) => -0.5 + 0.125 * i);
/** DynMuon `exact`'s damping ε (docs/algorithms.md §2.3). */
export const DEFAULT_DAMPING = 1e-3;
/** Log-spaced buckets of ranks the measurements are interpolated to: the top ranks alone, the tail grouped. */
export const DEFAULT_NODES = 48;
export const DEFAULT_REPLICATES = 64;
const MIN_DIRECTIONS = 3;
/** The curve's band: these quantiles of the bootstrap replicates' expected loss. */
const BAND_LOW = 0.1;
const BAND_HIGH = 0.9;

export interface DirectionMeasurement {
  /** Position of σ in M's spectrum, 0 = largest. */
  rank: number;
  /** Singular value of the momentum M. */
  sigma: number;
  /** (u·vᵀ)ᵀ H (u·vᵀ). */
  curvature: number;
  /** Mean gradient component along u·vᵀ over the measurement batches. */
  gradient: number;
  /** Variance of the gradient component along u·vᵀ, of one sample or one batch as `noise` says. */
  noiseVariance: number;
}

/** What `noiseVariance` is the variance of: one sample's gradient, or one batch's of `batchSize` samples. */
export type NoiseBasis = { kind: 'perSample' } | { kind: 'perBatch'; batchSize: number };

export interface ModeModelInput {
  /** At least 3 directions, ideally ~16 at log-spaced ranks from the top to the bottom of the spectrum. */
  directions: readonly DirectionMeasurement[];
  /** How many singular values M has: min(rows, cols). */
  rankCount: number;
  noise: NoiseBasis;
  /** Samples averaged in each `gradient` (microbatches × their size): its sampling variance is c/this. */
  gradientSamples: number;
  /** The training step's batch size: the per-step noise along a direction is the per-sample one / this. */
  batchSize: number;
  /** The learning rate of each of the next steps (θ ← θ − lr·update, the layer's lr scale included). */
  lrs: ArrayLike<number>;
  /** The p in force and the steps taken so far: the noise floor under the modes is what they built up. */
  currentP: number;
  stepsTaken: number;
  normalisation: ShapingNormalisation;
  damping?: number;
}

export interface ModeModelOptions {
  pGrid?: readonly number[];
  nodes?: number;
  replicates?: number;
  seed?: number;
}


export interface PCurvePoint {
  p: number;
  /** Expected Σ h·E[δ²] at the end of the horizon. */
  loss: number;
  /** The part still owed to today's error (the contracted mean). */
  residual: number;
  /** The part from gradient noise (the accumulated variance). */
  noise: number;
  /** Geometric mean of `loss` over the bootstrap replicates: the curve p is chosen on. */
  bagged: number;
  /** Bootstrap band of `loss`. */
  low: number;
  high: number;
}

export interface ModeModelRecommendation {
  p: number;
  /** Expected loss against p: the evidence for the choice. */
  curve: PCurvePoint[];
  /** ln h against ln σ; GGᵀ ≈ αH predicts slope 2, and r² says how well σ orders curvature. */
  curvatureVsSigma: LogLogFit;
  /** ln c (per sample) against ln h: the slope is the noise law's β. */
  noiseVsCurvature: LogLogFit;
  /** Fraction of bootstrap replicates whose best p lies within one grid step of `p`. */
  confidence: number;
  replicates: number;
  /** Directions left out because their curvature, σ or noise was not positive. */
  ignoredDirections: number;
}

/** The interpolated modes: weights count singular values; noise is per step, at the training batch size. */
export interface Modes {
  weight: Float64Array;
  curvature: Float64Array;
  sigma: Float64Array;
  noise: Float64Array;
}

/** Each mode's expected squared error, split into the contracted mean² (residual) and the variance. */
export interface ModeState {
  residual: Float64Array;
  variance: Float64Array;
}

/** s(p)·P_i(p): the step along each mode per unit gradient and unit lr. */
export function shapingGains(sigma: Float64Array, weight: Float64Array, p: number, normalisation: ShapingNormalisation, damping: number): Float64Array {
  let sigmaMax = 0;
  for (const s of sigma) sigmaMax = Math.max(sigmaMax, s);
  const delta = (damping * sigmaMax) ** 2;
  const gains = new Float64Array(sigma.length);
  let phiMax = 0;
  let phiSquares = 0;
  let count = 0;
  for (let i = 0; i < sigma.length; i++) {
    gains[i] = (sigma[i] * sigma[i] + delta) ** ((p - 1) / 2);
    const phi = sigma[i] * gains[i];
    phiMax = Math.max(phiMax, phi);
    phiSquares += weight[i] * phi * phi;
    count += weight[i];
  }
  const scale = normalisation === 'frobenius' ? Math.sqrt(count / phiSquares) : normalisation === 'spectral' ? 1 / phiMax : 1;
  for (let i = 0; i < gains.length; i++) gains[i] *= scale;
  return gains;
}

/** The cap on a mode's expected squared error: far beyond any real loss, far below float64's overflow. */
export const DIVERGED = 1e100;

/** The expected state after the steps `lrs`: the mean² contracts by a², the variance by a² plus (lr·gain)²·c. */
export function rollForward(modes: Modes, gains: Float64Array, lrs: ArrayLike<number>, start: ModeState): ModeState {
  const residual = Float64Array.from(start.residual);
  const variance = Float64Array.from(start.variance);
  for (let i = 0; i < residual.length; i++) {
    let r = residual[i];
    let v = variance[i];
    const h = modes.curvature[i];
    const c = modes.noise[i];
    for (let t = 0; t < lrs.length; t++) {
      const step = lrs[t] * gains[i];
      const a = 1 - step * h;
      // A mode the step makes unstable (|a| > 1) grows geometrically; held at DIVERGED it stays finite (the
      // record's numbers must be) and still far above any curve point that converges.
      r = Math.min(r * a * a, DIVERGED);
      v = Math.min(a * a * v + step * step * c, DIVERGED);
    }
    residual[i] = r;
    variance[i] = v;
  }
  return { residual, variance };
}

/** Σ weight·h·E[δ²], with its residual and noise parts. */
export function expectedLoss(modes: Modes, state: ModeState): { loss: number; residual: number; noise: number } {
  let residual = 0;
  let noise = 0;
  for (let i = 0; i < modes.weight.length; i++) {
    residual += modes.weight[i] * modes.curvature[i] * state.residual[i];
    noise += modes.weight[i] * modes.curvature[i] * state.variance[i];
  }
  return { loss: residual + noise, residual, noise };
}

/**
 * Buckets of ranks (1-based) with log-spaced edges between 1 and rankCount + 1: the top ranks alone, the tail
 * grouped. Each bucket's position is the geometric mean of its ranks, its weight their count.
 */
export function modeGrid(rankCount: number, nodes: number): { position: Float64Array; weight: Float64Array } {
  const edges = [1];
  for (let j = 1; j <= nodes; j++) {
    const e = Math.round((rankCount + 1) ** (j / nodes));
    if (e > edges[edges.length - 1]) edges.push(e);
  }
  if (edges[edges.length - 1] !== rankCount + 1) edges.push(rankCount + 1);
  const position = new Float64Array(edges.length - 1);
  const weight = new Float64Array(edges.length - 1);
  for (let j = 0; j + 1 < edges.length; j++) {
    let logSum = 0;
    for (let r = edges[j]; r < edges[j + 1]; r++) logSum += Math.log(r);
    weight[j] = edges[j + 1] - edges[j];
    position[j] = Math.exp(logSum / weight[j]);
  }
  return { position, weight };
}

/** Piecewise-linear interpolation at x of the points (xs ascending, ys), constant beyond the ends. */
function interpolate(xs: Float64Array, ys: Float64Array, x: number): number {
  if (x <= xs[0]) return ys[0];
  const last = xs.length - 1;
  if (x >= xs[last]) return ys[last];
  let j = 1;
  while (xs[j] < x) j++;
  const f = (x - xs[j - 1]) / (xs[j] - xs[j - 1]);
  return ys[j - 1] + f * (ys[j] - ys[j - 1]);
}

function perSampleNoise(input: ModeModelInput, variance: number): number {
  return input.noise.kind === 'perSample' ? variance : variance * input.noise.batchSize;
}

interface Fitted {
  modes: Modes;
  start: ModeState;
  curvatureVsSigma: LogLogFit;
  noiseVsCurvature: LogLogFit;
}

/**
 * The modes and their expected state from a set of measured directions (fits over all of them, duplicates
 * included; interpolation over the distinct ranks).
 *
 * A direction's squared error is estimated as (g² − c/n)/h², n the samples behind g and c the fitted noise
 * law at h (g² is biased up by g's sampling variance c/n), clipped at 0. Where the measurement cannot see
 * the error — below the noise the p and lr in force would have built up over the steps taken, the floor —
 * the floor stands in for it: the start is max(estimate, floor), the floor counted as variance and the
 * excess as residual.
 */
function fitModes(input: ModeModelInput, directions: readonly DirectionMeasurement[], grid: { position: Float64Array; weight: Float64Array }, damping: number): Fitted {
  const perSample = directions.map((d) => perSampleNoise(input, d.noiseVariance));
  const curvatureVsSigma = fitLogLog(
    directions.map((d) => d.sigma),
    directions.map((d) => d.curvature),
  );
  const noiseVsCurvature = fitLogLog(
    directions.map((d) => d.curvature),
    perSample,
  );

  const distinct = [...new Map(directions.map((d, i) => [d.rank, i])).entries()].sort((a, b) => a[0] - b[0]).map(([, i]) => i);
  const xs = Float64Array.from(distinct, (i) => Math.log(directions[i].rank + 1));
  const logSigma = Float64Array.from(distinct, (i) => Math.log(directions[i].sigma));
  const logCurvature = Float64Array.from(distinct, (i) => Math.log(directions[i].curvature));
  // The sampling variance of g from the fitted noise law: it pools every direction's degrees of freedom.
  const noiseAt = (h: number) => Math.exp(noiseVsCurvature.intercept) * h ** noiseVsCurvature.slope;
  const error = Float64Array.from(distinct, (i) => {
    const d = directions[i];
    return Math.max(d.gradient * d.gradient - noiseAt(d.curvature) / input.gradientSamples, 0) / (d.curvature * d.curvature);
  });

  const n = grid.position.length;
  const modes: Modes = { weight: grid.weight, curvature: new Float64Array(n), sigma: new Float64Array(n), noise: new Float64Array(n) };
  const estimate = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    const x = Math.log(grid.position[j]);
    modes.sigma[j] = Math.exp(interpolate(xs, logSigma, x));
    modes.curvature[j] = Math.exp(interpolate(xs, logCurvature, x));
    modes.noise[j] = noiseAt(modes.curvature[j]) / input.batchSize;
    estimate[j] = interpolate(xs, error, x);
  }

  const gains = shapingGains(modes.sigma, modes.weight, input.currentP, input.normalisation, damping);
  const lr = input.lrs[0];
  const start: ModeState = { residual: new Float64Array(n), variance: new Float64Array(n) };
  for (let j = 0; j < n; j++) {
    const step = lr * gains[j];
    const a = 1 - step * modes.curvature[j];
    const floor = Math.abs(a) < 1 ? ((step * step * modes.noise[j]) / (1 - a * a)) * (1 - (a * a) ** input.stepsTaken) : 0;
    start.variance[j] = floor;
    start.residual[j] = Math.max(estimate[j] - floor, 0);
  }
  return { modes, start, curvatureVsSigma, noiseVsCurvature };
}

function lossCurve(fitted: Fitted, input: ModeModelInput, pGrid: readonly number[], damping: number) {
  return pGrid.map((p) => {
    const gains = shapingGains(fitted.modes.sigma, fitted.modes.weight, p, input.normalisation, damping);
    return expectedLoss(fitted.modes, rollForward(fitted.modes, gains, input.lrs, fitted.start));
  });
}

function argmin(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] < values[best]) best = i;
  return best;
}

function quantile(sorted: readonly number[], q: number): number {
  const x = q * (sorted.length - 1);
  const lo = Math.floor(x);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (x - lo) * (sorted[hi] - sorted[lo]);
}

function usable(d: DirectionMeasurement): boolean {
  return d.sigma > 0 && d.curvature > 0 && d.noiseVariance > 0 && Number.isFinite(d.gradient) && Number.isInteger(d.rank) && d.rank >= 0;
}

/** The p on the grid with the least expected loss over the horizon, the curve behind it and its confidence. */
export function recommendP(input: ModeModelInput, options: ModeModelOptions = {}): ModeModelRecommendation {
  const joint = recommendPJoint([input], options);
  return { ...joint.layers[0], p: joint.p, curve: joint.curve, confidence: joint.confidence, replicates: joint.replicates };
}

/** Per layer: its fits, its own best p and how many of its directions were left out. */
export interface LayerRecommendation {
  p: number;
  curvatureVsSigma: LogLogFit;
  noiseVsCurvature: LogLogFit;
  ignoredDirections: number;
}

export interface JointRecommendation {
  /** The one p for all layers: the argmin of the bagged curve summed over layers. */
  p: number;
  curve: PCurvePoint[];
  confidence: number;
  replicates: number;
  layers: LayerRecommendation[];
}

/** The checked, usable directions of one layer's input. */
function usableDirections(input: ModeModelInput): DirectionMeasurement[] {
  if (input.lrs.length === 0) throw new Error('recommendP: no steps in the horizon (lrs is empty)');
  const directions = input.directions.filter(usable);
  for (const d of directions) {
    if (d.rank >= input.rankCount) throw new Error(`recommendP: rank ${d.rank} is outside a spectrum of ${input.rankCount}`);
  }
  if (new Set(directions.map((d) => d.rank)).size < MIN_DIRECTIONS) {
    throw new Error(`recommendP: needs ${MIN_DIRECTIONS} directions at distinct ranks with positive σ, curvature and noise; got ${directions.length} of ${input.directions.length}`);
  }
  return directions;
}

/**
 * One p for several layers (DynMuon's p is the run's, not a layer's): the layers' expected losses add in
 * the quadratic model, so the joint curve is their sum, and each bootstrap replicate resamples every
 * layer's directions at once.
 */
export function recommendPJoint(inputs: readonly ModeModelInput[], options: ModeModelOptions = {}): JointRecommendation {
  const pGrid = options.pGrid ?? DEFAULT_P_GRID;
  const replicates = options.replicates ?? DEFAULT_REPLICATES;
  if (pGrid.length === 0) throw new Error('recommendP: empty p grid');
  if (inputs.length === 0) throw new Error('recommendP: no layers');
  const layers = inputs.map((input) => {
    const directions = usableDirections(input);
    const damping = input.damping ?? DEFAULT_DAMPING;
    const grid = modeGrid(input.rankCount, options.nodes ?? DEFAULT_NODES);
    const fitted = fitModes(input, directions, grid, damping);
    const curve = lossCurve(fitted, input, pGrid, damping);
    return { input, directions, damping, grid, fitted, curve };
  });
  const curve = pGrid.map((_, i) => {
    let loss = 0;
    let residual = 0;
    let noise = 0;
    for (const l of layers) {
      loss += l.curve[i].loss;
      residual += l.curve[i].residual;
      noise += l.curve[i].noise;
    }
    return { loss, residual, noise };
  });

  // A bootstrap over the directions. The recommendation is the argmin of the replicates' geometric-mean curve
  // (bagging): the argmin of one curve fitted to noisy measurements varies more than that of the average.
  const rng = mulberry32(options.seed ?? 1);
  const replicateCurves: number[][] = [];
  for (let b = 0; b < replicates; b++) {
    const resamples = layers.map((l) => l.directions.map(() => l.directions[Math.floor(rng() * l.directions.length)]));
    if (resamples.some((r) => new Set(r.map((d) => d.rank)).size < 2)) continue;
    const sum = new Array<number>(pGrid.length).fill(0);
    layers.forEach((l, j) => {
      lossCurve(fitModes(l.input, resamples[j], l.grid, l.damping), l.input, pGrid, l.damping).forEach((c, i) => (sum[i] += c.loss));
    });
    replicateCurves.push(sum);
  }
  const n = replicateCurves.length;
  const bagged = curve.map((c, i) => (n > 0 ? Math.exp(replicateCurves.reduce((s, r) => s + Math.log(r[i]), 0) / n) : c.loss));
  const best = argmin(bagged);
  const agreeing = replicateCurves.filter((r) => Math.abs(argmin(r) - best) <= 1).length;
  const bands = pGrid.map((_, i) => replicateCurves.map((r) => r[i]).sort((x, y) => x - y));

  return {
    p: pGrid[best],
    curve: curve.map((c, i) => ({
      p: pGrid[i],
      ...c,
      bagged: bagged[i],
      low: n > 0 ? quantile(bands[i], BAND_LOW) : c.loss,
      high: n > 0 ? quantile(bands[i], BAND_HIGH) : c.loss,
    })),
    confidence: n > 0 ? agreeing / n : 0,
    replicates: n,
    layers: layers.map((l) => ({
      p: pGrid[argmin(l.curve.map((c) => c.loss))],
      curvatureVsSigma: l.fitted.curvatureVsSigma,
      noiseVsCurvature: l.fitted.noiseVsCurvature,
      ignoredDirections: l.input.directions.length - l.directions.length,
    })),
  };
}
