/**
 * Curvature of the loss along the directions the optimizer cares about (docs/algorithms.md §4), from
 * finite-difference Hessian-vector products: Hv ≈ [∇L(θ + εv) − ∇L(θ − εv)]/(2ε). TF.js cannot
 * differentiate twice through tanh/sigmoid/exp (tfjs#3252), and two gradients are all this needs.
 *
 * Directions are sparse over parameters: a block that is absent is zero, so restricting v to one
 * layer's block is just leaving the others out, and the HVP is read back on v's blocks only (the
 * layer's diagonal block of H). Every function returns its cost: wall time and evaluations.
 */
import { fitLogLog, type LogLogFit } from '../linalg/log-log-fit.js';
import { gaussian, mulberry32 } from '../data/random.js';
import { lanczos, type RitzPair } from '../linalg/lanczos.js';
import type { RecordOf } from '../../common/protocol.js';
import type { Landscape, Theta } from './landscape.js';

export type Direction = Record<string, Float32Array | Float64Array>;

export interface Cost {
  ms: number;
  gradientEvals: number;
  lossEvals: number;
}

class Meter {
  private readonly start = performance.now();
  gradientEvals = 0;
  lossEvals = 0;
  cost(): Cost {
    return { ms: performance.now() - this.start, gradientEvals: this.gradientEvals, lossEvals: this.lossEvals };
  }
}

/** The blocks of `d` named in `names` (one layer: its weight, or weight and bias). */
export function restrictDirection(d: Direction, names: string[]): Direction {
  const out: Direction = {};
  for (const n of names) if (d[n]) out[n] = d[n];
  return out;
}

export function dotDirections(a: Direction, b: Direction): number {
  let s = 0;
  for (const [name, x] of Object.entries(a)) {
    const y = b[name];
    if (!y) continue;
    for (let i = 0; i < x.length; i++) s += x[i] * y[i];
  }
  return s;
}

export function directionNorm(d: Direction): number {
  return Math.sqrt(dotDirections(d, d));
}

function thetaNorm(theta: Theta): number {
  let s = 0;
  for (const x of Object.values(theta)) for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

/** θ + t·d, computed in float64 and rounded once to float32; blocks outside d are shared, not copied. */
function shifted(theta: Theta, d: Direction, t: number): Theta {
  const out: Theta = { ...theta };
  for (const [name, x] of Object.entries(d)) {
    const base = theta[name];
    const y = new Float32Array(base.length);
    for (let i = 0; i < y.length; i++) y[i] = base[i] + t * x[i];
    out[name] = y;
  }
  return out;
}

/**
 * ε for the central difference. Its truncation error is O(ε²·‖v‖³·∇³L) and the fp32 round-off in the two
 * gradients is amplified by 1/ε, so the balance sits near ε‖v‖ ∝ u^{1/3} of θ's size (u = 6e-8 in fp32,
 * u^{1/3} ≈ 4e-3). 1e-3·(1 + ‖θ‖)/‖v‖ moves θ by a step 1e-3 of its own norm (1e-3 absolute near 0), at the
 * small side of that balance because the fixture tests (tanh MLP, fp32) hold it to 2% of the exact
 * Hessian with room to spare, while larger steps start to see third-order terms in sharper regions.
 */
export function finiteDifferenceEpsilon(theta: Theta, v: Direction): number {
  const nv = directionNorm(v);
  return nv > 0 ? (1e-3 * (1 + thetaNorm(theta))) / nv : 0;
}

interface Hvp {
  /** H·v on v's blocks. */
  hv: Record<string, Float64Array>;
  /** ∇L(θ) on v's blocks: the mean of the two gradients, exact to O(ε²), for free. */
  g: Record<string, Float64Array>;
}

async function hvp(landscape: Landscape, theta: Theta, v: Direction, meter: Meter): Promise<Hvp> {
  const eps = finiteDifferenceEpsilon(theta, v);
  const plus = await landscape.gradient(shifted(theta, v, eps));
  const minus = await landscape.gradient(shifted(theta, v, -eps));
  meter.gradientEvals += 2;
  const hv: Record<string, Float64Array> = {};
  const g: Record<string, Float64Array> = {};
  for (const name of Object.keys(v)) {
    const a = plus.grads[name];
    const b = minus.grads[name];
    const h = new Float64Array(a.length);
    const m = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) {
      h[i] = (a[i] - b[i]) / (2 * eps);
      m[i] = 0.5 * (a[i] + b[i]);
    }
    hv[name] = h;
    g[name] = m;
  }
  return { hv, g };
}

export interface DirectionalCurvature {
  /** κ = dᵀHd/‖d‖². */
  kappa: number;
  dHd: number;
  /** gᵀd at θ (on d's blocks). */
  gd: number;
  /**
   * For a step θ − η·d: the quadratic model's best η* = gᵀd/dᵀHd (a step beyond 2η* increases the loss);
   * null without positive curvature along d (no minimum on the line). Negative when gᵀd < 0: d points
   * uphill on this batch, and every η > 0 raises the loss.
   */
  etaStar: number | null;
  cost: Cost;
}

/**
 * Curvature along d, the update per unit learning rate (θ_next = θ − η·d). Pass `restrictDirection(d, [layer])`
 * for one layer's κ and η*.
 */
export async function directionalCurvature(landscape: Landscape, theta: Theta, d: Direction): Promise<DirectionalCurvature> {
  const meter = new Meter();
  const dd = dotDirections(d, d);
  if (dd === 0) return { kappa: 0, dHd: 0, gd: 0, etaStar: null, cost: meter.cost() };
  const { hv, g } = await hvp(landscape, theta, d, meter);
  const dHd = dotDirections(d, hv);
  const gd = dotDirections(g, d);
  return { kappa: dHd / dd, dHd, gd, etaStar: dHd > 0 ? gd / dHd : null, cost: meter.cost() };
}

export interface HessianEigenOptions {
  /** Lanczos steps: one Hessian-vector product (two gradient evaluations) each. */
  steps: number;
  /** Seed of the Gaussian start vector: the same seed, the same iterates. */
  seed?: number;
  /** Relative residual tolerance for `converged` (default LANCZOS_TOL). */
  tol?: number;
}

export interface HessianEigen {
  /** The largest Ritz values, largest first (up to 3). */
  top: RitzPair[];
  /** The smallest (most negative) Ritz value. */
  bottom: RitzPair;
  /** Relative tolerance: converged when the residual ≤ tol·max|Ritz value|. */
  tol: number;
  products: number;
  cost: Cost;
}

/** How many of the largest Ritz values are reported. */
const TOP_RITZ = 3;

/**
 * The extreme eigenvalues of H (the top few and the most negative) by Lanczos over finite-difference HVPs,
 * each with its residual ‖Hy − λy‖ and whether it converged. `block`: parameter names whose diagonal block
 * of H to use (one layer), or null for the whole model.
 */
export async function hessianEigenvalues(landscape: Landscape, theta: Theta, block: string[] | null, opts: HessianEigenOptions): Promise<HessianEigen> {
  const meter = new Meter();
  const names = block ?? landscape.names;
  const sizes = names.map((name) => landscape.shapes[name].reduce((a, b) => a * b, 1));
  const n = sizes.reduce((a, b) => a + b, 0);
  const rng = mulberry32(opts.seed ?? 0);
  const start = Float64Array.from({ length: n }, () => gaussian(rng));
  const matvec = async (v: Float64Array): Promise<Float64Array> => {
    const dir: Direction = {};
    let offset = 0;
    names.forEach((name, i) => {
      dir[name] = v.subarray(offset, offset + sizes[i]);
      offset += sizes[i];
    });
    const { hv } = await hvp(landscape, theta, dir, meter);
    const out = new Float64Array(n);
    offset = 0;
    for (const name of names) {
      out.set(hv[name], offset);
      offset += hv[name].length;
    }
    return out;
  };
  const r = await lanczos(matvec, start, { steps: opts.steps, tol: opts.tol });
  return { top: r.ritz.slice(-TOP_RITZ).reverse(), bottom: r.ritz[0], tol: r.tol, products: r.products, cost: meter.cost() };
}

export type DirectionCurvature = NonNullable<RecordOf<'curvature'>['directions']>['top'][number];

/** Singular pairs of one rows×cols matrix, as `svd`/`topKSingular` return them. */
export interface SingularPairs {
  rows: number;
  cols: number;
  /** rows×k row-major. */
  u: Float64Array;
  /** cols×k row-major. */
  v: Float64Array;
  s: Float64Array;
}

/**
 * κ_i = (u_i v_iᵀ)ᵀ H (u_i v_iᵀ) for the chosen pairs of the layer's momentum (each u_i v_iᵀ has unit
 * Frobenius norm). u_i v_iᵀ lives in the layer's storage layout, the one M was decomposed in. Two
 * gradient evaluations per index.
 */
export async function curvatureAlongSingularDirections(
  landscape: Landscape,
  theta: Theta,
  layer: string,
  pairs: SingularPairs,
  indices: number[],
): Promise<{ directions: DirectionCurvature[]; cost: Cost }> {
  const meter = new Meter();
  const { rows, cols, u, v, s } = pairs;
  const k = s.length;
  const directions: DirectionCurvature[] = [];
  for (const i of indices) {
    const d = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const ur = u[r * k + i];
      for (let c = 0; c < cols; c++) d[r * cols + c] = ur * v[c * k + i];
    }
    const dir = { [layer]: d };
    const dd = dotDirections(dir, dir);
    const kappa = dd > 0 ? dotDirections(dir, (await hvp(landscape, theta, dir, meter)).hv) / dd : 0;
    directions.push({ index: i, sigma: s[i], kappa });
  }
  return { directions, cost: meter.cost() };
}

export interface CriticalSharpnessOptions {
  /** Forward passes in all, the one at θ included. Default 10. */
  maxEvals?: number;
  /** First trial step, ideally the learning rate in use. Default 1. */
  initialStep?: number;
}

export interface CriticalSharpness {
  /** The smallest η > 0 with L(θ − η·update) > L(θ); null when the search did not bracket it. */
  etaC: number | null;
  /** 2/η_c: equals the sharpness λ for gradient descent on a quadratic along an eigenvector. */
  lambdaC: number | null;
  /** The last non-increasing and increasing steps tried (0 / null: none found). */
  bracket: [number, number | null];
  cost: Cost;
}

/**
 * Critical sharpness (arXiv 2601.16979) along the actual update (θ_next = θ − η·update): a bracket by
 * factors of 4 from `initialStep`, then regula falsi (bisecting whenever one end stalls) on
 * h(η) = (L(θ − η·update) − L(θ))/η, whose root is η_c. h is linear in η for a quadratic loss, so one interpolation is exact there and a
 * few suffice on smooth losses; the whole search fits in `maxEvals` forward passes. Between two tried
 * steps the estimate is the interpolated root, so it is never outside the bracket.
 */
export async function criticalSharpness(
  loss: (theta: Theta) => Promise<number>,
  theta: Theta,
  update: Direction,
  opts: CriticalSharpnessOptions = {},
): Promise<CriticalSharpness> {
  const meter = new Meter();
  const maxEvals = opts.maxEvals ?? 10;
  const growth = 4;
  const evaluate = async (t: number): Promise<number> => {
    meter.lossEvals++;
    return loss(t === 0 ? theta : shifted(theta, update, -t));
  };
  const l0 = await evaluate(0);
  let lo = 0;
  let hLo = 0;
  let hi: number | null = null;
  let hHi = 0;
  let lastSide: 'lo' | 'hi' | null = null;
  let eta = opts.initialStep ?? 1;
  while (meter.lossEvals < maxEvals) {
    const h = ((await evaluate(eta)) - l0) / eta;
    const side = h > 0 ? 'hi' : 'lo';
    if (side === 'hi') [hi, hHi] = [eta, h];
    else [lo, hLo] = [eta, h];
    if (hi === null) eta *= growth;
    else if (lo === 0) eta /= growth;
    else if (hi - lo <= 1e-4 * hi) break;
    // The same end moving twice means the interpolation stalls (a curved h): bisect once instead.
    else eta = side === lastSide ? 0.5 * (lo + hi) : root(lo, hLo, hi, hHi);
    lastSide = side;
  }
  const etaC = hi !== null && lo > 0 ? root(lo, hLo, hi, hHi) : null;
  return { etaC, lambdaC: etaC !== null ? 2 / etaC : null, bracket: [lo, hi], cost: meter.cost() };
}

/** Zero of the line through (lo, hLo ≤ 0) and (hi, hHi > 0), kept strictly inside the bracket. */
function root(lo: number, hLo: number, hi: number, hHi: number): number {
  const x = lo - (hLo * (hi - lo)) / (hHi - hLo);
  const margin = 1e-6 * (hi - lo);
  return Math.min(hi - margin, Math.max(lo + margin, x));
}

export interface StepStability {
  /** κ_d = dᵀHd/‖d‖². */
  kappa: number;
  /** η* = gᵀd/dᵀHd (null when dᵀHd ≤ 0: no minimum along d). */
  etaStar: number | null;
  /** The edge along the update, 2·gᵀd/(η‖d‖²): the step θ − η·d raises the loss when κ_d exceeds it. */
  edge: number;
  /** η/η* = η·dᵀHd/gᵀd (null with η*): above 2 the step overshoots; negative when d points uphill. */
  etaRatio: number | null;
}

/**
 * Stability of the step θ − η·d in Muon's own units (docs/algorithms.md §4): the quadratic model
 * L(θ − ηd) ≈ L − η·gᵀd + ½η²·dᵀHd rises above L exactly when η > 2η*, i.e. when κ_d > 2·gᵀd/(η‖d‖²).
 * Nothing here is 2/η: a normalised step does not grow with the gradient, so the edge carries gᵀd.
 */
export function stepStability(gd: number, dHd: number, dd: number, eta: number): StepStability {
  const etaStar = dHd > 0 ? gd / dHd : null;
  return { kappa: dd > 0 ? dHd / dd : 0, etaStar, edge: dd > 0 ? (2 * gd) / (eta * dd) : 0, etaRatio: etaStar !== null && gd !== 0 ? eta / etaStar : null };
}

/**
 * ln κ against ln σ over measured singular directions with κ > 0 and σ > 0: GGᵀ ≈ αH predicts slope 2
 * (docs/algorithms.md §10.1). Null with fewer than two distinct σ.
 */
export function curvatureVsSigmaFit(directions: readonly DirectionCurvature[]): LogLogFit | null {
  const usable = directions.filter((d) => d.kappa > 0 && d.sigma > 0 && Number.isFinite(d.kappa) && Number.isFinite(d.sigma));
  if (new Set(usable.map((d) => d.sigma)).size < 2) return null;
  return fitLogLog(
    usable.map((d) => d.sigma),
    usable.map((d) => d.kappa),
  );
}
