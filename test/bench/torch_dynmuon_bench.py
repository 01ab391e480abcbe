"""DynMuon's torch step (method "matmul") against torch.optim.Muon with float32 Newton–Schulz, in the same
process, for `npm run bench:torch`.

Usage: python test/bench/torch_dynmuon_bench.py '[[1024,1024],[1024,4096]]' REPEATS cpu|cuda  → JSON on stdout.

torch.optim.Muon's Newton–Schulz casts to bfloat16; as in trainer/python/tests/test_optim.py, its
_zeropower_via_newtonschulz is replaced by its own source with that one cast made float32 (the precision
DynMuon computes in). Both time the whole optimizer step of one matrix (momentum, Nesterov, the
orthogonalisation or shaping, the update) after one warm-up step, interleaved step by step, the median
of REPEATS each; on CUDA each timed step ends with torch.cuda.synchronize(). DynMuon runs at p = −0.25
(a constant schedule), as `npm run bench:optim` times it.
"""
import inspect
import json
import sys
import time

import torch
import torch.optim._muon as torch_muon

from muonscope import DynMuon


def float32_newton_schulz():
    src = inspect.getsource(torch_muon._zeropower_via_newtonschulz)
    if src.count("grad.bfloat16()") != 1:
        raise SystemExit("torch's Newton–Schulz source changed (no single grad.bfloat16()); update the patch")
    namespace = dict(vars(torch_muon))
    exec(src.replace("grad.bfloat16()", "grad.float()"), namespace)  # noqa: S102 - torch's own source
    return namespace["_zeropower_via_newtonschulz"]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def time_pair(steps, repeats, device):
    """Median ms of each (optimizer, parameter, gradient) step, interleaved and alternating which goes
    first, so that drifting load on the machine falls on both alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for opt, param, grad in steps:  # warm-up: the momentum buffer, DynMuon's shaping fit
        param.grad = grad
        opt.step()
    sync()
    times = [[] for _ in steps]
    for r in range(repeats):
        order = range(len(steps)) if r % 2 == 0 else reversed(range(len(steps)))
        for i in order:
            opt, param, grad = steps[i]
            param.grad = grad
            start = time.perf_counter()
            opt.step()
            sync()
            times[i].append((time.perf_counter() - start) * 1000)
    return [median(t) for t in times]


def main() -> None:
    sizes = json.loads(sys.argv[1])
    repeats = int(sys.argv[2])
    device = torch.device(sys.argv[3])
    if repeats < 1:
        raise SystemExit(f"REPEATS must be >= 1, got {repeats}")
    torch_muon._zeropower_via_newtonschulz = float32_newton_schulz()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
           "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "results": []}
    for rows, cols in sizes:
        gen = torch.Generator().manual_seed(0)
        w0 = torch.randn(rows, cols, generator=gen) / cols ** 0.5
        grad = torch.randn(rows, cols, generator=gen).to(device)
        a = torch.nn.Parameter(w0.clone().to(device))
        b = torch.nn.Parameter(w0.clone().to(device))
        muon = torch.optim.Muon([a], lr=0.02)
        dyn = DynMuon([b], lr=0.02, method="matmul", total_steps=1_000_000, schedule={"type": "constant", "p": -0.25})
        muon_ms, dyn_ms = time_pair([(muon, a, grad), (dyn, b, grad)], repeats, device)
        out["results"].append({"m": rows, "n": cols, "repeats": repeats, "muon_fp32_ms": muon_ms,
                               "dynmuon_matmul_ms": dyn_ms, "ratio": dyn_ms / muon_ms})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
