/**
 * What DynMuon does to each singular value of the momentum, for the Layer detail's shaping chart:
 * `exact` applies φ_p(σ) = σ·(σ²+δ)^((p−1)/2) (common/shaping.ts), while `released` applies the
 * published code's second-order Taylor series of (X·Xᵀ)^(p/2) around I on X/‖X‖_F after Newton–Schulz
 * (≈ polar, so 1 per direction): c(σ) = 1 + d·e + ½d(d−1)·e², e = (σ/‖X‖_F)² − 1, d = p/2 — which tilts
 * the spectrum far less than φ_p. Both are normalised to 1 at σ_max, since the step size is set elsewhere.
 */
import { phi } from '../common/shaping.js';

/**
 * From this p on, the released code skips shaping altogether (identity). Mirrors dynmuon.ts's constant,
 * which cannot be imported here without bundling the optimizer; a unit test keeps the two equal.
 */
export const RELEASED_IDENTITY_FROM = 0.25;

export function exactCurve(sigma: ArrayLike<number>, p: number, damping: number): Float64Array {
  const max = sigma[0] ?? 0;
  const delta = (damping * max) ** 2;
  const top = phi(max, p, delta) || 1;
  return Float64Array.from(sigma, (s) => phi(s, p, delta) / top);
}

export function releasedCurve(sigma: ArrayLike<number>, p: number): Float64Array {
  const max = sigma[0] ?? 0;
  if (p >= RELEASED_IDENTITY_FROM) return Float64Array.from(sigma, (s) => s / (max || 1));
  if (p >= 0) return Float64Array.from(sigma, (s) => (s > 0 ? 1 : 0));
  let sq = 0;
  for (let i = 0; i < sigma.length; i++) sq += sigma[i] * sigma[i];
  const norm = Math.sqrt(sq) || 1;
  const d = p / 2;
  const c = (s: number): number => {
    const e = (s / norm) ** 2 - 1;
    return 1 + d * e + 0.5 * d * (d - 1) * e * e;
  };
  const top = c(max) || 1;
  return Float64Array.from(sigma, (s) => (s > 0 ? c(s) / top : 0));
}
