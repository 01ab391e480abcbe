/**
 * The matmul-only spectral shaping: a linear combination of Newton–Schulz iterates whose weights are
 * fitted, per p, so that Σ_k w_k·f_k(x) ≈ φ_p(x) over the singular values x ∈ [0, 1] of a matrix
 * normalised by its spectral norm. Every f_k is odd, so the combination acts on singular values alone:
 * Σ_k w_k·X_k = U·(Σ_k w_k·f_k(S))·Vᵀ, and needs nothing but matrix products (the Soft-Muon idea of
 * modded-nanogpt Track 3, with our own basis and fit).
 */
import { phi } from '../../common/shaping.js';
import type { NsStep } from './ns-coefficients.js';
import { nsPolynomial } from './ns-iteration.js';

/**
 * A gentle quintic with f(1) = 1, f'(1) = 0 and slope 2.6 at 0 (b = 2.5 − 2a, c = a − 1.5): its iterates
 * saturate at thresholds spaced by ×2.6, a smooth ladder that spans three decades in 8 steps. Measured
 * fit errors on [1e-3, 1] at p = −0.25: slope 2.5 → 4.8%, 2.6 → 2.9%, 2.7 → 3.6%; 7 steps of any slope
 * stay above 12%. (Keller's aggressive quintic oscillates around 1, a poor basis: 23%.)
 */
export const SHAPING_BASIS_STEP: NsStep = [2.6, -2.7, 1.1];
export const SHAPING_BASIS_STEPS = 8;

/** Singular values above the fit range come from underestimating σ_max; keep a margin. */
const FIT_X_MAX = 1.05;
const FIT_X_MIN = 1e-5;
const FIT_POINTS = 400;
/** Below this fraction of σ_max the damped target is linear and the error is not reported. */
const REPORT_X_MIN = 1e-3;

function basisValues(x: number, step: NsStep, count: number): number[] {
  const out = [x];
  let f = x;
  for (let k = 0; k < count; k++) {
    f = nsPolynomial(step, f);
    out.push(f);
  }
  return out;
}

/** Least squares min ‖A·w − y‖ by Householder QR (A is tall, well under 20 columns). */
function leastSquares(a: Float64Array, y: Float64Array, rows: number, cols: number): Float64Array {
  const r = Float64Array.from(a);
  const rhs = Float64Array.from(y);
  for (let k = 0; k < cols; k++) {
    let norm = 0;
    for (let i = k; i < rows; i++) norm += r[i * cols + k] ** 2;
    norm = Math.sqrt(norm);
    if (norm === 0) continue;
    const alpha = r[k * cols + k] > 0 ? -norm : norm;
    const v = new Float64Array(rows - k);
    for (let i = k; i < rows; i++) v[i - k] = r[i * cols + k];
    v[0] -= alpha;
    let vv = 0;
    for (const t of v) vv += t * t;
    if (vv === 0) continue;
    for (let j = k; j < cols; j++) {
      let dot = 0;
      for (let i = k; i < rows; i++) dot += v[i - k] * r[i * cols + j];
      const s = (2 * dot) / vv;
      for (let i = k; i < rows; i++) r[i * cols + j] -= s * v[i - k];
    }
    let dot = 0;
    for (let i = k; i < rows; i++) dot += v[i - k] * rhs[i];
    const s = (2 * dot) / vv;
    for (let i = k; i < rows; i++) rhs[i] -= s * v[i - k];
  }
  const w = new Float64Array(cols);
  for (let k = cols - 1; k >= 0; k--) {
    let sum = rhs[k];
    for (let j = k + 1; j < cols; j++) sum -= r[k * cols + j] * w[j];
    const diag = r[k * cols + k];
    w[k] = diag === 0 ? 0 : sum / diag;
  }
  return w;
}

export interface ShapingFit {
  p: number;
  damping: number;
  step: NsStep;
  steps: number;
  /** weights[k] multiplies the k-th iterate (weights[0]: the normalised input itself). */
  weights: number[];
  /** Max relative error |Σ w_k f_k(x) / φ_p(x) − 1| over x ∈ [1e-3, 1] (relative to σ_max). */
  maxRelError: number;
}

/**
 * Fits the weights for exponent p and damping ε (δ = ε², σ_max normalised to 1), minimising the
 * relative error on a log-spaced grid that also covers the damped linear region below ε.
 */
export function fitShapingWeights(p: number, damping: number, step: NsStep = SHAPING_BASIS_STEP, steps = SHAPING_BASIS_STEPS): ShapingFit {
  const delta = damping * damping;
  const cols = steps + 1;
  const xs = Array.from({ length: FIT_POINTS }, (_, i) => FIT_X_MIN * Math.pow(FIT_X_MAX / FIT_X_MIN, i / (FIT_POINTS - 1)));
  const a = new Float64Array(FIT_POINTS * cols);
  const basis = xs.map((x) => basisValues(x, step, steps));
  xs.forEach((x, i) => {
    // x ≥ FIT_X_MIN > 0, where φ_p needs no zero guard.
    const target = phi(x, p, delta);
    for (let k = 0; k < cols; k++) a[i * cols + k] = basis[i][k] / target;
  });
  const w = leastSquares(a, new Float64Array(FIT_POINTS).fill(1), FIT_POINTS, cols);
  let maxRelError = 0;
  xs.forEach((x, i) => {
    if (x < REPORT_X_MIN || x > 1) return;
    let approx = 0;
    for (let k = 0; k < cols; k++) approx += w[k] * basis[i][k];
    maxRelError = Math.max(maxRelError, Math.abs(approx / phi(x, p, delta) - 1));
  });
  return { p, damping, step, steps, weights: Array.from(w), maxRelError };
}
