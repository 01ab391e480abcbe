"""Can fewer Newton–Schulz steps carry DynMuon's matmul-only shaping? A search, kept as the evidence for the
README's answer (no): `python test/bench/shaping_ladder_search.py STEPS [ITERATIONS]` → JSON lines.

The matmul path (docs/algorithms.md §2.5) fits φ_p with Σ_k w_k·f_k, f_k the iterates of one gentle quintic
(2.6, −2.7, 1.1) over 8 steps: 24 products of a square matrix against torch.optim.Muon's 15, so ≥ 1.6× its
time at 1024². 1.3× allows 19.5 products: 6 steps (1 + 2 + 5·3 = 18). This searches 6-step (or STEPS-step)
ladders with a *different* quintic per step (3·STEPS coefficients, free) by Adam on a smooth maximum of the
least-squares fit's relative error over p ∈ {0.5, 0.25, 0, −0.25, −0.5} (ε from the gain bound, as DynMuon
fits it), iterates kept below 1.3 on [0, 1.05] (beyond that they diverge under repetition), from the
stationary ladders of slope 1000^(1/STEPS), 0.9× that, and 2.6. Optionally (`--cubes`) each step also
offers f_k³ and f_k⁵, which a square step can form at no extra product (A·X_k, A·(A·X_k)).
It prints the best worst-case error found from each start, and the 8-step published ladder's for reference.
"""
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainer" / "python"))
from muonscope.shaping import FIT_POINTS, FIT_X_MAX, FIT_X_MIN, REPORT_X_MIN, SHAPING_BASIS_STEP, gain_bounded_damping  # noqa: E402

F64 = torch.float64
PS = [0.5, 0.25, 0.0, -0.25, -0.5]
XS = FIT_X_MIN * (FIT_X_MAX / FIT_X_MIN) ** (torch.arange(FIT_POINTS, dtype=F64) / (FIT_POINTS - 1))
REPORTED = (XS >= REPORT_X_MIN) & (XS <= 1)
TARGETS = [XS * (XS * XS + gain_bounded_damping(p, 1e-3, 10.0) ** 2) ** ((p - 1) / 2) for p in PS]
MAX_ITERATE = 1.3


def basis(coef: torch.Tensor, cubes: bool):
    f, out, peaks = XS, [XS], []
    for a, b, c in coef:
        f2 = f * f
        if cubes:
            out += [f * f2, f * f2 * f2]
        f = f * (a + f2 * (b + c * f2))
        out.append(f)
        peaks.append(f.abs().max())
    return torch.stack(out, 1), torch.stack(peaks)


def fit_errors(coef: torch.Tensor, cubes: bool):
    """Per p: the relative residuals of the least-squares fit on the reported range; the iterates' peaks."""
    b, peaks = basis(coef, cubes)
    residuals = []
    for t in TARGETS:
        a = b / t[:, None]
        w = torch.linalg.lstsq(a, torch.ones(FIT_POINTS, 1, dtype=F64)).solution.flatten()
        residuals.append((a @ w - 1)[REPORTED])
    return residuals, peaks


def search(init, cubes: bool, iterations: int):
    coef = torch.tensor(init, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([coef], lr=0.01)
    best = {"worst": math.inf}
    for _ in range(iterations):
        opt.zero_grad()
        residuals, peaks = fit_errors(coef, cubes)
        smooth = torch.stack([torch.logsumexp(40 * r.abs(), 0) / 40 for r in residuals])
        loss = torch.logsumexp(50 * smooth, 0) / 50 + 100 * torch.relu(peaks - MAX_ITERATE).pow(2).sum()
        if not torch.isfinite(loss):
            break
        loss.backward()
        opt.step()
        with torch.no_grad():
            residuals, peaks = fit_errors(coef, cubes)
            per_p = [float(r.abs().max()) for r in residuals]
            if max(per_p) < best["worst"] and float(peaks.max()) <= MAX_ITERATE:
                best = {"worst": max(per_p), "perP": dict(zip(map(str, PS), per_p)), "coefficients": coef.detach().tolist()}
    return best


def stationary(slope: float, steps: int):
    """The quintic with f(1) = 1, f'(1) = 0 and f'(0) = slope, repeated."""
    return [[slope, (5 - 4 * slope) / 2, slope - 1.5]] * steps


def main() -> None:
    steps = int(sys.argv[1])
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else 300
    cubes = "--cubes" in sys.argv
    reference, _ = fit_errors(torch.tensor([list(SHAPING_BASIS_STEP)] * 8, dtype=F64), False)
    print(json.dumps({"reference": "published ladder, 8 steps", "perP": dict(zip(map(str, PS), [float(r.abs().max()) for r in reference]))}), flush=True)
    slope = 1000 ** (1 / steps)
    for start in (slope, 0.9 * slope, 2.6):
        best = search(stationary(start, steps), cubes, iterations)
        print(json.dumps({"steps": steps, "cubes": cubes, "startSlope": start, "iterations": iterations, **best}), flush=True)


if __name__ == "__main__":
    main()
