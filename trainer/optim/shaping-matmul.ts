/**
 * DynMuon's matmul-only shaping on the kernels: one native call estimates σ_max (power iteration on
 * X·Xᵀ), normalises, and evaluates the fitted combination of Newton–Schulz iterates (linalg/shaping-fit.ts).
 */
import type { MatrixOps } from '../kernels/types.js';
import { fitShapingWeights, type ShapingFit } from '../linalg/shaping-fit.js';

/** Margin over the power-iteration estimate so the top singular value stays inside the fitted range. */
export const SIGMA_MARGIN = 1.02;
/** On the m×m Gram matrix these cost 20·m² flops, nothing next to one Newton–Schulz step. */
export const POWER_ITERATIONS = 20;

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
  kernels: MatrixOps,
  x: Float32Array,
  rows: number,
  cols: number,
  p: number,
  damping: number,
): Promise<{ shaped: Float32Array; relError: number }> {
  const fit = cachedShapingFit(p, damping);
  const steps = Array.from({ length: fit.steps }, () => fit.step);
  const scale = { sigmaMargin: SIGMA_MARGIN, powerIterations: POWER_ITERATIONS };
  const shaped = await kernels.nsCombination({ rows, cols, x, steps, weights: fit.weights, scale });
  return { shaped, relError: fit.maxRelError };
}
