"""The matrix functions DynMuon's step is made of, in torch on the tensors' own device, each the same
sequence of operations as the TS trainer's description (trainer/linalg/ns-iteration.ts):

- Newton–Schulz on the short side first (a tall matrix is transposed and back), X / max(‖X‖_F·safety, eps),
  each step X ← a·X + (b·A + c·A·A)·X with A = X·Xᵀ — with torch.addmm exactly as torch.optim.Muon writes it;
- the combination Σ_k w_k·X_k of Newton–Schulz iterates that the matmul-only shaping evaluates, normalised
  by σ_max·1.02 from 20 power iterations on X·Xᵀ (whose Gram matrix also serves the first step), on X
  itself or, for a matrix at least twice as long as it is short, on its small Gram matrix (same sum, fewer
  flops: see ``gram_side_combination``);
- exact shaping U·φ_p(S)·Vᵀ by torch.linalg.svd in float64 (why: see ``shape_exact``).

Nothing here reads a tensor back to the host: scalars stay tensors, so a step on a GPU does not synchronise.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch

NsStep = Tuple[float, float, float]

#: KellerJordan/Muon and torch.optim.Muon: the same quintic every step.
KELLER_QUINTIC: NsStep = (3.4445, -4.775, 2.0315)

#: Each set: per-step (a, b, c) triples (the last repeats) and the Frobenius-norm safety margin.
NS_COEFFICIENT_SETS: Dict[str, Dict[str, object]] = {
    "keller": {"steps": [KELLER_QUINTIC], "norm_safety": 1.0},
    # modded-nanogpt train_gpt.py; method: Amsel et al., "The Polar Express", arXiv 2505.16932.
    "polarExpress": {
        "steps": [
            (8.156554524902461, -22.48329292557795, 15.878769915207462),
            (4.042929935166739, -2.808917465908714, 0.5000178451051316),
            (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
            (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
            (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
        ],
        "norm_safety": 1.02,
    },
    # The five per-step quintics of the published DynMuon code (Dion's Newton–Schulz).
    "dion": {
        "steps": [
            (4.0848, -6.8946, 2.927),
            (3.9505, -6.3029, 2.6377),
            (3.7418, -5.5913, 2.3037),
            (2.8769, -3.1427, 1.2046),
            (2.8366, -3.0525, 1.2012),
        ],
        "norm_safety": 1.0,
    },
}

#: Keeps 0/0 out of the spectral normalisation of a zero matrix (whose result is then zero).
SPECTRAL_FLOOR = 1e-30


def expand_ns_steps(name: str, steps: int) -> List[NsStep]:
    table = NS_COEFFICIENT_SETS[name]["steps"]
    return [table[min(i, len(table) - 1)] for i in range(steps)]  # type: ignore[index]


def is_tall(x: torch.Tensor) -> bool:
    return x.shape[0] > x.shape[1]


def short_side_first(x: torch.Tensor) -> torch.Tensor:
    """A tall matrix transposed (a view), so that X·Xᵀ is the small Gram matrix."""
    return x.T if is_tall(x) else x


def oriented_like(result: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """A result computed on short_side_first(original), back in the original's orientation."""
    return result.T if is_tall(original) else result


def ns_step(x: torch.Tensor, step: NsStep, gram: Optional[torch.Tensor] = None) -> torch.Tensor:
    """X ← a·X + (b·A + c·A·A)·X with A = X·Xᵀ (given when the caller has it already)."""
    a, b, c = step
    g = x @ x.T if gram is None else gram
    poly = torch.addmm(g, g, g, beta=b, alpha=c)
    return torch.addmm(x, poly, x, beta=a)


def orthogonalize(x: torch.Tensor, steps: Sequence[NsStep], eps: float, norm_safety: float = 1.0) -> torch.Tensor:
    """Newton–Schulz: orient, X / max(‖X‖_F·safety, eps), iterate, orient back. `x` is not modified."""
    xs = short_side_first(x)
    norm = xs.norm() if norm_safety == 1 else xs.norm() * norm_safety
    xs = xs / norm.clamp(min=eps)
    for step in steps:
        xs = ns_step(xs, step)
    return oriented_like(xs, x)


_START_VECTORS: Dict[Tuple[int, torch.dtype, torch.device], torch.Tensor] = {}


def power_start_vector(m: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A fixed start vector for power iteration: deterministic, with no sign pattern to be orthogonal to.
    Made once per (size, dtype, device): a host→device copy every step would wait for the device."""
    key = (m, dtype, device)
    v = _START_VECTORS.get(key)
    if v is None:
        i = torch.arange(1, m + 1, dtype=torch.float64)
        v = (1 + 0.5 * torch.sin(12.9898 * i)).to(dtype=dtype, device=device).reshape(m, 1)
        if len(_START_VECTORS) > 64:
            _START_VECTORS.clear()
        _START_VECTORS[key] = v
    return v


def largest_eigenvalue(gram: torch.Tensor, iterations: int) -> torch.Tensor:
    """σ_max² as the Rayleigh quotient after `iterations` power steps on A = X·Xᵀ (from below)."""
    v = power_start_vector(gram.shape[0], gram.dtype, gram.device)
    for _ in range(iterations):
        w = gram @ v
        v = w / w.norm().clamp(min=SPECTRAL_FLOOR)
    return (v * (gram @ v)).sum()


def power_sigma_max(x: torch.Tensor, iterations: int) -> torch.Tensor:
    """σ_max of X from power iteration in float64 on its short-side Gram matrix (formed in X's dtype)."""
    xs = short_side_first(x)
    lam = largest_eigenvalue((xs @ xs.T).double(), iterations)
    return lam.clamp(min=0).sqrt()


#: From this ratio of long to short side on, ns_combination finishes on the Gram side. Per step on m×n
#: (m ≤ n), in units of m³ multiply-adds: X side 2n/m + 1 (A = X·Xᵀ, then the polynomial times X), Gram side
#: 4 (all m×m), plus 2n/m twice (M_k = X_k·X_kᵀ and the final R·X_k). Square matrices stay on the X side
#: (Gram side measured 1.7× slower at 1024²).
GRAM_SIDE_MIN_ASPECT = 2.0
#: The Gram side takes over after this many X-side steps. Why not from the start: R = Σ w_k·Q_k holds
#: φ_p(σ)/σ, up to ~5600 for the smallest directions at p = −0.25, and float32 round-off relative to that
#: lands on the top directions (whose R ≈ 1): 2.3e-3 relative error of the whole sum against float64 from
#: step 0, 2.8e-5 from step 3 (X side alone: 5.4e-6), per direction ≤ 2e-5 over σ ∈ [1e-3, 1]·σ_max — a
#: thousandth of the fit's own error. Cost on 1024×4096 (8 steps): 1.18× torch.optim.Muon against 1.68×
#: X-side only (from step 2: 0.99×, but 1.4e-4 round-off; from step 4: 1.25×).
GRAM_SIDE_FROM_STEP = 3


def gram_side_combination(m0: torch.Tensor, steps: Sequence[NsStep], weights: Sequence[float]) -> torch.Tensor:
    """R with Σ_k weights[k]·X_k = R·X₀, for X_{k+1} = ns_step(X_k) and M₀ = X₀·X₀ᵀ.

    Why it exists: every iterate is X_k = Q_k·X₀ with Q_k a polynomial in M₀ (Q₀ = I, Q_{k+1} = Q_k·P_k,
    P_k = a·I + b·M_k + c·M_k², M_k = X_k·X_kᵀ = P_{k−1}·M_{k−1}·P_{k−1}), and all of them commute. So the
    whole combination is one m×m matrix R = Σ_k w_k·Q_k times X₀, and the n-long side is touched twice
    (M₀ and R·X₀) instead of twice per step. Same sum in exact arithmetic (to 1e-11 in float64, tested);
    its float32 round-off is why ns_combination starts it only at GRAM_SIDE_FROM_STEP."""
    eye = torch.eye(m0.shape[0], dtype=m0.dtype, device=m0.device)
    m = m0
    q: Optional[torch.Tensor] = None
    r = eye * weights[0]
    for k, (a, b, c) in enumerate(steps):
        poly = torch.addmm(m, m, m, beta=b, alpha=c)
        poly.diagonal().add_(a)
        q = poly if q is None else q @ poly
        r.add_(q, alpha=weights[k + 1])
        if k + 1 < len(steps):  # the last step's M is never used
            m = poly @ (m @ poly)
    return r


def ns_combination(x: torch.Tensor, steps: Sequence[NsStep], weights: Sequence[float],
                   sigma_margin: float, power_iterations: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Σ_k weights[k]·X_k over X_0 = X/s, X_{k+1} = ns_step(X_k), with s = σ_max·margin from power iteration
    on the raw Gram matrix, which (divided by s twice: s² underflows float32 for tiny s) is the first step's A.
    A long matrix (GRAM_SIDE_MIN_ASPECT) finishes from step GRAM_SIDE_FROM_STEP on the Gram side, with that
    step's A as M₀ (gram_side_combination). Returns the sum (in X's orientation) and s."""
    xs = short_side_first(x)
    raw_gram = xs @ xs.T
    lam = largest_eigenvalue(raw_gram, power_iterations)
    s = (lam.clamp(min=0).sqrt() * sigma_margin).clamp(min=SPECTRAL_FLOOR)
    xk = xs / s
    first_gram = raw_gram / s / s
    gram_from = GRAM_SIDE_FROM_STEP if xs.shape[1] >= GRAM_SIDE_MIN_ASPECT * xs.shape[0] else len(steps) + 1
    total = xk * weights[0]
    gram = first_gram
    for k, step in enumerate(steps):
        if k == gram_from:
            # X_k is in the total already: the rest is Σ_{j>k} w_j·X_j = R·X_k.
            total.addmm_(gram_side_combination(gram, steps[k:], [0.0, *weights[k + 1:]]), xk)
            break
        xk = ns_step(xk, step, gram)
        total.add_(xk, alpha=weights[k + 1])
        gram = xk @ xk.T if k + 1 < len(steps) else None
    return oriented_like(total, x), s


def exact_device(x: torch.Tensor) -> torch.device:
    """Where float64 SVD can run: the tensor's device, except on backends without float64 (MPS)."""
    return torch.device("cpu") if x.device.type == "mps" else x.device


def shape_exact(x: torch.Tensor, p: float, damping: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """U·φ_p(S)·Vᵀ of X with δ = (ε·σ_max)², in float64, and φ_p(S) (its singular values).

    Why an SVD in float64: the directions a negative p amplifies are the small ones, and a float32
    factorisation's absolute error ≈ 6e-8·σ_max is a *relative* error 6e-8·σ_max/σ in them (and forming
    X·Xᵀ in float32, as the TS kernels avoid, loses everything below σ/σ_max ≈ 3.5e-4). torch.linalg.svd
    works on X itself (no squared condition number) on every device; float64 keeps φ_p right to ~1e-12
    over the four decades the fixtures span. It is the reference path; `method="matmul"` is the fast one."""
    x64 = x.to(device=exact_device(x), dtype=torch.float64)
    u, s, vh = torch.linalg.svd(x64, full_matrices=False)
    delta = (damping * s[0]) ** 2 if s.numel() else s.new_zeros(())
    # An exactly zero direction (possible only undamped) has φ = 0, not 0·∞.
    phi = torch.where(s + delta > 0, s * (s * s + delta).clamp(min=1e-300) ** ((p - 1) / 2), torch.zeros_like(s))
    phi = torch.where(s > 0, phi, torch.zeros_like(s))
    return (u * phi) @ vh, phi
