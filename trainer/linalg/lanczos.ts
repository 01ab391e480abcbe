/**
 * Extreme eigenvalues of a symmetric operator known only through products A·v (a Hessian through
 * Hessian-vector products), by Lanczos with full reorthogonalisation (docs/algorithms.md §4).
 *
 * k steps build an orthonormal Krylov basis Q = [q_1 … q_k] with QᵀAQ = T tridiagonal; the eigenvalues of
 * T (Ritz values, from `eigh`) approximate A's extreme eigenvalues from the inside, the largest and the
 * most negative first. Each Ritz pair (θ_i, y_i = Q·s_i) has the residual ‖A·y_i − θ_i·y_i‖ = |β_k·s_i[k]|
 * (β_k the next off-diagonal, s_i[k] the last entry of T's eigenvector), so convergence is read off for
 * free. Full reorthogonalisation (against every previous q, twice) keeps Q orthonormal in floating point,
 * which matters more here than usual: finite-difference products are only accurate to ~1e-3, and without it
 * ghost copies of the top eigenvalue appear after a few steps.
 */
import { eigh } from './eigh.js';

export type MatVec = (v: Float64Array) => Promise<Float64Array>;

export interface RitzPair {
  value: number;
  /** ‖A·y − θ·y‖ for the unit Ritz vector y. */
  residual: number;
  /** residual ≤ tol·scale, scale = the largest |Ritz value|. */
  converged: boolean;
}

export interface LanczosResult {
  /** All Ritz values, ascending, with their residuals. */
  ritz: RitzPair[];
  /** Products A·v taken (= steps, fewer when the Krylov space closed early). */
  products: number;
  /** The relative tolerance `converged` was judged against. */
  tol: number;
}

export interface LanczosOptions {
  /** Steps (products). */
  steps: number;
  /** Relative residual tolerance for `converged`. Default 1e-2. */
  tol?: number;
}

/** Default relative residual tolerance: a converged Ritz value is within 1% of ‖A‖ of an eigenvalue (Bauer–Fike). */
export const LANCZOS_TOL = 1e-2;

/** Lanczos from the start vector `start` (any nonzero vector; it is normalised). */
export async function lanczos(matvec: MatVec, start: Float64Array, opts: LanczosOptions): Promise<LanczosResult> {
  const n = start.length;
  const tol = opts.tol ?? LANCZOS_TOL;
  const k = Math.min(opts.steps, n);
  const basis: Float64Array[] = [];
  const alpha: number[] = [];
  const beta: number[] = [];
  let q = scale(start, 1 / norm(start));
  let next = 0;
  for (let j = 0; j < k; j++) {
    basis.push(q);
    const w = await matvec(q);
    alpha.push(dot(q, w));
    // Twice is enough (Kahan–Parlett): one pass leaves a component of size ε·‖w‖/‖w_new‖, the second removes it.
    for (let pass = 0; pass < 2; pass++) for (const b of basis) axpy(w, -dot(b, w), b);
    next = norm(w);
    if (j === k - 1 || next <= 1e-12 * Math.abs(alpha[0] || 1)) break;
    beta.push(next);
    q = scale(w, 1 / next);
  }
  const m = alpha.length;
  const t = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    t[i * m + i] = alpha[i];
    if (i + 1 < m) t[i * m + i + 1] = t[(i + 1) * m + i] = beta[i];
  }
  const { values, vectors } = eigh(t, m, { vectors: true });
  const scaleOf = Math.max(...Array.from(values, Math.abs), 0);
  const ritz = Array.from(values, (value, i) => {
    const residual = Math.abs(next * vectors![(m - 1) * m + i]);
    return { value, residual, converged: residual <= tol * scaleOf };
  });
  return { ritz, products: m, tol };
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function norm(a: Float64Array): number {
  return Math.sqrt(dot(a, a));
}

function scale(a: Float64Array, c: number): Float64Array {
  return a.map((x) => x * c);
}

/** y ← y + c·x. */
function axpy(y: Float64Array, c: number, x: Float64Array): void {
  for (let i = 0; i < y.length; i++) y[i] += c * x[i];
}
