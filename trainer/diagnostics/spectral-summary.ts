/**
 * Scalar summaries of one matrix layer's spectra and of its step (docs/algorithms.md §6). Pure functions on
 * singular values and row-major typed arrays. A zero matrix has no directions: every summary of it is 0,
 * never NaN, so a layer whose gradient vanished still yields a valid record.
 */
import { dot, frobeniusNorm, gram, transpose, type Matrix } from '../linalg/matrix.js';
import type { SpectrumSummary } from '../../common/protocol.js';

/**
 * What the randomized path could not see: a matrix with `shortSide` singular values of which only the
 * top k are known, and its Frobenius norm (cheap and exact), which fixes the energy of the other ones.
 */
export interface SpectrumTail {
  frobenius: number;
  shortSide: number;
}

/**
 * σ_max, stable rank Σσ²/σ_max², effective rank exp(−Σ p_i ln p_i) with p_i = σ_i/Σσ (L1, Roy & Vetterli)
 * and nuclear rank ‖·‖_*²/‖·‖_F², from singular values in descending order.
 *
 * With `tail` (top-k values only): the stable rank is still exact, ‖X‖_F²/σ_max², since it needs only the
 * energy. The effective and nuclear ranks need every value; the unseen energy r = ‖X‖_F² − Σ_{i≤k} σ_i²
 * is spread evenly over the n − k unseen values, τ = sqrt(r/(n − k)) capped at σ_k (they cannot exceed
 * it; a cap means the top-k estimates were low). For a given energy an even tail has the largest L1 mass
 * and entropy, so both ranks are then upper estimates; a layer with a decaying tail reads a little high.
 */
export function spectrumSummary(values: ArrayLike<number>, tail?: SpectrumTail): SpectrumSummary {
  const k = values.length;
  const seen = k > 0 ? values[0] : 0;
  let tailCount = 0;
  let tailValue = 0;
  if (tail && tail.shortSide > k) {
    let seenEnergy = 0;
    for (let i = 0; i < k; i++) seenEnergy += values[i] * values[i];
    const unseen = Math.max(0, tail.frobenius * tail.frobenius - seenEnergy);
    tailCount = tail.shortSide - k;
    tailValue = Math.min(Math.sqrt(unseen / tailCount), k > 0 ? values[k - 1] : Infinity);
  }
  const sigmaMax = Math.max(seen, tailValue);
  if (!(sigmaMax > 0)) return { sigmaMax: 0, stableRank: 0, effectiveRank: 0, nuclearRank: 0 };

  // Everything relative to σ_max, so spectra near 1e±160 neither overflow nor underflow.
  let energy = 0;
  let l1 = 0;
  for (let i = 0; i < k; i++) {
    const x = values[i] / sigmaMax;
    energy += x * x;
    l1 += x;
  }
  const t = tailValue / sigmaMax;
  energy += tailCount * t * t;
  l1 += tailCount * t;

  let entropy = 0;
  for (let i = 0; i < k; i++) {
    const p = values[i] / sigmaMax / l1;
    if (p > 0) entropy -= p * Math.log(p);
  }
  const q = t / l1;
  if (q > 0) entropy -= tailCount * q * Math.log(q);

  return { sigmaMax, stableRank: energy, effectiveRank: Math.exp(entropy), nuclearRank: (l1 * l1) / energy };
}

/**
 * ‖O·Oᵀ − I‖_F/sqrt(m) on the short side m, from O's exact singular values (all m of them):
 * ‖O·Oᵀ − I‖_F² = Σ (σ_i² − 1)². Reported raw, without normalising O first: Muon's Newton–Schulz output
 * is deliberately not orthogonal (σ spread over roughly [0.7, 1.2]) and DynMuon's shaped U·S^p·Vᵀ is not
 * meant to be, so this measures how far the applied direction is from the polar factor, scale included.
 */
export function orthogonalityErrorFromSpectrum(values: ArrayLike<number>, shortSide: number): number {
  if (shortSide === 0) return 0;
  let ss = 0;
  for (let i = 0; i < shortSide; i++) {
    const s = i < values.length ? values[i] : 0;
    ss += (s * s - 1) ** 2;
  }
  return Math.sqrt(ss / shortSide);
}

/**
 * The same quantity formed directly, for when only O's top-k singular values are known (short side above
 * the exact-SVD limit). 2m²n flops: there it is the costliest part of a layer's summary.
 */
export function orthogonalityError(o: Matrix, rows: number, cols: number): number {
  const short = Math.min(rows, cols);
  if (short === 0) return 0;
  // Orient so that the Gram matrix is of the short side.
  const x = rows <= cols ? Float64Array.from(o) : transpose(o, rows, cols);
  const g = gram(x, short, Math.max(rows, cols));
  for (let i = 0; i < short; i++) g[i * short + i] -= 1;
  return frobeniusNorm(g) / Math.sqrt(short);
}

/** Muon's update RMS: an orthogonal m×n direction has RMS 1/sqrt(max(m, n)), times the lr scale. */
export function updateRmsTheory(rows: number, cols: number, scale: number): number {
  const long = Math.max(rows, cols);
  return long > 0 ? scale / Math.sqrt(long) : 0;
}

/**
 * ‖ΔW‖_F/‖W‖_F. A zero weight makes the ratio undefined; it is reported as 0 rather than ∞ so the record
 * stays finite JSON (weight matrices are never zero in practice; biases are not summarised here).
 */
export function updateWeightRatio(deltaW: Matrix, w: Matrix): number {
  const nw = frobeniusNorm(w);
  return nw > 0 ? frobeniusNorm(deltaW) / nw : 0;
}

/** ⟨G, O⟩/(‖G‖_F‖O‖_F): 1 when the step follows the gradient exactly; 0 when either is zero. */
export function alignment(g: Matrix, o: Matrix): number {
  const ng = frobeniusNorm(g);
  const no = frobeniusNorm(o);
  if (!(ng > 0 && no > 0)) return 0;
  // Dividing first keeps the inner product in range for any magnitudes.
  const gs = Float64Array.from(g, (x) => x / ng);
  const os = Float64Array.from(o, (x) => x / no);
  return dot(gs, 0, os, 0, gs.length);
}
