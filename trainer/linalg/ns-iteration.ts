/**
 * The Newton–Schulz iteration, described once. The float64 reference (newton-schulz.ts), the TF.js
 * kernels and the ONNX graphs each supply an `NsAlgebra` (how to transpose, multiply, add and scale
 * in their own representation: arrays, tensors, graph values) and run these functions on it, so the
 * sequence of operations, the orientation rule and the normalisation are the same everywhere.
 *
 * On X with rows ≤ cols, each step (a, b, c) of a coefficient set (ns-coefficients.ts) computes
 *
 *   A = X·Xᵀ,   B = b·A + c·A·A,   X ← a·X + B·X
 *
 * which maps every singular value x of X to a·x + b·x³ + c·x⁵. A tall matrix is transposed first and
 * back at the end, so A is always the small, short-side Gram matrix.
 */
import type { NsStep } from './ns-coefficients.js';

/**
 * The operations the iteration needs, over matrices M and scalars S. Scalars are plain numbers where
 * the representation allows (float64, TF.js) and graph values where they must be inputs (ONNX).
 */
export interface NsAlgebra<M, S> {
  /** A constant scalar (rounded once to the representation's precision). */
  constant(value: number): S;
  /** A constant column vector. */
  constantColumn(values: readonly number[]): M;
  transpose(x: M): M;
  /** X·Xᵀ. */
  gram(x: M): M;
  matmul(a: M, b: M): M;
  add(a: M, b: M): M;
  scale(x: M, s: S): M;
  divide(x: M, s: S): M;
  /** ‖X‖_F. */
  norm(x: M): S;
  /** Σᵢⱼ aᵢⱼ·bᵢⱼ. */
  dot(a: M, b: M): S;
  sqrt(s: S): S;
  mulScalars(a: S, b: S): S;
  maxScalars(a: S, b: S): S;
}

/** What one step does to each singular value x: a·x + b·x³ + c·x⁵. */
export function nsPolynomial([a, b, c]: NsStep, x: number): number {
  const x2 = x * x;
  return x * (a + x2 * (b + c * x2));
}

/** The Frobenius-normalisation floor: X / max(‖X‖_F, eps), torch.optim.Muon's default eps. */
export const NS_EPS = 1e-7;

/** Keeps 0/0 out of the spectral normalisation of a zero matrix (whose result is then zero). */
const SPECTRAL_FLOOR = 1e-30;

/** What one orthogonalisation needs besides the matrix: its steps and its normalisation. */
export interface NsSpec {
  steps: readonly NsStep[];
  eps: number;
  /** ‖X‖_F is multiplied by this before the division (the coefficient set's margin, ns-coefficients.ts). */
  normSafety: number;
}

/** The iteration works on the wide orientation: a tall matrix (rows > cols) is transposed. */
export function isTall(rows: number, cols: number): boolean {
  return rows > cols;
}

/** Transposes a tall matrix to short-side-first; applied again to the result, it restores the orientation. */
export function shortSideFirst<M, S>(ops: NsAlgebra<M, S>, x: M, rows: number, cols: number): M {
  return isTall(rows, cols) ? ops.transpose(x) : x;
}

/** X / max(‖X‖_F·normSafety, eps), as torch.optim.Muon (the eps clamp) and modded-nanogpt (the margin) do. */
export function normalizeFrobenius<M, S>(ops: NsAlgebra<M, S>, x: M, eps: number, normSafety: number): M {
  const norm = ops.norm(x);
  const scaled = normSafety === 1 ? norm : ops.mulScalars(norm, ops.constant(normSafety));
  return ops.divide(x, ops.maxScalars(scaled, ops.constant(eps)));
}

/** One step X ← a·X + (b·A + c·A·A)·X with A = X·Xᵀ, given (when the caller has it already) or formed. */
export function nsStep<M, S>(ops: NsAlgebra<M, S>, x: M, [a, b, c]: NsStep, gram: M = ops.gram(x)): M {
  const poly = ops.add(ops.scale(gram, ops.constant(b)), ops.scale(ops.matmul(gram, gram), ops.constant(c)));
  return ops.add(ops.scale(x, ops.constant(a)), ops.matmul(poly, x));
}

/** Newton–Schulz orthogonalisation of the rows×cols X: orient, normalise, iterate, orient back. */
export function orthogonalize<M, S>(ops: NsAlgebra<M, S>, x: M, rows: number, cols: number, spec: NsSpec): M {
  let xs = normalizeFrobenius(ops, shortSideFirst(ops, x, rows, cols), spec.eps, spec.normSafety);
  for (const step of spec.steps) xs = nsStep(ops, xs, step);
  return shortSideFirst(ops, xs, rows, cols);
}

/** A fixed start vector for power iteration: deterministic, and with no sign pattern to be orthogonal to. */
export function powerStartVector(m: number): number[] {
  return Array.from({ length: m }, (_, i) => 1 + 0.5 * Math.sin(12.9898 * (i + 1)));
}

/**
 * σ_max² as the Rayleigh quotient after `iterations` power steps on the m×m Gram matrix A = X·Xᵀ (each
 * step costs m² instead of 2mn). Power iteration approaches from below; callers add a margin.
 */
export function largestEigenvalue<M, S>(ops: NsAlgebra<M, S>, gram: M, m: number, iterations: number): S {
  let v = ops.constantColumn(powerStartVector(m));
  for (let i = 0; i < iterations; i++) {
    const w = ops.matmul(gram, v);
    v = ops.divide(w, ops.maxScalars(ops.norm(w), ops.constant(SPECTRAL_FLOOR)));
  }
  return ops.dot(v, ops.matmul(gram, v));
}

/** How the combination normalises: by a given divisor, or by σ_max·margin estimated in place. */
export type NsScaling<S> = { divisor: S } | { sigmaMargin: S; powerIterations: number };

/**
 * Σ_k weights[k]·X_k over the iterates X_0 = X/divisor, X_1 … X_steps (weights.length = steps + 1), the
 * combination the matmul-only spectral shaping evaluates. With σ_max estimated in place, the Gram
 * matrix of the power iteration also serves the first step.
 */
export function nsCombination<M, S>(
  ops: NsAlgebra<M, S>,
  x: M,
  rows: number,
  cols: number,
  steps: readonly NsStep[],
  weights: readonly S[],
  scaling: NsScaling<S>,
): M {
  const xs = shortSideFirst(ops, x, rows, cols);
  let xk: M;
  let firstGram: M | undefined;
  if ('divisor' in scaling) {
    xk = ops.divide(xs, scaling.divisor);
  } else {
    const rawGram = ops.gram(xs);
    const lambda = largestEigenvalue(ops, rawGram, Math.min(rows, cols), scaling.powerIterations);
    const divisor = ops.maxScalars(ops.mulScalars(ops.sqrt(lambda), scaling.sigmaMargin), ops.constant(SPECTRAL_FLOOR));
    xk = ops.divide(xs, divisor);
    // Divide twice: d² underflows float32 for tiny d.
    firstGram = ops.divide(ops.divide(rawGram, divisor), divisor);
  }
  let sum = ops.scale(xk, weights[0]);
  steps.forEach((step, k) => {
    xk = nsStep(ops, xk, step, k === 0 ? firstGram : undefined);
    sum = ops.add(sum, ops.scale(xk, weights[k + 1]));
  });
  return shortSideFirst(ops, sum, rows, cols);
}
