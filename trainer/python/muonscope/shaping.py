"""φ_p, the function DynMuon's exact shaping applies to every singular value, the damping that bounds its
gain (common/shaping.ts), and the fitted weights of the matmul-only shaping (trainer/linalg/shaping-fit.ts).
Scalars in float64; the fit is a 400×9 least-squares problem solved once per (p, ε) on the CPU.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch


def phi(sigma: float, p: float, delta: float) -> float:
    """φ_p(σ) = σ·(σ² + δ)^((p−1)/2); φ_p(0) = 0 for every p, even undamped."""
    if sigma == 0:
        return 0.0
    return sigma * (sigma * sigma + delta) ** ((p - 1) / 2)


def max_shaping_gain(p: float, damping: float) -> float:
    """sup over σ ∈ (0, σ_max] of φ_p(σ)/φ_p(σ_max) with δ = (ε·σ_max)²: 1 for p ≥ 0 or ε² ≥ −p."""
    if p >= 0 or not (damping * damping < -p):
        return 1.0
    if damping == 0:
        return math.inf
    ln_eps = math.log(damping)
    half = (p - 1) / 2
    ln_peak = ln_eps - 0.5 * math.log(-p) + half * (2 * ln_eps + math.log((1 - p) / -p))
    return math.exp(ln_peak - half * math.log1p(damping * damping))


def gain_bounded_damping(p: float, damping: float, max_gain: Optional[float]) -> float:
    """ε raised where needed so that max_shaping_gain(p, ε) ≤ max_gain (None: no bound). The gain falls
    strictly as ε grows from 0 to √(−p), so bisection on ln ε finds the one ε at the bound."""
    if max_gain is None or max_shaping_gain(p, damping) <= max_gain:
        return damping
    lo = math.log(max(damping, 1e-300))
    hi = 0.5 * math.log(-p)
    # 80 halvings of an interval under 700 wide leave it below 1e-21: ε to the last bit.
    for _ in range(80):
        mid = (lo + hi) / 2
        if max_shaping_gain(p, math.exp(mid)) > max_gain:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


#: A gentle quintic with f(1) = 1, f'(1) = 0 and slope 2.6 at 0: its iterates saturate at thresholds spaced
#: by ×2.6, a ladder that spans three decades in 8 steps (docs/algorithms.md §2.5).
SHAPING_BASIS_STEP: Tuple[float, float, float] = (2.6, -2.7, 1.1)
SHAPING_BASIS_STEPS = 8
FIT_X_MAX = 1.05
FIT_X_MIN = 1e-5
FIT_POINTS = 400
#: Below this fraction of σ_max the damped target is linear and the error is not reported.
REPORT_X_MIN = 1e-3


@dataclass(frozen=True)
class ShapingFit:
    p: float
    damping: float
    step: Tuple[float, float, float]
    steps: int
    #: weights[k] multiplies the k-th iterate (weights[0]: the normalised input itself).
    weights: List[float]
    #: max |Σ w_k f_k(x)/φ_p(x) − 1| over x ∈ [1e-3, 1] (relative to σ_max): a fitted bound, not a measurement.
    max_rel_error: float


def fit_shaping_weights(p: float, damping: float, step: Tuple[float, float, float] = SHAPING_BASIS_STEP,
                        steps: int = SHAPING_BASIS_STEPS) -> ShapingFit:
    """Weights minimising the relative error Σ_x (Σ_k w_k f_k(x)/φ_p(x) − 1)² on 400 log-spaced x in
    [1e-5, 1.05] (δ = ε²), by Householder least squares (LAPACK's QR here, the TS code's own there)."""
    f64 = torch.float64
    i = torch.arange(FIT_POINTS, dtype=f64)
    xs = FIT_X_MIN * (FIT_X_MAX / FIT_X_MIN) ** (i / (FIT_POINTS - 1))
    a, b, c = step
    basis = [xs]
    f = xs
    for _ in range(steps):
        f2 = f * f
        f = f * (a + f2 * (b + c * f2))
        basis.append(f)
    basis_m = torch.stack(basis, dim=1)  # FIT_POINTS × (steps + 1)
    target = xs * (xs * xs + damping * damping) ** ((p - 1) / 2)
    q, r = torch.linalg.qr(basis_m / target[:, None])
    w = torch.linalg.solve_triangular(r, q.T @ torch.ones(FIT_POINTS, 1, dtype=f64), upper=True).flatten()
    approx = basis_m @ w
    report = (xs >= REPORT_X_MIN) & (xs <= 1)
    max_rel = float((approx[report] / target[report] - 1).abs().max())
    return ShapingFit(p, damping, step, steps, [float(v) for v in w], max_rel)


_FIT_CACHE: "OrderedDict[Tuple[float, float], ShapingFit]" = OrderedDict()


def cached_shaping_fit(p: float, damping: float) -> ShapingFit:
    """Fits are cached per (p, ε), as the TS trainer does (a schedule holding p reuses its fit)."""
    key = (p, damping)
    fit = _FIT_CACHE.get(key)
    if fit is None:
        fit = fit_shaping_weights(p, damping)
        if len(_FIT_CACHE) > 256:
            _FIT_CACHE.popitem(last=False)
        _FIT_CACHE[key] = fit
    return fit
