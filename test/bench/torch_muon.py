"""Times torch.optim.Muon's whole step on the benchmark's matrix sizes, as the reference for
`npm run bench:optim`. Two variants: the unmodified optimizer (its Newton–Schulz runs in bfloat16) and
the same optimizer with that one cast replaced by float32 (the precision Muonscope computes in).

Usage: python3 test/bench/torch_muon.py '[[256,256],[512,512]]' [repeats] [fp32|both]  → JSON on stdout.
"""
import json
import os
import sys
import time

import torch
import torch.optim._muon as muon_module

ORIGINAL_NS = muon_module._zeropower_via_newtonschulz


def fp32_newton_schulz(grad, ns_coefficients, ns_steps, eps):
    # torch's own implementation with `grad.bfloat16()` replaced by `grad.float()`.
    a, b, c = ns_coefficients
    x = grad.float()
    if grad.size(0) > grad.size(1):
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(ns_steps):
        gram = x @ x.T
        update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, update, x, beta=a)
    if grad.size(0) > grad.size(1):
        x = x.T
    return x


def time_step(rows, cols, precision, repeats):
    muon_module._zeropower_via_newtonschulz = fp32_newton_schulz if precision == "fp32" else ORIGINAL_NS
    gen = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(rows, cols, generator=gen))
    opt = torch.optim.Muon([param], lr=0.02)
    param.grad = torch.randn(rows, cols, generator=gen)
    opt.step()  # warm-up: allocates the momentum buffer
    times = []
    budget_end = time.perf_counter() + 20
    # bfloat16 without hardware support (no AVX512-BF16) takes seconds a step: stop early past the budget.
    while len(times) < repeats and (len(times) < 1 or time.perf_counter() < budget_end):
        start = time.perf_counter()
        opt.step()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return times[len(times) // 2]


def main():
    sizes = json.loads(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    variants = sys.argv[3] if len(sys.argv) > 3 else "both"
    torch.set_num_threads(os.cpu_count() or 1)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "results": []}
    for rows, cols in sizes:
        out["results"].append({
            "m": rows, "n": cols,
            "fp32_ms": time_step(rows, cols, "fp32", repeats),
            "bf16_ms": time_step(rows, cols, "bf16", repeats) if variants == "both" else None,
        })
    muon_module._zeropower_via_newtonschulz = ORIGINAL_NS
    print(json.dumps(out))


if __name__ == "__main__":
    main()
