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
