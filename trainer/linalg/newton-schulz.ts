/**
 * Float64 reference Newton–Schulz, step for step as torch.optim.Muon (and KellerJordan/Muon) do it, for
 * tests and as the CPU reference the fast kernels are compared with.
 */
import { frobeniusNorm, gram, matmul, transpose, type Matrix } from './matrix.js';
import type { NsStep } from './ns-coefficients.js';

/**
 * Orthogonalises the rows×cols row-major X: work on the wide orientation, X ← X / max(‖X‖_F·normSafety, eps),
 * then per step (a, b, c): A = X·Xᵀ, B = b·A + c·A·A, X = a·X + B·X.
 */
export function newtonSchulzReference(
  x: Matrix,
  rows: number,
  cols: number,
  steps: readonly NsStep[],
  eps = 1e-7,
  normSafety = 1,
): Float64Array {
  const transposed = rows > cols;
  const m = transposed ? cols : rows;
  const n = transposed ? rows : cols;
  let xm = transposed ? transpose(x, rows, cols) : Float64Array.from(x);

  const denom = Math.max(frobeniusNorm(xm) * normSafety, eps);
  for (let i = 0; i < xm.length; i++) xm[i] /= denom;

  for (const [a, b, c] of steps) {
    const gramX = gram(xm, m, n);
    const gramSq = matmul(gramX, gramX, m, m, m);
    const poly = new Float64Array(m * m);
    for (let i = 0; i < poly.length; i++) poly[i] = b * gramX[i] + c * gramSq[i];
    const next = matmul(poly, xm, m, m, n);
    for (let i = 0; i < next.length; i++) next[i] += a * xm[i];
    xm = next;
  }
  return transposed ? transpose(xm, m, n) : xm;
}
