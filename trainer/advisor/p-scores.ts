/**
 * One-step scores of DynMuon's candidate directions d_p, from gᵀd_p and d_pᵀHd_p (docs/algorithms.md §4.6,
 * §10.5). Pure; the caller measures the values (Hessian-vector products, held-out gradients).
 *
 * - The old p-probe's score, the quadratic model's decrease at a fixed step η: η·gᵀd − ½η²·dᵀHd. With every
 *   candidate at the same size, gᵀd_p grows toward p = 1 as d_p aligns with g, and at the small η/η* of real
 *   training the curvature term hardly counts, so its argmax is biased toward the largest p.
 * - The scale-free score (gᵀd)²/(dᵀHd): twice the best decrease along d at its own optimal step, unchanged by
 *   how d is normalised. With g from a held-out batch independent of the one d_p was built from (and H·d from
 *   another), the noise in g does not favour the p whose d_p it shaped.
 */

export interface CandidateValues {
  p: number;
  /** gᵀd_p. */
  gd: number;
  /** d_pᵀ H d_p. */
  dHd: number;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`dot: lengths ${a.length} and ${b.length} differ`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** The quadratic model's decrease for the step θ − η·d. */
export function oneStepDecrease(eta: number, gd: number, dHd: number): number {
  return eta * gd - 0.5 * eta * eta * dHd;
}

/**
 * (gᵀd)²/(dᵀHd) for a descent direction (gᵀd > 0); 0 when d does not descend (no step η ≥ 0 helps), +∞ when
 * the curvature along it is not positive (the quadratic model has no best step).
 */
export function scaleFreeScore(gd: number, dHd: number): number {
  if (!(gd > 0)) return 0;
  return dHd > 0 ? (gd * gd) / dHd : Infinity;
}

/** The candidate with the largest score (the first on ties). */
export function bestCandidate(candidates: readonly CandidateValues[], score: (c: CandidateValues) => number): CandidateValues {
  if (candidates.length === 0) throw new Error('bestCandidate: no candidates');
  let best = candidates[0];
  let bestScore = score(best);
  for (const c of candidates.slice(1)) {
    const s = score(c);
    if (s > bestScore) {
      best = c;
      bestScore = s;
    }
  }
  return best;
}
