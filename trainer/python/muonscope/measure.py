"""Measurements the host asks for (docs/python.md §3, ``measure``): the mode probe's directions
(docs/algorithms.md §10.6) on a torch run. Python measures; the mode model, its recommendation and the
``p_model`` record are the host's (trainer/host/mode-requests.ts), so the rules run once, in Node.

``modeDirections``, per DynMuon ``exact`` matrix layer asked for:

1. K held-out microbatch gradients, from the user's ``noise_probe(i)`` (the loss of the i-th held-out
   microbatch), at the current weights.
2. The matrix the next step shapes: the momentum updated with the microbatches' mean gradient as the
   optimizer would (B ← B.lerp(Ḡ, 1 − μ)), Nesterov-blended when the group uses Nesterov (U = Ḡ.lerp(B, μ)),
   in float64. Its exact SVD, and k distinct log-spaced ranks (``log_spaced_ranks``, the TS probe's rule).
3. Per direction u·vᵀ: σ; the components uᵀG_k v, their mean (``gradient``) and unbiased variance
   (``noiseVariance``, one microbatch's); the curvature (u·vᵀ)ᵀH(u·vᵀ) of the user's ``probe()`` (the
   held-out loss) in that layer's block, by double backward (exact, where the TS probe uses a central
   difference).

Gradients come from torch.autograd.grad (``.grad`` is never touched) and the random streams are forked, as
for the other diagnostics (observer.py). A measure that cannot be taken is refused with nothing changed
(``MeasureRefused``: NOT_ALLOWED_NOW without probe and noise_probe, before the first step, or with no DynMuon
``exact`` layer; INVALID_COMMAND for a malformed request).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from . import optinfo, race
from .optim import DynMuon, adjust_lr_scale

#: modeDirections: the mode probe (here); race: fork-and-race (race.py).
WHATS = ("modeDirections", "race")


class MeasureRefused(Exception):
    """A measure not taken; `code` is one of the protocol's error codes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def log_spaced_ranks(rank_count: int, k: int) -> List[int]:
    """k distinct ranks (0 = largest σ) log-spaced from 0 to rank_count − 1: floor(rank_count^(i/(k−1)) + 0.5) − 1,
    each pushed up past the one before and down so that the ones after still fit; all ranks when k ≥ rank_count.
    The TS probe's logSpacedRanks (trainer/advisor/mode-probe.ts), rounding half up as it does."""
    if not (isinstance(rank_count, int) and not isinstance(rank_count, bool) and rank_count >= 1):
        raise ValueError(f"log_spaced_ranks: rank_count must be a positive integer, got {rank_count!r}")
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise ValueError(f"log_spaced_ranks: k must be a positive integer, got {k!r}")
    if k >= rank_count:
        return list(range(rank_count))
    if k == 1:
        return [0]
    out: List[int] = []
    for i in range(k):
        x = math.floor(rank_count ** (i / (k - 1)) + 0.5) - 1
        lo = out[-1] + 1 if out else 0
        hi = rank_count - (k - i)
        out.append(min(max(x, lo), hi))
    return out


def next_step_source(buffer: torch.Tensor, grad: torch.Tensor, momentum: float, nesterov: bool) -> torch.Tensor:
    """The matrix the next step would shape if `grad` were its gradient (torch.optim.Muon's and DynMuon
    exact's EMA momentum), in float64; `buffer` is not changed."""
    b = buffer.detach().to(torch.float64)
    g = grad.detach().to(torch.float64)
    b = b + (1 - momentum) * (g - b)
    return g + momentum * (b - g) if nesterov else b


@dataclass
class LayerSource:
    """One layer to measure: its parameter, matrix shape, momentum buffer and how its optimizer blends."""
    name: str
    param: torch.Tensor
    rows: int
    cols: int
    buffer: torch.Tensor
    momentum: float
    nesterov: bool
    scale: float


def mode_directions(probe: Callable[[], torch.Tensor], noise_probe: Callable[[int], torch.Tensor], microbatches: int,
                    params: Sequence[torch.Tensor], layers: Sequence[LayerSource], k: int,
                    measured: Optional[Sequence[str]] = None, candidates: Optional[Sequence[float]] = None,
                    shape: Optional[Callable[[LayerSource, torch.Tensor, float], torch.Tensor]] = None) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, float]]]]:
    """The directions of each layer named in `measured` (all of `layers` when None; steps 1–3 of the module's
    docs), and with `candidates` the cross-check's products (``cross_check``) over all of `layers`; `params`
    are every trainable parameter (the losses' gradients are taken with respect to all of them)."""
    params = list(params)
    index = {id(p): i for i, p in enumerate(params)}
    for l in layers:
        if id(l.param) not in index:
            raise ValueError(f"mode_directions: {l.name} is not among the trainable parameters")
    micro: List[List[torch.Tensor]] = []
    for i in range(microbatches):
        grads = torch.autograd.grad(noise_probe(i), [l.param for l in layers], allow_unused=True)
        micro.append([(g if g is not None else torch.zeros_like(l.param)).detach().reshape(l.rows, l.cols).to(torch.float64)
                      for l, g in zip(layers, grads)])
    # One gradient of the probe with its graph; each curvature is then one more backward through it.
    loss = probe()
    probe_grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    out = []
    sources = [next_step_source(l.buffer.reshape(l.rows, l.cols), torch.stack([m[j] for m in micro]).mean(0), l.momentum, l.nesterov)
               for j, l in enumerate(layers)]
    for j, l in enumerate(layers):
        if measured is not None and l.name not in measured:
            continue
        gs = [m[j] for m in micro]
        u, s, vh = torch.linalg.svd(sources[j], full_matrices=False)
        g_layer = probe_grads[index[id(l.param)]]
        directions = []
        for rank in log_spaced_ranks(min(l.rows, l.cols), k):
            uu, vv = u[:, rank], vh[rank, :]
            comps = torch.stack([uu @ g @ vv for g in gs])
            d = torch.outer(uu, vv)
            if g_layer is None or not g_layer.requires_grad:
                curvature = 0.0  # the probe is linear (or constant) in this layer
            else:
                dp = d.to(l.param.dtype).reshape(l.param.shape)
                (hd,) = torch.autograd.grad(g_layer, l.param, grad_outputs=dp, retain_graph=True, allow_unused=True)
                curvature = 0.0 if hd is None else float(torch.sum(hd.detach().to(torch.float64).reshape(l.rows, l.cols) * d))
            directions.append({"rank": rank, "sigma": float(s[rank]), "curvature": curvature,
                               "gradient": float(comps.mean()), "noiseVariance": float(comps.var(unbiased=True))})
        out.append({"layer": l.name, "rows": l.rows, "cols": l.cols, "scale": l.scale, "directions": directions})
    if candidates is None:
        return out, None
    if shape is None:
        raise ValueError("mode_directions: the cross-check needs `shape`, the run's own direction at a p")
    return out, cross_check(layers, sources, micro, [probe_grads[index[id(l.param)]] for l in layers], candidates, shape)


def cross_check(layers: Sequence[LayerSource], sources: Sequence[torch.Tensor], micro: Sequence[Sequence[torch.Tensor]],
                probe_grads: Sequence[Optional[torch.Tensor]], candidates: Sequence[float],
                shape: Callable[[LayerSource, torch.Tensor, float], torch.Tensor]) -> List[Dict[str, float]]:
    """docs/algorithms.md §10.6 point 5, the products only (the host scores them): per candidate p, the run's
    step direction d_p over all `layers` (`shape`: per unit of the run's lr, the layer's scale included),
    gᵀd on each half of the microbatches (g_A the first ⌊K/2⌋, g_B the rest) and dᵀHd of the probe."""
    half = len(micro) // 2
    g_a = [torch.stack([m[j] for m in micro[:half]]).mean(0) for j in range(len(layers))]
    g_b = [torch.stack([m[j] for m in micro[half:]]).mean(0) for j in range(len(layers))]
    with_graph = [(l, g) for l, g in zip(layers, probe_grads) if g is not None and g.requires_grad]
    out = []
    for p in candidates:
        d = [shape(l, src, p).to(torch.float64) for l, src in zip(layers, sources)]
        gd_a = sum(float(torch.sum(a * x)) for a, x in zip(g_a, d))
        gd_b = sum(float(torch.sum(b * x)) for b, x in zip(g_b, d))
        dhd = 0.0
        if with_graph:
            by_name = {l.name: x for l, x in zip(layers, d)}
            outs = [g for _, g in with_graph]
            ins = [l.param for l, _ in with_graph]
            dirs = [by_name[l.name].to(l.param.dtype).reshape(l.param.shape) for l, _ in with_graph]
            hd = torch.autograd.grad(outs, ins, grad_outputs=dirs, retain_graph=True, allow_unused=True)
            dhd = sum(float(torch.sum(h.detach().to(torch.float64).reshape(l.rows, l.cols) * by_name[l.name]))
                      for (l, _), h in zip(with_graph, hd) if h is not None)
        out.append({"p": float(p), "gdA": gd_a, "gdB": gd_b, "dHd": dhd})
    return out


def _whole(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def check_params(params: Any) -> Dict[str, Any]:
    """The request's params as docs/python.md §3 has them; INVALID_COMMAND otherwise."""
    if not isinstance(params, dict):
        raise MeasureRefused("INVALID_COMMAND", "measure: params must be an object")
    if not _whole(params.get("k"), 1, 64):
        raise MeasureRefused("INVALID_COMMAND", f"measure: k must be an integer in [1, 64], got {params.get('k')!r}")
    if not _whole(params.get("microbatches"), 2, 64):
        raise MeasureRefused("INVALID_COMMAND", f"measure: microbatches must be an integer in [2, 64], got {params.get('microbatches')!r}")
    if not _whole(params.get("horizonSteps"), 1, 10**9):
        raise MeasureRefused("INVALID_COMMAND", f"measure: horizonSteps must be an integer ≥ 1, got {params.get('horizonSteps')!r}")
    layers = params.get("layers")
    if layers is not None and not (isinstance(layers, list) and all(isinstance(x, str) for x in layers)):
        raise MeasureRefused("INVALID_COMMAND", "measure: layers must be a list of parameter names")
    cc = params.get("crossCheck")
    if cc is not None and not (isinstance(cc, list) and len(cc) <= 16 and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in cc)):
        raise MeasureRefused("INVALID_COMMAND", "measure: crossCheck must be a list of at most 16 finite p values")
    return params


def _sources(run: Any, wanted: Optional[List[str]]) -> List[LayerSource]:
    """The matrix layers owned by a DynMuon in `exact` mode with a momentum buffer (the probe predicts that
    mode's directions), restricted to `wanted` when given."""
    run_lr = optinfo.run_lr(run.optimizer)
    out = []
    for info in run.params:
        if not info.is_matrix or (wanted is not None and info.name not in wanted):
            continue
        opt = run.observer.owner.get(id(info.param))
        if not isinstance(opt, DynMuon) or opt.mode != "exact":
            continue
        buf = opt.state.get(info.param, {}).get("momentum_buffer")
        if not isinstance(buf, torch.Tensor):
            continue
        group = optinfo.group_of(opt, info.param)
        scale = adjust_lr_scale(group["adjust_lr"], info.rows, info.cols) * float(group["lr"]) / run_lr if run_lr > 0 else 0.0
        out.append(LayerSource(info.name, info.param, info.rows, info.cols, buf, float(group["momentum"]), bool(group["nesterov"]), scale))
    return out


def mode_directions_result(run: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """The `measured` result for a watch.Run at its step boundary; raises MeasureRefused."""
    obs = run.observer
    if obs.probe is None or obs.noise_probe is None:
        raise MeasureRefused("NOT_ALLOWED_NOW", "modeDirections needs the held-out losses probe() and noise_probe(i) "
                             "(with microbatch_size) given to muonscope.watch(); this run has no mode probe")
    done = run.steps_done
    if done < 1:
        raise MeasureRefused("NOT_ALLOWED_NOW", "modeDirections: no step has been taken yet (the momentum is empty)")
    eligible = _sources(run, None)
    wanted = params.get("layers")
    layers = [l for l in eligible if wanted is None or l.name in wanted]
    if not layers:
        raise MeasureRefused("NOT_ALLOWED_NOW", "modeDirections: no matrix layer " + ("of those asked for " if params.get("layers") is not None else "")
                             + "is updated by a DynMuon in exact mode with a momentum buffer (the mode model describes that optimizer)")
    opt = run.observer.owner[id(layers[0].param)]
    group = optinfo.group_of(opt, layers[0].param)
    microbatches = min(params["microbatches"], obs.microbatches)
    horizon = max(1, min(params["horizonSteps"], opt.total_steps - done))
    trainable = [p.param for p in run.params if p.param.requires_grad]
    device = layers[0].param.device
    started = time.perf_counter()
    def shape(l: LayerSource, source: torch.Tensor, p: float) -> torch.Tensor:
        owner = run.observer.owner[id(l.param)]
        d, _ = owner._exact_direction(source.to(l.buffer.dtype), optinfo.group_of(owner, l.param), p)
        return d.to(torch.float64) * l.scale

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.enable_grad():
        measured, products = mode_directions(obs.probe, obs.noise_probe, microbatches, trainable, eligible, params["k"],
                                             measured=[l.name for l in layers], candidates=params.get("crossCheck"), shape=shape)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    for l in measured:
        for d in l["directions"]:
            bad = [key for key, v in d.items() if not math.isfinite(v)]
            if bad:
                raise MeasureRefused("NOT_ALLOWED_NOW", f"modeDirections: non-finite {bad[0]} at rank {d['rank']} of {l['layer']} (a diverging run?)")
    for c in products or []:
        bad = [key for key, v in c.items() if not math.isfinite(v)]
        if bad:
            raise MeasureRefused("NOT_ALLOWED_NOW", f"modeDirections: non-finite cross-check {bad[0]} at p = {c['p']} (a diverging run?)")
    extra = {"crossCheck": products} if products is not None else {}
    return {**extra,
        "what": "modeDirections", "step": done - 1, "layers": measured,
        "microbatches": microbatches, "microbatchSize": int(obs.microbatch_size), "batchSize": float(obs.batch_size),
        "lr": optinfo.run_lr(run.optimizer), "currentP": float(opt.current_p()),
        "scheduleP": {"start": float(opt.p_at(done)), "end": float(opt.p_at(done + horizon))}, "horizonSteps": horizon,
        "normalization": group["normalization"], "damping": float(group["damping"]),
        "maxGain": None if group["max_gain"] is None else float(group["max_gain"]),
        "costMs": (time.perf_counter() - started) * 1000,
    }


def answer(run: Any, msg: Dict[str, Any]) -> Dict[str, Any]:
    """The reply to a host's `measure` message: `measured` with the result, or `refused` with a code."""
    mid = str(msg.get("id", ""))[:64]
    try:
        what = msg.get("what")
        if what not in WHATS:
            raise MeasureRefused("INVALID_COMMAND", f"measure: unknown what {what!r}; expected one of {', '.join(WHATS)}")
        if what == "race":
            result = race.race_result(run, msg.get("params"))
        else:
            result = mode_directions_result(run, check_params(msg.get("params")))
        return {"type": "measured", "id": mid, "result": result}
    except (MeasureRefused, race.RaceRefused) as e:
        return {"type": "refused", "id": mid, "code": e.code, "message": e.message[:2000]}
    except Exception as e:  # a failed measurement must not take the run down
        return {"type": "refused", "id": mid, "code": "INTERNAL", "message": f"{what} failed: {type(e).__name__}: {e}"[:2000]}
