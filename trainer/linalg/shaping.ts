/**
 * Exact spectral shaping for DynMuon's `exact` mode: Shape_p(X) = U·φ_p(S)·Vᵀ with
 * φ_p(σ) = σ·(σ² + δ)^((p−1)/2) (common/shaping.ts) and δ = (ε·σ_max)², computed without an SVD as
 * Q·diag((λ + δ)^((p−1)/2))·Qᵀ·X from the eigendecomposition X·Xᵀ = Q·Λ·Qᵀ of the short-side Gram matrix.
 * The Gram matrix is formed in float64: in float32 its small eigenvalues drown in round-off below
 * σ/σ_max ≈ 3.5e-4, exactly the directions a negative p amplifies.
 */
import { MuonscopeError } from '../../common/errors.js';
import { eigh } from './eigh.js';
import { checkMatrix, dot, gram, matmul, transpose, type Matrix } from './matrix.js';

/**
 * U·φ_p(S)·Vᵀ of the rows×cols row-major X with damping ε (δ = (ε·σ_max)²), not rescaled. At p = 0 and
 * ε = 0 this is the polar factor U·Vᵀ; damping changes it by O((ε·σ_max/σ)²) per direction.
 */
export function shapeExact(x: Matrix, rows: number, cols: number, p: number, damping = 1e-3): Float64Array {
  checkMatrix(x, rows, cols, 'shapeExact');
  if (!Number.isFinite(p)) throw new MuonscopeError('NON_FINITE', `shapeExact: p must be finite, got ${p}`, { p });
  if (!Number.isFinite(damping) || damping < 0) {
    throw new MuonscopeError('INVALID_ARGUMENT', `shapeExact: damping must be a finite number ≥ 0, got ${damping}`, { damping });
  }
  const transposed = rows > cols;
  const m = transposed ? cols : rows;
  const n = transposed ? rows : cols;
  const xm = transposed ? transpose(x, rows, cols) : Float64Array.from(x);

  const { values, vectors } = eigh(gram(xm, m, n), m, { vectors: true });
  const q = vectors!;
  // Round-off can push eigenvalues of a PSD matrix slightly below zero; they are zero.
  const lambda = values.map((l) => Math.max(l, 0));
  const lambdaMax = m > 0 ? lambda[m - 1] : 0;
  if (lambdaMax === 0) return new Float64Array(rows * cols);
  const delta = damping * damping * lambdaMax;
  const exponent = (p - 1) / 2;
  // An exactly zero direction (possible only when undamped) has φ = 0, not 0·∞.
  const weight = lambda.map((l) => (l + delta === 0 ? 0 : (l + delta) ** exponent));

  // C = Q·diag(w)·Qᵀ (m×m, symmetric) then C·X: 2m³ + 2m²n flops, cheaper than Q·(diag(w)·(Qᵀ·X)) for m ≤ n.
  const qw = q.map((value, index) => value * weight[index % m]);
  const c = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    for (let j = i; j < m; j++) {
      const sum = dot(qw, i * m, q, j * m, m);
      c[i * m + j] = sum;
      c[j * m + i] = sum;
    }
  }
  const shaped = matmul(c, xm, m, m, n);
  return transposed ? transpose(shaped, m, n) : shaped;
}
