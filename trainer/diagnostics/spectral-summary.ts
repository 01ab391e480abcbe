/**
 * Scalar summaries of one matrix layer's spectra and of its step (docs/algorithms.md §6). Pure functions on
 * singular values and row-major typed arrays. A zero matrix has no directions: every summary of it is 0,
 * never NaN, so a layer whose gradient vanished still yields a valid record.
 */
import { dot, frobeniusNorm, gram, transpose, type Matrix } from '../linalg/matrix.js';
import { nsPolynomial, type NsSpec } from '../linalg/ns-iteration.js';
import type { Layout } from '../optim/types.js';
import { NS_NEAR_ONE_BAND, type SpectrumSummary } from '../../common/protocol.js';

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
  const { count: tailCount, value: tailValue } = evenTail(values, tail);
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

/** The unseen values of a top-k spectrum, spread evenly over the energy left (spectrumSummary says why). */
function evenTail(values: ArrayLike<number>, tail?: SpectrumTail): { count: number; value: number } {
  const k = values.length;
  if (!tail || tail.shortSide <= k) return { count: 0, value: 0 };
  let seenEnergy = 0;
  for (let i = 0; i < k; i++) seenEnergy += values[i] * values[i];
  const unseen = Math.max(0, tail.frobenius * tail.frobenius - seenEnergy);
  const count = tail.shortSide - k;
  return { count, value: Math.min(Math.sqrt(unseen / count), k > 0 ? values[k - 1] : Infinity) };
}

/** ‖X‖_* = Σσ_i. With `tail`, the unseen values are spread evenly as in spectrumSummary: an upper estimate. */
export function nuclearNorm(values: ArrayLike<number>, tail?: SpectrumTail): number {
  const { count, value } = evenTail(values, tail);
  let sum = count * value;
  for (let i = 0; i < values.length; i++) sum += values[i];
  return sum;
}

/**
 * ⟨G, O⟩/‖G‖_*, given ‖G‖_*. Since ⟨G, O⟩ ≤ ‖G‖_*·‖O‖_op, it is at most ‖O‖_op, with equality when O is
 * a multiple of G's polar factor: the step's first-order decrease per unit of the best one a direction of
 * operator norm 1 could get (the two factors of the Newton–Schulz convergence bound: this and ‖O‖_op).
 * 0 when G is zero.
 */
export function nuclearAlignment(g: Matrix, o: Matrix, gNuclear: number): number {
  const ng = frobeniusNorm(g);
  if (!(ng > 0 && gNuclear > 0)) return 0;
  // ⟨G/‖G‖_F, O⟩·(‖G‖_F/‖G‖_*): dividing first keeps the inner product in range for any magnitude of G.
  const gs = Float64Array.from(g, (x) => x / ng);
  return dot(gs, 0, Float64Array.from(o), 0, gs.length) * (ng / gNuclear);
}

/**
 * √(in/out): the factor that turns a layer's operator norm into its RMS→RMS norm, ‖A‖_{RMS→RMS} =
 * √(d_in/d_out)·‖A‖_op (the norm in which an orthogonal update of any shape has the same size when the
 * lr scale is √(out/in)). `outIn` stores the matrix as rows = out, cols = in; `inOut` the transpose.
 */
export function rmsToRmsFactor(rows: number, cols: number, layout: Layout): number {
  const [out, inp] = layout === 'outIn' ? [rows, cols] : [cols, rows];
  return out > 0 ? Math.sqrt(inp / out) : 0;
}

/** How far Newton–Schulz gets on a matrix: its distance from the polar factor, and how many directions it brings near 1. */
export interface NewtonSchulzReach {
  /** ‖NS(M) − polar(M)‖_F/‖polar(M)‖_F (0 when M is zero). */
  polarError: number;
  /** How many singular values of NS(M) lie in NS_NEAR_ONE_BAND. */
  nearOne: number;
}

/**
 * NS(M) against polar(M) = U·Vᵀ, from all of M's singular values. Every Newton–Schulz step maps each
 * singular value by its odd polynomial and keeps the singular vectors, so NS(M) = U·f(S/s)·Vᵀ with
 * s = max(‖M‖_F·normSafety, eps), f the composed steps, exactly as the iteration runs (in exact
 * arithmetic): ‖NS(M) − polar(M)‖_F² = Σ_{i<r} (f(σ_i/s) − 1)² over the r = rank(M) directions polar(M)
 * has (‖polar(M)‖_F² = r). The rank takes numpy's matrix_rank tolerance, σ > σ_max·max(m, n)·2⁻⁵². O(m)
 * given the spectrum, where forming NS(M) and an SVD would cost O(m²n).
 */
export function newtonSchulzReach(values: ArrayLike<number>, rows: number, cols: number, spec: NsSpec): NewtonSchulzReach {
  const sigmaMax = values.length > 0 ? values[0] : 0;
  if (!(sigmaMax > 0)) return { polarError: 0, nearOne: 0 };
  let energy = 0;
  for (let i = 0; i < values.length; i++) energy += (values[i] / sigmaMax) ** 2;
  const s = Math.max(sigmaMax * Math.sqrt(energy) * spec.normSafety, spec.eps);
  const rankFloor = sigmaMax * Math.max(rows, cols) * 2 ** -52;
  const [low, high] = NS_NEAR_ONE_BAND;
  let rank = 0;
  let squaredError = 0;
  let nearOne = 0;
  for (let i = 0; i < values.length; i++) {
    let f = values[i] / s;
    for (const step of spec.steps) f = nsPolynomial(step, f);
    if (f >= low && f <= high) nearOne++;
    if (values[i] > rankFloor) {
      rank++;
      squaredError += (f - 1) ** 2;
    }
  }
  return { polarError: Math.sqrt(squaredError / rank), nearOne };
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
