/**
 * The mode probe: what the mode model (docs/algorithms.md §10, ./mode-model.ts) needs, measured on the
 * running model, and the model's one p for all layers, with a one-step cross-check beside it.
 *
 * Per layer, from the SVD of the matrix the next step shapes (the Nesterov-blended momentum): k singular
 * directions u·vᵀ at log-spaced ranks, each with σ, the curvature (u·vᵀ)ᵀH(u·vᵀ) (one finite-difference
 * Hessian-vector product in that layer's block) and the gradient component uᵀG_k v on each of K held-out
 * microbatches of equal size, whose mean is g and whose unbiased variance (K − 1) is c, the noise of one
 * microbatch's gradient.
 *
 * The cross-check scores each candidate p's shaped step d_p by (g_Aᵀd)(g_Bᵀd)/(dᵀHd), g_A and g_B the
 * gradients of the two halves of the microbatches: independent, so E[(g_Aᵀd)(g_Bᵀd)] = (E gᵀd)², and the
 * noise in g does not favour the p whose d_p lines up with it (the scale-free score of ./p-scores.ts with
 * an unbiased numerator).
 *
 * The measuring functions take a Landscape and gradients as plain arrays, so they are tested against an
 * exact numpy Hessian without any model; the runner (trainer/run/advisor-runner.ts) feeds them the model.
 */
import type { CrossCheckPoint, ModeDirection } from '../../common/protocol.js';
import { curvatureAlongSingularDirections, directionalCurvature, dotDirections, type Direction, type Landscape, type Theta } from '../diagnostics/index.js';
import { svd } from '../linalg/index.js';
import { recommendPJoint, type JointRecommendation, type ModeModelInput, type ModeModelOptions, type ShapingNormalisation } from './mode-model.js';
import { shapedDirection, type ProbeLayer, type ProbeShaping } from './p-probe.js';

/** Singular directions measured per layer (each costs one Hessian-vector product, two gradients). */
export const DEFAULT_PROBE_DIRECTIONS = 12;
/** Microbatches the held-out batch is split into: c has K − 1 degrees of freedom. */
export const DEFAULT_PROBE_MICROBATCHES = 8;
/**
 * Curvature Hessian-vector products per probe: two layers' worth at the default 12 directions. The default
 * transformer has 12 matrix layers; measuring all of them (144 products, ~290 gradients) every probe would
 * cost more than the steps between probes, so they are measured in turns (see `planLayers`).
 */
export const DEFAULT_PROBE_MAX_HVPS = 24;
/** The cross-check's candidates; the p in force is added. */
export const CROSS_CHECK_CANDIDATES: readonly number[] = [-0.5, -0.25, 0, 0.25, 0.5];

/** One layer's measured directions, and when they were measured. */
export interface LayerModes {
  layer: string;
  rows: number;
  cols: number;
  /** Muon's lr scale for this layer. */
  scale: number;
  /** The step the layer was measured at. */
  step: number;
  /** min(rows, cols). */
  rankCount: number;
  directions: ModeDirection[];
}

/**
 * k distinct ranks (0 = largest σ) log-spaced from 0 to rankCount − 1: round(rankCount^(i/(k−1))) − 1,
 * each pushed up past the one before and down so that the ones after still fit (near the top several
 * land on the same integer). All ranks when k ≥ rankCount. Rounding is half up (numpy's reference uses
 * floor(x + 0.5), not its round-half-even).
 */
export function logSpacedRanks(rankCount: number, k: number): number[] {
  if (!Number.isInteger(rankCount) || rankCount < 1) throw new Error(`logSpacedRanks: rankCount must be a positive integer, got ${rankCount}`);
  if (!Number.isInteger(k) || k < 1) throw new Error(`logSpacedRanks: k must be a positive integer, got ${k}`);
  if (k >= rankCount) return Array.from({ length: rankCount }, (_, i) => i);
  if (k === 1) return [0];
  const out: number[] = [];
  for (let i = 0; i < k; i++) {
    const x = Math.floor(rankCount ** (i / (k - 1)) + 0.5) - 1;
    const lo = out.length > 0 ? out[out.length - 1] + 1 : 0;
    const hi = rankCount - (k - i);
    out.push(Math.min(Math.max(x, lo), hi));
  }
  return out;
}

/**
 * The layers to measure this probe when the cap allows `floor(maxHvps / k)` of them (at least one): all
 * of them if that is every layer, otherwise the next ones in turn from `cursor`, wrapping around.
 */
export function planLayers(layerCount: number, k: number, maxHvps: number, cursor: number): { indices: number[]; next: number } {
  if (layerCount === 0) return { indices: [], next: 0 };
  const share = Math.max(1, Math.floor(maxHvps / k));
  if (share >= layerCount) return { indices: Array.from({ length: layerCount }, (_, i) => i), next: 0 };
  const start = ((cursor % layerCount) + layerCount) % layerCount;
  const indices = Array.from({ length: share }, (_, i) => (start + i) % layerCount);
  return { indices, next: (start + share) % layerCount };
}

/** The element-wise mean of several gradients (float64 sums, float32 out, like a model's gradient). */
export function meanGradient(grads: readonly Theta[]): Theta {
  if (grads.length === 0) throw new Error('meanGradient: no gradients');
  const out: Theta = {};
  for (const name of Object.keys(grads[0])) {
    const n = grads[0][name].length;
    const sum = new Float64Array(n);
    for (const g of grads) {
      const x = g[name];
      if (!x || x.length !== n) throw new Error(`meanGradient: gradient for ${name} missing or of another size`);
      for (let i = 0; i < n; i++) sum[i] += x[i];
    }
    out[name] = Float32Array.from(sum, (s) => s / grads.length);
  }
  return out;
}

/** uᵀ G v for the pair `index` of a thin SVD (u rows×k, v cols×k, row-major) and a rows×cols G. */
export function singularComponent(g: ArrayLike<number>, u: Float64Array, v: Float64Array, k: number, index: number, rows: number, cols: number): number {
  let s = 0;
  for (let r = 0; r < rows; r++) {
    let row = 0;
    for (let c = 0; c < cols; c++) row += g[r * cols + c] * v[c * k + index];
    s += u[r * k + index] * row;
  }
  return s;
}

/** Mean and unbiased variance (n − 1) of the values. */
export function meanAndVariance(x: readonly number[]): { mean: number; variance: number } {
  if (x.length < 2) throw new Error(`meanAndVariance: needs two or more values, got ${x.length}`);
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  const variance = x.reduce((a, b) => a + (b - mean) * (b - mean), 0) / (x.length - 1);
  return { mean, variance };
}

/**
 * One layer's directions: the SVD of `layer.source`, curvature along u·vᵀ at the log-spaced ranks by
 * Hessian-vector products on `landscape` (the whole held-out batch), and the components of the K
 * microbatch gradients `microGrads` (each the layer's block, rows×cols as the variable stores it).
 */
export async function measureLayer(landscape: Landscape, theta: Theta, layer: ProbeLayer, microGrads: readonly ArrayLike<number>[], k: number, step: number): Promise<LayerModes> {
  const { name, rows, cols } = layer;
  if (layer.source.length !== rows * cols) throw new Error(`mode probe: ${name}'s source has ${layer.source.length} values, not ${rows}×${cols}`);
  if (microGrads.length < 2) throw new Error(`mode probe: needs two or more microbatch gradients, got ${microGrads.length}`);
  const pairs = svd(layer.source, rows, cols);
  const rankCount = Math.min(rows, cols);
  const ranks = logSpacedRanks(rankCount, k);
  const curv = await curvatureAlongSingularDirections(landscape, theta, name, { rows, cols, u: pairs.u, v: pairs.v, s: pairs.s }, ranks);
  const directions = ranks.map((rank, i) => {
    const { mean, variance } = meanAndVariance(microGrads.map((g) => singularComponent(g, pairs.u, pairs.v, rankCount, rank, rows, cols)));
    return { rank, sigma: pairs.s[rank], curvature: curv.directions[i].kappa, gradient: mean, noiseVariance: variance };
  });
  return { layer: name, rows, cols, scale: layer.scale, step, rankCount, directions };
}

/** What the mode model needs beyond the measurements: the horizon, the p in force and how the run shapes. */
export interface ModeContext {
  /** The optimizer's lr over the next steps (each layer's scale is applied here). */
  lrs: readonly number[];
  currentP: number;
  stepsTaken: number;
  normalisation: ShapingNormalisation;
  damping: number;
  microbatchSize: number;
  microbatches: number;
  /** The training step's batch size. */
  batchSize: number;
}

/** The mode model's input for one measured layer: c is one microbatch's variance, g averages all of them. */
export function modeModelInput(m: LayerModes, ctx: ModeContext): ModeModelInput {
  return {
    directions: m.directions,
    rankCount: m.rankCount,
    noise: { kind: 'perBatch', batchSize: ctx.microbatchSize },
    gradientSamples: ctx.microbatches * ctx.microbatchSize,
    batchSize: ctx.batchSize,
    lrs: ctx.lrs.map((lr) => lr * m.scale),
    currentP: ctx.currentP,
    stepsTaken: ctx.stepsTaken,
    normalisation: ctx.normalisation,
    damping: ctx.damping,
  };
}

/** Three distinct ranks with positive σ, curvature and noise: what the mode model can fit (it throws below). */
export function fittable(m: LayerModes): boolean {
  const ok = m.directions.filter((d) => d.sigma > 0 && d.curvature > 0 && d.noiseVariance > 0 && Number.isFinite(d.gradient));
  return new Set(ok.map((d) => d.rank)).size >= 3;
}

/** The joint recommendation over the layers the model can fit (null when none can). */
export function recommendFromModes(layers: readonly LayerModes[], ctx: ModeContext, options: ModeModelOptions = {}): { layers: LayerModes[]; recommendation: JointRecommendation } | null {
  const usable = layers.filter(fittable);
  if (usable.length === 0) return null;
  return { layers: usable, recommendation: recommendPJoint(usable.map((m) => modeModelInput(m, ctx)), options) };
}

/** (g_Aᵀd)(g_Bᵀd)/(dᵀHd); null without positive curvature along d (the quadratic model has no best step). */
export function splitScore(gdA: number, gdB: number, dHd: number): number | null {
  return dHd > 0 ? (gdA * gdB) / dHd : null;
}

/**
 * The cross-check over `candidates`: d_p as the run would shape it (over all matrix layers), dᵀHd by one
 * Hessian-vector product on `landscape`, gᵀd on each half. A candidate without positive curvature is
 * recorded with score 0 and never chosen; `bestP` is null when no candidate has it.
 */
export async function crossCheck(
  landscape: Landscape,
  theta: Theta,
  layers: ProbeLayer[],
  gradA: Theta,
  gradB: Theta,
  candidates: readonly number[],
  shaping: ProbeShaping,
): Promise<{ points: CrossCheckPoint[]; bestP: number | null }> {
  const products: Omit<CrossCheckPoint, 'score'>[] = [];
  for (const p of candidates) {
    const d: Direction = shapedDirection(layers, p, shaping);
    const { dHd } = await directionalCurvature(landscape, theta, d);
    products.push({ p, gdA: dotDirections(d, gradA), gdB: dotDirections(d, gradB), dHd });
  }
  return scoreCrossCheck(products);
}

/**
 * The cross-check's scores from its products (measured here, or by a PyTorch run's Python process): a
 * candidate without positive curvature scores 0 and is never chosen; `bestP` is null when none has it.
 */
export function scoreCrossCheck(products: readonly Omit<CrossCheckPoint, 'score'>[]): { points: CrossCheckPoint[]; bestP: number | null } {
  const points: CrossCheckPoint[] = [];
  let bestP: number | null = null;
  let bestScore = -Infinity;
  for (const { p, gdA, gdB, dHd } of products) {
    const score = splitScore(gdA, gdB, dHd);
    points.push({ p, score: score ?? 0, gdA, gdB, dHd });
    if (score !== null && score > bestScore) [bestScore, bestP] = [score, p];
  }
  return { points, bestP };
}

/** The path of the first number in `x` that is not finite (NaN, ±∞), or null when every one is. */
export function nonFinitePath(x: unknown, path = ''): string | null {
  if (typeof x === 'number') return Number.isFinite(x) ? null : path || '(value)';
  if (ArrayBuffer.isView(x)) {
    const a = x as unknown as ArrayLike<number>;
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return `${path}[${i}]`;
    return null;
  }
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) {
      const bad = nonFinitePath(x[i], `${path}[${i}]`);
      if (bad) return bad;
    }
    return null;
  }
  if (typeof x === 'object' && x !== null) {
    for (const [key, value] of Object.entries(x)) {
      const bad = nonFinitePath(value, path ? `${path}.${key}` : key);
      if (bad) return bad;
    }
  }
  return null;
}
