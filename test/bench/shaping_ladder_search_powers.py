"""Higher-degree steps for DynMuon's matmul-only shaping ladder: the companion of shaping_ladder_search.py.
`python test/bench/shaping_ladder_search_powers.py STEPS ITERATIONS POWERS` → JSON lines.

Each step is X ← X·(a + Σ_k c_k·A^k) over the powers of A = X·Xᵀ in POWERS (default 1,2,4: a degree-9
odd polynomial for 4 products a step, A, A², A⁴ = (A²)², then the product with X), so 4 steps would cost
16 products of a square matrix (1.07× Newton–Schulz's 15). Starts: the polynomial with g(1) = 1, g'(1) = 0,
g''(1) = 0 and slope 1000^(1/STEPS) (and ×0.9, ×1.1) at 0, repeated; then Adam on all coefficients as the
companion does (same fit, targets and iterate bound). `init_peak` is the start's largest iterate on
[0, 1.05]: above the bound, the ladder diverges.
"""
import math
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shaping_ladder_search import FIT_POINTS, MAX_ITERATE, REPORTED, TARGETS, XS  # noqa: E402
F64=torch.float64
POW = [int(p) for p in sys.argv[3].split(',')] if len(sys.argv) > 3 else [1, 2, 4]  # powers of A besides A^0
def basis(coef):
    f, out, peaks = XS, [XS], []
    for row in coef:
        f2 = f*f
        poly = row[0] + sum(row[i+1]*f2**k for i,k in enumerate(POW))
        f = f*poly
        out.append(f); peaks.append(f.abs().max())
    return torch.stack(out,1), torch.stack(peaks)
def fit_errors(coef):
    b, peaks = basis(coef); res=[]
    for t in TARGETS:
        a = b/t[:,None]
        w = torch.linalg.lstsq(a, torch.ones(FIT_POINTS,1,dtype=F64)).solution.flatten()
        res.append((a@w-1)[REPORTED])
    return res, peaks
def start(slope):
    # g(1)=1, g'(1)=0, g''(1)=0 with x·(a + Σ c_k x^{2k})
    n=len(POW); A=torch.zeros(3,n,dtype=F64); rhs=torch.zeros(3,dtype=F64)
    degs=[2*k+1 for k in POW]
    A[0]=torch.tensor([1.0]*n,dtype=F64); rhs[0]=1-slope
    A[1]=torch.tensor([float(d) for d in degs],dtype=F64); rhs[1]=-slope
    A[2]=torch.tensor([float(d*(d-1)) for d in degs],dtype=F64); rhs[2]=0
    c=torch.linalg.lstsq(A,rhs.unsqueeze(1)).solution.flatten()
    return [slope]+c.tolist()
def search(init, iters):
    coef=torch.tensor(init,dtype=F64,requires_grad=True); opt=torch.optim.Adam([coef],lr=0.01); best={"worst":math.inf}
    for _ in range(iters):
        opt.zero_grad(); r,pk=fit_errors(coef)
        sm=torch.stack([torch.logsumexp(40*x.abs(),0)/40 for x in r])
        loss=torch.logsumexp(50*sm,0)/50+100*torch.relu(pk-MAX_ITERATE).pow(2).sum()
        if not torch.isfinite(loss): break
        loss.backward(); opt.step()
        with torch.no_grad():
            r,pk=fit_errors(coef); per=[float(x.abs().max()) for x in r]
            if max(per)<best["worst"] and float(pk.max())<=MAX_ITERATE: best={"worst":max(per),"perP":per,"coef":coef.detach().tolist()}
    return best
K=int(sys.argv[1]); iters=int(sys.argv[2])
for s in [1000**(1/K), 0.9*1000**(1/K), 1.1*1000**(1/K)]:
    init=[start(s)]*K
    r0,pk0=fit_errors(torch.tensor(init,dtype=F64))
    b=search(init,iters)
    print(json.dumps({"K":K,"pow":POW,"slope":s,"init_worst":max(float(x.abs().max()) for x in r0),"init_peak":float(pk0.max()),"worst":b["worst"],"perP":b.get("perP")}),flush=True)
