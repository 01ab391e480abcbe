/**
 * DynMuon's matmul-only shaping on the kernels: normalise by an estimate of σ_max, then one native
 * call evaluates the fitted combination of Newton–Schulz iterates (linalg/shaping-fit.ts).
 */
import type { MatrixKernels } from '../kernels/types.js';
import { fitShapingWeights, type ShapingFit } from '../linalg/shaping-fit.js';

/**
 * σ_max by power iteration on XᵀX, started from the row sums (deterministic, and rarely orthogonal to
 * the top singular vector). Power iteration approaches σ_max from below; callers add a margin.
 */
export function estimateSpectralNorm(x: Float32Array, rows: number, cols: number, iterations = 12): number {
  const v = new Float64Array(cols);
  const u = new Float64Array(rows);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) v[j] += x[i * cols + j];
  let sigma = 0;
  for (let it = 0; it < iterations; it++) {
    let vn = 0;
    for (const t of v) vn += t * t;
    vn = Math.sqrt(vn);
    if (vn === 0) {
      // Row sums can vanish (e.g. rows summing to zero); restart from a fixed non-degenerate vector.
      for (let j = 0; j < cols; j++) v[j] = 1 + j / cols;
      continue;
    }
    for (let j = 0; j < cols; j++) v[j] /= vn;
    for (let i = 0; i < rows; i++) {
      let s = 0;
      const row = i * cols;
      for (let j = 0; j < cols; j++) s += x[row + j] * v[j];
      u[i] = s;
    }
    let un = 0;
    for (const t of u) un += t * t;
    sigma = Math.sqrt(un);
    v.fill(0);
    for (let i = 0; i < rows; i++) {
      const ui = u[i];
      const row = i * cols;
      for (let j = 0; j < cols; j++) v[j] += x[row + j] * ui;
    }
  }
  return sigma;
}

/** Margin over the power-iteration estimate so the top singular value stays inside the fitted range. */
const SIGMA_MARGIN = 1.02;

const fitCache = new Map<string, ShapingFit>();

export function cachedShapingFit(p: number, damping: number): ShapingFit {
  const key = `${p}|${damping}`;
  let fit = fitCache.get(key);
  if (!fit) {
    fit = fitShapingWeights(p, damping);
    if (fitCache.size > 256) fitCache.clear();
    fitCache.set(key, fit);
  }
  return fit;
}

/**
 * ≈ U·φ_p(S/σ_max)·Vᵀ (unscaled; DynMuon rescales to Muon's update size). `relError` is the fit's
 * worst relative error on singular values in [1e-3, 1]·σ_max.
 */
export async function shapeMatmulOnly(
  kernels: MatrixKernels,
  x: Float32Array,
  rows: number,
  cols: number,
  p: number,
  damping: number,
): Promise<{ shaped: Float32Array; relError: number }> {
  const sigma = estimateSpectralNorm(x, rows, cols);
  if (sigma === 0) return { shaped: new Float32Array(x.length), relError: 0 };
  const fit = cachedShapingFit(p, damping);
  const steps = Array.from({ length: fit.steps }, () => fit.step);
  const shaped = await kernels.nsCombination({ rows, cols, x, steps, weights: fit.weights, divisor: sigma * SIGMA_MARGIN });
  return { shaped, relError: fit.maxRelError };
}
