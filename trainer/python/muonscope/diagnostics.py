"""The diagnostics' math in torch, on the tensors' own device: singular values, the spectrum summaries and
per-layer quantities of a `layer_stats` record (the TS trainer's trainer/diagnostics/spectral-summary.ts,
docs/algorithms.md §6), curvature along a direction by a Hessian-vector product, and the two-batch
gradient-noise estimate B_simple. Pure functions of tensors; nothing here logs or times.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

# Above this short side only the top TOP_K singular values are computed, by torch.svd_lowrank (randomized,
# NITER power iterations): an exact SVD of a 1024×4096 matrix per layer and per matrix (G, M, O, W, ΔW)
# would cost more than the training step it watches.
EXACT_MAX_SIDE = 512
TOP_K = 32
LOWRANK_OVERSAMPLE = 8
LOWRANK_NITER = 4


def singular_values(x: torch.Tensor, exact_max_side: int = EXACT_MAX_SIDE, top_k: int = TOP_K) -> Tuple[torch.Tensor, bool]:
    """Descending singular values of a matrix, in float64 on its device, and whether they are all of them.

    Exact (torch.linalg.svdvals) while min(rows, cols) ≤ exact_max_side; otherwise the top `top_k` by
    torch.svd_lowrank with `LOWRANK_OVERSAMPLE` extra columns and `LOWRANK_NITER` power iterations.
    """
    if x.dim() != 2:
        raise ValueError(f"singular_values: need a matrix, got shape {tuple(x.shape)}")
    short = min(x.shape)
    if short <= exact_max_side:
        return torch.linalg.svdvals(x.detach().to(torch.float64)), True
    q = min(short, top_k + LOWRANK_OVERSAMPLE)
    xd = x.detach().to(torch.float32)
    if not torch.any(xd != 0):
        return torch.zeros(top_k, dtype=torch.float64, device=x.device), False
    _, s, _ = torch.svd_lowrank(xd, q=q, niter=LOWRANK_NITER)
    return s[:top_k].to(torch.float64), False


def _even_tail(values: Sequence[float], frobenius: Optional[float], short_side: int) -> Tuple[int, float]:
    k = len(values)
    if frobenius is None or short_side <= k:
        return 0, 0.0
    seen = sum(v * v for v in values)
    unseen = max(0.0, frobenius * frobenius - seen)
    count = short_side - k
    cap = values[-1] if k > 0 else math.inf
    return count, min(math.sqrt(unseen / count), cap)


def spectrum_summary(values: Sequence[float], frobenius: Optional[float] = None, short_side: int = 0) -> Dict[str, float]:
    """σ_max, stable rank Σσ²/σ_max², effective rank exp(entropy of σ/Σσ), nuclear rank ‖·‖_*²/‖·‖_F².

    With `frobenius` and `short_side` (top-k values only) the unseen energy is spread evenly over the
    unseen values, capped at σ_k, as the TS trainer does (spectral-summary.ts explains why): the stable
    rank stays exact, the effective and nuclear ranks become upper estimates. A zero matrix gives zeros.
    """
    vals = [float(v) for v in values]
    count, tail = _even_tail(vals, frobenius, short_side)
    sigma_max = max(vals[0] if vals else 0.0, tail)
    if not sigma_max > 0:
        return {"sigmaMax": 0.0, "stableRank": 0.0, "effectiveRank": 0.0, "nuclearRank": 0.0}
    xs = [v / sigma_max for v in vals]
    t = tail / sigma_max
    energy = sum(x * x for x in xs) + count * t * t
    l1 = sum(xs) + count * t
    entropy = -sum((x / l1) * math.log(x / l1) for x in xs if x > 0)
    if t > 0:
        entropy -= count * (t / l1) * math.log(t / l1)
    return {"sigmaMax": sigma_max, "stableRank": energy, "effectiveRank": math.exp(entropy), "nuclearRank": l1 * l1 / energy}


def nuclear_norm(values: Sequence[float], frobenius: Optional[float] = None, short_side: int = 0) -> float:
    """Σσ_i; with a top-k spectrum the unseen values are spread evenly as in spectrum_summary (an upper estimate)."""
    vals = [float(v) for v in values]
    count, tail = _even_tail(vals, frobenius, short_side)
    return sum(vals) + count * tail


def frobenius(x: torch.Tensor) -> float:
    """‖x‖_F in float64."""
    return float(torch.linalg.vector_norm(x.detach().to(torch.float64)))


def alignment(g: torch.Tensor, o: torch.Tensor) -> float:
    """⟨G, O⟩/(‖G‖_F‖O‖_F); 0 when either is zero."""
    ng, no = frobenius(g), frobenius(o)
    if not (ng > 0 and no > 0):
        return 0.0
    return float(torch.sum((g.detach().to(torch.float64) / ng) * (o.detach().to(torch.float64) / no)))


def nuclear_alignment(g: torch.Tensor, o: torch.Tensor, g_nuclear: float) -> float:
    """⟨G, O⟩/‖G‖_* (≤ ‖O‖_op, equal when O is a multiple of G's polar factor); 0 when G is zero."""
    ng = frobenius(g)
    if not (ng > 0 and g_nuclear > 0):
        return 0.0
    return float(torch.sum((g.detach().to(torch.float64) / ng) * o.detach().to(torch.float64))) * (ng / g_nuclear)


def rms_to_rms_factor(rows: int, cols: int) -> float:
    """√(in/out) for a (rows = out, cols = in) matrix: ‖A‖_{RMS→RMS} = √(in/out)·‖A‖_op."""
    return math.sqrt(cols / rows) if rows > 0 else 0.0


def orthogonality_error_from_spectrum(values: Sequence[float], short_side: int) -> float:
    """‖O·Oᵀ − I‖_F/√m on the short side m, from all m singular values of O."""
    if short_side == 0:
        return 0.0
    vals = [float(v) for v in values] + [0.0] * max(0, short_side - len(values))
    return math.sqrt(sum((s * s - 1) ** 2 for s in vals[:short_side]) / short_side)


def orthogonality_error(o: torch.Tensor) -> float:
    """The same quantity formed directly (when only top-k singular values are known)."""
    x = o.detach().to(torch.float64)
    if x.shape[0] > x.shape[1]:
        x = x.T
    m = x.shape[0]
    if m == 0:
        return 0.0
    gram = x @ x.T - torch.eye(m, dtype=x.dtype, device=x.device)
    return float(torch.linalg.matrix_norm(gram)) / math.sqrt(m)


NS_NEAR_ONE_BAND = (0.6, 1.4)  # common/protocol.ts NS_NEAR_ONE_BAND


def newton_schulz_reach(values: Sequence[float], rows: int, cols: int, coefficients: Sequence[float], steps: int, eps: float) -> Tuple[float, int]:
    """How far Newton–Schulz gets on M, from all of M's singular values: ‖NS(M) − polar(M)‖_F/‖polar(M)‖_F
    and how many singular values of NS(M) lie in NS_NEAR_ONE_BAND. NS maps each singular value by its odd
    polynomial f(x) = a·x + b·x³ + c·x⁵ after dividing M by max(‖M‖_F, eps), as torch.optim.Muon runs it
    (in exact arithmetic; torch runs it in bfloat16). polar(M) has rank(M) directions, numpy's
    matrix_rank tolerance σ > σ_max·max(m, n)·2⁻⁵²; a zero M gives (0, 0).
    """
    vals = [float(v) for v in values]
    if not vals or not vals[0] > 0:
        return 0.0, 0
    a, b, c = coefficients
    scale = max(math.sqrt(sum(v * v for v in vals)), eps)
    floor = vals[0] * max(rows, cols) * 2.0 ** -52
    low, high = NS_NEAR_ONE_BAND
    rank = near = 0
    err = 0.0
    for v in vals:
        f = v / scale
        for _ in range(steps):
            f = a * f + b * f ** 3 + c * f ** 5
        near += low <= f <= high
        if v > floor:
            rank += 1
            err += (f - 1) ** 2
    return math.sqrt(err / rank), near


def update_rms_theory(rows: int, cols: int, scale: float) -> float:
    """Muon's update RMS: an orthogonal m×n direction has RMS 1/√max(m, n), times the lr scale."""
    long = max(rows, cols)
    return scale / math.sqrt(long) if long > 0 else 0.0


def update_weight_ratio(delta_w: torch.Tensor, w: torch.Tensor) -> float:
    """‖ΔW‖_F/‖W‖_F (0 for a zero weight, so the record stays finite)."""
    nw = frobenius(w)
    return frobenius(delta_w) / nw if nw > 0 else 0.0


def rms(x: torch.Tensor) -> float:
    n = x.numel()
    return frobenius(x) / math.sqrt(n) if n > 0 else 0.0


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos(a, b) (the update cosine); 0 when either is zero."""
    return alignment(a, b)


# ---------- curvature ----------

def directional_curvatures(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
                           directions: Sequence[Sequence[torch.Tensor]]) -> List[Tuple[float, float, float]]:
    """gᵀd, dᵀHd and dᵀd of `loss_fn()` at the params' current values, for each direction d (one tensor per
    param, zeros where d has no component), by double backward: one gradient with its graph, then for each
    d the gradient of gᵀd, which is H·d. Exact for the loss as torch differentiates it. Why several at once:
    the forward pass and the first backward (about half of one probe's cost) serve every direction.
    """
    params = list(params)
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    out = []
    for n, direction in enumerate(directions):
        gd = None
        for g, d in zip(grads, direction):
            if g is None:
                continue
            term = torch.sum(g * d.to(g.dtype))
            gd = term if gd is None else gd + term
        if gd is None:
            raise ValueError("directional_curvature: the loss does not depend on any of the parameters")
        hd = torch.autograd.grad(gd, params, allow_unused=True, retain_graph=n + 1 < len(directions))
        dhd = sum(float(torch.sum(h.detach().to(torch.float64) * d.to(torch.float64))) for h, d in zip(hd, direction) if h is not None)
        dd = sum(float(torch.sum(d.to(torch.float64) ** 2)) for d in direction)
        out.append((float(gd.detach()), dhd, dd))
    return out


def directional_curvature(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor], direction: Sequence[torch.Tensor]) -> Tuple[float, float, float]:
    """directional_curvatures for one direction."""
    return directional_curvatures(loss_fn, params, [direction])[0]


def step_stability(gd: float, dhd: float, dd: float, eta: float) -> Dict[str, Optional[float]]:
    """κ_d = dᵀHd/‖d‖², η* = gᵀd/dᵀHd (None when dᵀHd ≤ 0), the edge 2·gᵀd/(η‖d‖²) (trainer/diagnostics/curvature.ts)."""
    return {
        "kappaUpdate": dhd / dd if dd > 0 else 0.0,
        "etaStarBefore": gd / dhd if dhd > 0 else None,
        "edgeAlongUpdate": 2 * gd / (eta * dd) if dd > 0 and eta > 0 else 0.0,
    }


# ---------- gradient noise ----------

def two_batch_estimate(small_sq: float, small: int, big_sq: float, big: int) -> Dict[str, float]:
    """Unbiased |G|² and tr(Σ) from mean squared gradient norms at batch sizes small < big (McCandlish et al.)."""
    if not (big > small > 0):
        raise ValueError(f"two_batch_estimate: need 0 < b < B, got b={small}, B={big}")
    return {"gradSq": (big * big_sq - small * small_sq) / (big - small), "traceSigma": (small_sq - big_sq) / (1 / small - 1 / big)}


def microbatch_sums(micro: Iterable[Dict[str, torch.Tensor]]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Per parameter, the sum of the microbatch gradients (flattened, float64) and the sum of their squared
    norms (a float64 scalar tensor), on the gradients' device. Sums rather than the gradients themselves, so
    that groups of microbatches measured apart (ranks of a data-parallel run) add up to the whole, and so
    that a lazy iterable holds one microbatch's gradients at a time. An empty iterable gives empty dicts."""
    sums: Dict[str, torch.Tensor] = {}
    sq_sums: Dict[str, torch.Tensor] = {}
    for m in micro:
        for name, g in m.items():
            v = g.detach().to(torch.float64).reshape(-1)
            sq = torch.sum(v * v)  # a tensor: no host sync per microbatch on CUDA
            if name in sums:
                sums[name] = sums[name] + v
                sq_sums[name] = sq_sums[name] + sq
            else:
                sums[name], sq_sums[name] = v.clone(), sq
    return sums, sq_sums


def noise_from_sums(sums: Dict[str, torch.Tensor], sq_sums: Dict[str, object], k: int, micro_size: int) -> Tuple[Dict[str, Dict[str, float]], Dict[str, float]]:
    """The two-batch estimate from the sums of K ≥ 2 microbatch gradients of `micro_size` examples each
    (microbatch_sums, possibly added over groups): the small batch is one microbatch (|G_b|² averaged over
    the K: Σ|g_i|²/K), the big one their mean (|Σg_i/K|², B = K·b). Per parameter, in the order of `sums`,
    and over the whole model."""
    if k < 2:
        raise ValueError(f"microbatch_noise: need at least 2 microbatches, got {k}")
    per: Dict[str, Dict[str, float]] = {}
    small_total = big_total = 0.0
    for name, s in sums.items():
        small_sq = float(sq_sums[name]) / k
        big_sq = float(torch.sum((s.to(torch.float64) / k) ** 2))
        per[name] = two_batch_estimate(small_sq, micro_size, big_sq, k * micro_size)
        small_total += small_sq
        big_total += big_sq
    return per, two_batch_estimate(small_total, micro_size, big_total, k * micro_size)


def microbatch_noise(micro: List[Dict[str, torch.Tensor]], micro_size: int) -> Tuple[Dict[str, Dict[str, float]], Dict[str, float]]:
    """The two-batch estimate from K ≥ 2 microbatch gradients of `micro_size` examples each (one dict of
    gradients by parameter name per microbatch): noise_from_sums of microbatch_sums. Per parameter and
    over the whole model."""
    k = len(micro)
    if k < 2:
        raise ValueError(f"microbatch_noise: need at least 2 microbatches, got {k}")
    return noise_from_sums(*microbatch_sums(micro), k, micro_size)


def b_simple(sample: Dict[str, float]) -> Optional[float]:
    """tr(Σ)/|G|²; None while |G|² ≤ 0; a negative tr(Σ) reads as 0."""
    return max(0.0, sample["traceSigma"]) / sample["gradSq"] if sample["gradSq"] > 0 else None


class NoiseWindow:
    """The measurements of the last `steps` training steps; |G|² and tr(Σ) averaged separately, divided at the end."""

    def __init__(self, steps: int):
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"NoiseWindow: steps must be a whole number ≥ 1, got {steps!r}")
        self.steps = steps
        self.entries: List[Tuple[int, Dict[str, float]]] = []

    def add(self, step: int, sample: Dict[str, float]) -> None:
        self.entries.append((step, sample))
        self.entries = [(s, e) for s, e in self.entries if step - s < self.steps]

    def average(self) -> Dict[str, object]:
        n = len(self.entries)
        g = sum(e["gradSq"] for _, e in self.entries) / n
        t = sum(e["traceSigma"] for _, e in self.entries) / n
        return {"gradSq": g, "traceSigma": t, "bSimple": b_simple({"gradSq": g, "traceSigma": t}), "count": n}
