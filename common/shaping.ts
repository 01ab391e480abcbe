/**
 * φ_p, the function DynMuon's exact spectral shaping applies to every singular value: Shape_p(X) =
 * U·φ_p(S)·Vᵀ. The trainer computes it without an SVD (trainer/linalg/shaping.ts); the dashboard draws
 * it per layer from the measured spectrum, so both take this one definition.
 */

/** φ_p(σ) = σ·(σ² + δ)^((p−1)/2); φ_p(0) = 0 for every p, even undamped (δ = 0). */
export function phi(sigma: number, p: number, delta: number): number {
  if (sigma === 0) return 0;
  return sigma * (sigma * sigma + delta) ** ((p - 1) / 2);
}

/**
 * sup over σ ∈ (0, σ_max] of φ_p(σ)/φ_p(σ_max) with δ = (ε·σ_max)²: how many times the top direction's
 * step the largest step of any direction is. φ_p is increasing for p ≥ 0 (gain 1). For p < 0 it peaks at
 * σ*² = δ/(−p), inside (0, σ_max] while ε² ≤ −p; beyond that the top direction has the largest step.
 */
export function maxShapingGain(p: number, damping: number): number {
  if (p >= 0 || !(damping * damping < -p)) return 1;
  if (damping === 0) return Infinity;
  // In logs, relative to σ_max = 1: ln φ(σ*) − ln φ(1), finite for any ε > 0 that a double holds.
  const lnEps = Math.log(damping);
  const half = (p - 1) / 2;
  const lnPeak = lnEps - 0.5 * Math.log(-p) + half * (2 * lnEps + Math.log((1 - p) / -p));
  return Math.exp(lnPeak - half * Math.log1p(damping * damping));
}

/**
 * The damping DynMuon's exact shaping uses at p: the configured ε, raised where needed so that no
 * direction's step exceeds `maxGain` times the top direction's (maxShapingGain(p, ε) ≤ maxGain; null: no
 * bound). For p ≥ 0 the gain is at most 1 and ε is returned unchanged. The gain falls strictly from ∞ to
 * 1 as ε goes from 0 to √(−p), so bisection on ln ε finds the one ε where it equals the bound.
 */
export function gainBoundedDamping(p: number, damping: number, maxGain: number | null): number {
  if (maxGain === null || maxShapingGain(p, damping) <= maxGain) return damping;
  let lo = Math.log(Math.max(damping, 1e-300));
  let hi = 0.5 * Math.log(-p);
  // 80 halvings of an interval under 700 wide leave it below 1e-21: ε to the last bit.
  for (let i = 0; i < 80; i++) {
    const mid = (lo + hi) / 2;
    if (maxShapingGain(p, Math.exp(mid)) > maxGain) lo = mid;
    else hi = mid;
  }
  return Math.exp(hi);
}
