"""The diagnostics of a watched torch run, measured around one optimizer step when the scheduler says
they are due, as the TS trainer's diagnostics runner does (trainer/run/diagnostics-runner.ts):

- ``spectra`` (every K steps): for each matrix with a momentum buffer, the singular values of G (the
  step's gradient), M (the momentum after the step), O (the direction the step applied, recovered from
  the weight change: O = −(ΔW + lr·wd·W₀)/(lr·scale·‖M‖^p), wd only when decoupled) and W (after the
  step): a `spectra` record each, and one `layer_stats` record for the layers whose optimizer has a p
  (see optinfo.py).
- ``curvature`` (with a ``probe``): at the weights before the step, on the probe's held-out loss, along
  the update per unit lr d = (θ_before − θ_after)/lr: gᵀd and dᵀHd by a Hessian-vector product, giving
  κ_d, η* and the edge along the update; for the whole model and for one matrix layer in turn.
- ``noise`` (with a ``noise_probe``): B_simple from K microbatch gradients of a held-out batch at the new
  weights, averaged over a window of steps; for the whole model and each matrix layer.
- a ``diagnostics_cost`` record after every step that ran any.

Data parallel (``split``): every rank holds the same weights, gradients (all-reduced) and momentum, so the
ranks share the work. Rank 0 decides what is due and says so before the step (watch.py's exchange);
each rank then measures the spectra and layer stats of the matrix layers i with i mod R = its rank, and of
the curvature probe rank 0 takes the whole model and rank 1 the layer in turn (or, when rank 0's probe is
a probe of its batch's parts, ``probe(part, parts)``, every rank both on its part, and one all-reduce of
the six numbers and a failure count gives rank 0 the mean, the whole batch's value); the shares are gathered to
rank 0, which writes the records in layer order, each saying which rank measured it (``rank``). Of the
gradient noise each rank takes the microbatches i with i mod R = its rank and keeps per parameter only
the sum of their gradients and of their squared norms: B_simple needs nothing else, and sums add up over
ranks, so one all-reduce of one float64 vector (the size of the model, once per noise step) gives rank 0
the whole and it writes the records as one process would. One gather per diagnostics step brings every
rank's records of every diagnostic to rank 0. A share that fails is an alert from rank 0 (and
no noise record at that step, its sum being incomplete), and every rank still takes part in the gather and
the all-reduce, so none waits for another.

A diagnostic that fails is reported as a warning alert and training goes on. Gradients for the probes
come from torch.autograd.grad, so the parameters' ``.grad`` are never touched; the weights are restored
exactly after the curvature probe and the random number generators after every diagnostic, so watching
does not change the training (tested bit for bit). A probe must not change the model itself: a module in
train mode that updates buffers in forward (BatchNorm's running statistics) would, so probes should
evaluate such models in eval mode.
"""
from __future__ import annotations

import inspect
import time
from typing import Callable, Dict, List, Optional

import torch

from . import diagnostics as dg
from . import optinfo
from .matrices import ParamInfo
from .records import alert_record
from .scheduler import Scheduler


def _all_reduce_sum(t: torch.Tensor) -> None:
    import torch.distributed as dist  # only a data-parallel run gets here
    dist.all_reduce(t, op=dist.ReduceOp.SUM)


def _takes_parts(probe: Callable) -> bool:
    """Whether a curvature probe is `probe(part, parts)` (the loss of part `part` of `parts` equal parts of
    its held-out batch) rather than `probe()`: it is when it takes two positional arguments (with or
    without defaults: `probe(part=0, parts=1)` too), and a probe that needs one, or more than two, or a
    keyword-only argument without a default, is refused with the reason. `*args` and builtins without a
    signature are taken as `probe()`."""
    try:
        sig = inspect.signature(probe)
    except (TypeError, ValueError):  # a builtin without a signature: taken as probe()
        return False
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    keyword_only = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if keyword_only:
        raise ValueError(f"probe's keyword-only parameters need defaults (watch calls probe() or probe(part, parts)): {', '.join(keyword_only)}")
    if len(required) <= 2 and len(positional) >= 2:
        return True
    if not required:
        return False
    raise ValueError(f"probe must take no argument (the loss of its held-out batch) or two, probe(part, parts) "
                     f"(the loss of part `part` of `parts` equal parts of it); it needs {len(required)}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Observer:
    def __init__(self, params: List[ParamInfo], optimizers: List[torch.optim.Optimizer], append: Callable[[dict], None],
                 settings: Dict[str, object], probe: Optional[Callable[..., torch.Tensor]] = None,
                 noise_probe: Optional[Callable[[int], torch.Tensor]] = None, microbatches: int = 8,
                 microbatch_size: Optional[int] = None, batch_size: Optional[int] = None):
        self.params = params
        self.matrices = [p for p in params if p.is_matrix]
        # The first optimizer is the run's (its lr is the run's); each parameter is read from its own.
        self.optimizers = list(optimizers)
        self.optimizer = self.optimizers[0]
        self.owner = {id(q): opt for opt in self.optimizers for g in opt.param_groups for q in g["params"]}
        self.append = append
        # probe(part, parts) splits the curvature probe's batch across ranks; everything else (the curvature
        # in one process, the mode probe, race) calls self.probe() for the whole batch, probe(0, 1).
        self.probe_parts = probe is not None and _takes_parts(probe)
        self.curvature_parts = self.probe_parts  # rank 0's, at each step of a data-parallel run (before_step)
        self.part_probe = probe if self.probe_parts else None
        self.probe = (lambda: probe(0, 1)) if self.probe_parts else probe
        self.noise_probe = noise_probe
        if noise_probe is not None:
            if not (isinstance(microbatches, int) and microbatches >= 2):
                raise ValueError(f"noise needs at least 2 microbatches, got {microbatches!r}")
            if not (isinstance(microbatch_size, int) and microbatch_size >= 1):
                raise ValueError(f"noise_probe needs microbatch_size, the examples in each microbatch (an integer ≥ 1), got {microbatch_size!r}")
        self.microbatches = microbatches
        self.microbatch_size = microbatch_size
        self.batch_size = batch_size if batch_size is not None else (microbatches * microbatch_size if microbatch_size else None)
        self.noise_window_steps = int(settings.get("noiseWindowSteps", 1000))
        expensive = [n for n, on in (("noise", noise_probe is not None and settings.get("noise", True)),
                                     ("curvature", probe is not None and settings.get("curvature", True))) if on]
        self.scheduler = Scheduler(int(settings["every"]), bool(settings["adaptive"]), float(settings["budgetPct"]), expensive)
        self.due: List[str] = []
        self.before: Optional[Dict[str, Dict[int, torch.Tensor]]] = None
        self.turn = 0
        self.last_o: Dict[str, tuple] = {}
        self.windows: Dict[str, dg.NoiseWindow] = {}
        # One process: rank 0 of 1, nothing to gather. Data parallel: set by split().
        self.rank, self.world = 0, 1
        self.gather: Callable[[object], Optional[List[object]]] = lambda x: [x]
        self.all_reduce: Callable[[torch.Tensor], None] = lambda t: None

    def split(self, rank: int, world: int, gather: Callable[[object], Optional[List[object]]],
              all_reduce: Optional[Callable[[torch.Tensor], None]] = None) -> None:
        """Shares the diagnostics among `world` ranks (see the module's docs); `gather` collects one object
        per rank on rank 0 (distributed.gather_objects); `all_reduce` sums a tensor over the ranks in place
        (torch.distributed.all_reduce unless given)."""
        self.rank, self.world, self.gather = rank, world, gather
        self.all_reduce = all_reduce if all_reduce is not None else _all_reduce_sum

    def _failed(self, name: str, step: int, e: Exception) -> str:
        return f"{name} diagnostics failed at step {step}{f' on rank {self.rank}' if self.world > 1 else ''} (training goes on): {e!r}"

    def _tag(self, record: dict) -> dict:
        """Which rank measured a record, when there are several."""
        return {**record, "rank": self.rank} if self.world > 1 else record

    # ---- around the step ----

    def plan(self, step: int) -> List[str]:
        """What is due at this step (rank 0's scheduler decides for every rank)."""
        return self.scheduler.due(step) if (self.matrices or self.scheduler.expensive) else []

    def before_step(self, step: int, due: Optional[List[str]] = None, curvature_parts: Optional[bool] = None) -> None:
        """`due`: rank 0's plan, on every rank of a data-parallel run; None: this process decides.
        `curvature_parts`: whether rank 0's probe is a probe of parts, so that every rank takes the same
        path, with the same collectives (a rank without one fails its part and still joins the all-reduce)."""
        self.due = self.plan(step) if due is None else list(due)
        self.curvature_parts = self.probe_parts if curvature_parts is None else bool(curvature_parts)
        if not self.due:
            self.before = None
            return
        need_all = "curvature" in self.due
        with torch.no_grad():
            weights = {id(p.param): p.param.detach().clone() for p in self.params if need_all or p.is_matrix}
            grads = {id(p.param): p.param.grad.detach().clone() for p in self.matrices if p.param.grad is not None}
        self.before = {"weights": weights, "grads": grads}

    def after_step(self, step: int, step_ms: float) -> float:
        """Runs the diagnostics due at this step; returns the time their runs took (ms), which the
        scheduler has counted already: the caller charges the rest of its own time as hooks."""
        self.scheduler.record_step(step_ms)
        before, self.before = self.before, None
        if before is None:
            return 0.0
        runs_ms = 0.0
        mine = []  # (records, failure) of each due diagnostic, in order: one gather for them all
        layer = self._next_layer() if "curvature" in self.due else None
        for name in self.due:
            device = self.params[0].param.device if self.params else torch.device("cpu")
            started = time.perf_counter()
            records: List[dict] = []
            failure: Optional[str] = None
            share = None
            try:
                # The probes' own randomness (dropout) must not move the training's random stream.
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    if name == "noise":
                        share = self._noise_share()
                    elif name == "curvature" and self._curvature_by_batch():
                        share = self._curvature_share(before, layer)
                    elif name == "curvature":
                        records = self._curvature(step, before, layer)
                    else:
                        records = self._spectra(step, before)
            except Exception as e:  # diagnostics must never take the run down
                failure = self._failed(name, step, e)
            _sync(device)
            # This rank's own share: the budget is each rank's time, which falls as ranks are added.
            ran_ms = (time.perf_counter() - started) * 1000
            self.scheduler.record_run(name, step, ran_ms)
            runs_ms += ran_ms
            if name == "noise":
                # Outside the timing, as the gather below is: the all-reduce waits for the slowest rank.
                records, failure = self._noise(step, share if failure is None else None, failure)
            elif name == "curvature" and self._curvature_by_batch():
                records, failure = self._curvature_reduce(step, share if failure is None else None, failure)
            mine.append((records, failure))
        every = self.gather(mine) if self.world > 1 else [mine]
        if every is not None:
            for i, name in enumerate(self.due):
                self._write(step, name, [rank_mine[i] for rank_mine in every])
        self.append({"kind": "diagnostics_cost", "step": step, **self.scheduler.cost_summary()})
        return runs_ms

    def _write(self, step: int, name: str, shares) -> None:
        """Rank 0: every rank's records of one diagnostic, layer stats merged into one record in layer order."""
        order = {info.name: i for i, info in enumerate(self.matrices)}
        records = [r for rs, _ in shares for r in rs]
        for _, failure in shares:
            if failure:
                self.append(alert_record(step, "warning", "OBSERVER_FAILED", failure))
        stats = [l for r in records if r["kind"] == "layer_stats" for l in r["layers"]]
        rest = [r for r in records if r["kind"] != "layer_stats"]
        rest.sort(key=lambda r: (r["kind"], -1 if r.get("layer") is None else order.get(r["layer"], len(order))))
        for r in rest:
            self.append(r)
        if stats:
            stats.sort(key=lambda l: order.get(l["name"], len(order)))
            self.append({"kind": "layer_stats", "step": step, "layers": stats})

    # ---- spectra and layer stats ----

    def _spectra(self, step: int, before) -> List[dict]:
        out: List[dict] = []
        layers = []
        for index, info in enumerate(self.matrices):
            if index % self.world != self.rank:  # another rank's share
                continue
            p = info.param
            if id(p) not in before["grads"] or id(p) not in before["weights"]:
                continue
            opt = self.owner.get(id(p))
            m = optinfo.momentum_of(opt, p) if opt is not None else None
            if m is None:
                continue
            group = optinfo.group_of(opt, p)
            lr = float(group["lr"])
            step_info = optinfo.matrix_step_info(opt, p)
            scale = float(step_info["scale"]) * float(step_info["normPowP"]) if step_info else 1.0
            wd = float(group.get("weight_decay", 0.0) or 0.0) if optinfo.decoupled_weight_decay(opt, group) else 0.0
            with torch.no_grad():
                w0 = info.matrix(before["weights"][id(p)]).to(torch.float64)
                w1 = info.matrix(p.detach()).to(torch.float64)
                g = info.matrix(before["grads"][id(p)]).to(torch.float64)
                mm = info.matrix(m.detach()).to(torch.float64)
                dw = w1 - w0
                unit = lr * scale
                o = -(dw + lr * wd * w0) / unit if unit > 0 else torch.zeros_like(dw)
            mats = {"G": g, "M": mm, "O": o, "W": w1}
            spectra = {k: dg.singular_values(v) for k, v in mats.items()}
            exact = spectra["G"][1]
            out.append(self._tag({"kind": "spectra", "step": step, "layer": info.name, "exact": exact,
                                  **{k: [float(x) for x in v[0].cpu()] for k, v in spectra.items()}}))
            if step_info is None:
                continue
            rows, cols, short = info.rows, info.cols, min(info.rows, info.cols)

            def summary(x, values):
                # Top-k spectra: the unseen energy from the exact Frobenius norm (spectrum_summary says how).
                return dg.spectrum_summary(values, None if exact else dg.frobenius(x), short)

            sums = {k: summary(mats[k], [float(x) for x in spectra[k][0].cpu()]) for k in mats}
            dvals = [float(x) for x in dg.singular_values(dw)[0].cpu()]
            delta = dg.spectrum_summary(dvals, None if exact else dg.frobenius(dw), short)
            g_vals = [float(x) for x in spectra["G"][0].cpu()]
            o_vals = [float(x) for x in spectra["O"][0].cpu()]
            r2r = dg.rms_to_rms_factor(rows, cols)
            stats = {
                "name": info.name, "rows": rows, "cols": cols,
                "p": float(step_info["p"]), "normPowP": float(step_info["normPowP"]), "method": str(step_info["method"])[:20],
                "updateRms": dg.rms(o) * scale,
                "updateRmsTheory": dg.update_rms_theory(rows, cols, float(step_info["scale"])),
                "updateWeightRatio": dg.update_weight_ratio(dw, w1),
                "alignment": dg.alignment(g, o),
                "orthogonalityError": dg.orthogonality_error_from_spectrum(o_vals, short) if exact else dg.orthogonality_error(o),
                **sums,
                "deltaW": delta,
                "updateRmsToRms": delta["sigmaMax"] * r2r,
                "weightRmsToRms": sums["W"]["sigmaMax"] * r2r,
                "updateWeightOpRatio": delta["sigmaMax"] / sums["W"]["sigmaMax"] if sums["W"]["sigmaMax"] > 0 else 0.0,
                "nuclearAlignment": dg.nuclear_alignment(g, o, dg.nuclear_norm(g_vals, None if exact else dg.frobenius(g), short)),
            }
            if exact and step_info.get("ns"):
                coefficients, ns_steps, eps = step_info["ns"]
                m_vals = [float(x) for x in spectra["M"][0].cpu()]
                stats["nsPolarError"], stats["nsNearOne"] = dg.newton_schulz_reach(m_vals, rows, cols, coefficients, ns_steps, eps)
            if "shapingRelError" in step_info:
                stats["shapingRelError"] = float(step_info["shapingRelError"])
            prev = self.last_o.get(info.name)
            if prev is not None and prev[0] < step:
                stats["updateCosine"] = dg.cosine(prev[1], o)
                stats["updateCosineLag"] = step - prev[0]
            self.last_o[info.name] = (step, o.to(torch.float32))
            layers.append(self._tag(stats))
        if layers:
            out.append({"kind": "layer_stats", "step": step, "layers": layers})
        return out

    # ---- curvature along the update ----

    def _next_layer(self) -> Optional[ParamInfo]:
        """The matrix layer whose curvature this diagnostics step measures, in turn. Called on every rank
        at every curvature step before anything that can fail, so that all ranks agree on it."""
        layer = self.matrices[self.turn % len(self.matrices)] if self.matrices else None
        self.turn += 1
        return layer

    def _curvature_setup(self, before):
        """The update per unit lr, d = (θ_before − θ_after)/lr, for every trainable parameter, and the
        weights after the step (to restore)."""
        params = [p.param for p in self.params if p.param.requires_grad]
        with torch.no_grad():
            after = [p.detach().clone() for p in params]
            lr_of = {id(q): float(g["lr"]) for opt in self.optimizers for g in opt.param_groups for q in g["params"]}
            d = []
            for p, a in zip(params, after):
                lr = lr_of.get(id(p), 0.0)  # a parameter the optimizer does not update has no component
                d.append((before["weights"][id(p)] - a) / lr if lr > 0 else torch.zeros_like(a))
        return params, after, d

    @staticmethod
    def _layer_direction(params, d, layer) -> List[torch.Tensor]:
        return [x if q is layer.param else torch.zeros_like(x) for q, x in zip(params, d)]

    def _curvatures_at_before(self, params, after, before, directions, loss_fn):
        """directional_curvatures at the weights before the step, which are restored exactly afterwards.
        One probe forward and first backward serve every direction."""
        try:
            with torch.no_grad():
                for p in params:
                    p.copy_(before["weights"][id(p)])
            return dg.directional_curvatures(loss_fn, params, directions)
        finally:
            with torch.no_grad():
                for p, a in zip(params, after):
                    p.copy_(a)

    def _curvature_records(self, step: int, whole, layer, one, tag: dict) -> List[dict]:
        run_lr = optinfo.run_lr(self.optimizer)
        out = []
        if whole is not None:
            out.append({"kind": "curvature", "step": step, "layer": None, "etaActual": run_lr, **dg.step_stability(*whole, run_lr), **tag})
        if one is not None:
            out.append({"kind": "curvature", "step": step, "layer": layer.name, "etaActual": run_lr, **dg.step_stability(*one, run_lr), **tag})
        return out

    def _curvature_by_batch(self) -> bool:
        """Data parallel with a probe of the parts of its batch, probe(part, parts): every rank measures both
        directions on its part and the parts' mean is the whole batch's (_curvature_share)."""
        return self.world > 1 and self.curvature_parts

    def _curvature(self, step: int, before, layer) -> List[dict]:
        """The whole model's curvature along the update and one matrix layer's in turn; with several ranks
        and a probe of the whole batch, rank 0 measures the first and rank 1 the second, at the same time."""
        whole_here = self.rank == 0
        layer_here = self.rank == (1 if self.world > 1 else 0)
        if not (whole_here or (layer_here and layer is not None)):
            return []
        params, after, d = self._curvature_setup(before)
        directions = [d] if whole_here else []
        if layer is not None and layer_here:
            directions.append(self._layer_direction(params, d, layer))
        found = self._curvatures_at_before(params, after, before, directions, self.probe)
        whole = found[0] if whole_here else None
        one = found[-1] if layer is not None and layer_here else None
        return [self._tag(r) for r in self._curvature_records(step, whole, layer, one, {})]

    def _curvature_share(self, before, layer):
        """This rank's part of the probe's batch, both directions: (the layer, [(gᵀd, dᵀHd, dᵀd) per
        direction]). gᵀd and dᵀHd are linear in the loss, so with equal parts the mean over the ranks is
        the whole batch's value: the cost per rank falls as 1/R."""
        if self.part_probe is None:
            raise ValueError("rank 0's probe takes parts, probe(part, parts), and this rank's does not: every rank needs the same kind of probe")
        params, after, d = self._curvature_setup(before)
        directions = [d] + ([self._layer_direction(params, d, layer)] if layer is not None else [])
        found = self._curvatures_at_before(params, after, before, directions, lambda: self.part_probe(self.rank, self.world))
        return layer, found

    def _curvature_reduce(self, step: int, share, failure: Optional[str]):
        """Every rank: one all-reduce (sum) of a float64 vector, gᵀd, dᵀHd and dᵀd for each of the two
        directions and a failure count, the same length on every rank (a rank whose share failed sends zeros and a 1),
        so none waits for another. Rank 0 writes the mean, none when a rank failed. (records, failure)."""
        params = [p.param for p in self.params if p.param.requires_grad]
        device = params[0].device if params else torch.device("cpu")
        flat = torch.zeros(7, dtype=torch.float64, device=device)
        layer = None
        if share is None:
            flat[6] = 1.0
        else:
            layer, found = share
            for i, values in enumerate(found):
                flat[3 * i:3 * i + 3] = torch.tensor(values, dtype=torch.float64)
        self.all_reduce(flat)
        if self.rank != 0 or share is None or float(flat[6]) > 0:
            return [], failure
        mean = (flat[:6] / self.world).tolist()
        one = tuple(mean[3:6]) if layer is not None else None
        return self._curvature_records(step, tuple(mean[0:3]), layer, one, {"ranks": self.world}), failure

    # ---- gradient noise ----

    def _noise_share(self):
        """This rank's microbatches i ≡ rank (mod R): per parameter, the sum of their gradients and of their
        squared norms (diagnostics.microbatch_sums; empty when R > K leaves this rank none). The gradients
        are made one microbatch at a time, so only the sums are held."""
        infos = [p for p in self.params if p.param.requires_grad]
        params = [p.param for p in infos]

        def grads():
            for i in range(self.rank, self.microbatches, self.world):
                gs = torch.autograd.grad(self.noise_probe(i), params, allow_unused=True)
                yield {info.name: (g if g is not None else torch.zeros_like(info.param)).detach() for info, g in zip(infos, gs)}

        return dg.microbatch_sums(grads())

    def _noise_reduce(self, share):
        """Every rank: one all-reduce (sum) of a flat float64 vector, every parameter's gradient sum, then
        every parameter's squared-norm sum, then a failure count. Its length depends on the model alone, so a
        rank whose share failed (share None: zeros and a 1) or that has no microbatch still takes part and
        no rank waits for another. On the parameters' device: NCCL moves CUDA tensors only. Rank 0 gets the
        reduced sums and how many ranks failed; the others (None, 0)."""
        infos = [p for p in self.params if p.param.requires_grad]
        device = infos[0].param.device if infos else torch.device("cpu")
        sizes = [info.param.numel() for info in infos]
        n = sum(sizes)
        flat = torch.zeros(n + len(infos) + 1, dtype=torch.float64, device=device)
        if share is None:
            flat[-1] = 1.0
        else:
            sums, sq_sums = share
            offset = 0
            for j, (info, size) in enumerate(zip(infos, sizes)):
                if info.name in sums:  # absent when this rank has no microbatch: zeros
                    flat[offset:offset + size] = sums[info.name]
                    flat[n + j] = sq_sums[info.name]
                offset += size
        self.all_reduce(flat)
        if self.rank != 0:
            return None, 0
        sums, sq_sums, offset = {}, {}, 0
        for j, (info, size) in enumerate(zip(infos, sizes)):
            sums[info.name], sq_sums[info.name] = flat[offset:offset + size], flat[n + j]
            offset += size
        return (sums, sq_sums), int(round(float(flat[-1])))

    def _noise(self, step: int, share, failure: Optional[str]):
        """The noise records from the microbatch sums (this rank's share, None if it failed): with several
        ranks, after summing the shares over the ranks, on rank 0 only, and none at a step where any rank's
        share failed (an incomplete sum would be a wrong estimate; the failing rank's alert reaches rank 0
        through the gather). Returns (records, failure)."""
        if self.world > 1:
            share, failed = self._noise_reduce(share)
            if self.rank != 0 or failed:
                return [], failure
        if share is None:
            return [], failure
        try:
            return self._noise_records(step, share), failure
        except Exception as e:  # diagnostics must never take the run down
            return [], self._failed("noise", step, e)

    def _noise_records(self, step: int, share) -> List[dict]:
        per, overall = dg.noise_from_sums(*share, self.microbatches, self.microbatch_size)
        sizes = {"batchSize": int(self.batch_size), "microbatches": self.microbatches, "microbatchSize": self.microbatch_size}

        def windowed(key: str, sample):
            w = self.windows.setdefault(key, dg.NoiseWindow(self.noise_window_steps))
            w.add(step, sample)
            avg = w.average()
            return {"bSimple": avg["bSimple"], "bSimpleLatest": dg.b_simple(sample), "gradSq": avg["gradSq"],
                    "traceSigma": avg["traceSigma"], "windowSteps": w.steps, "windowCount": avg["count"]}

        out = [{"kind": "noise", "step": step, "layer": None, **windowed("", overall), **sizes}]
        for info in self.matrices:
            if info.name in per:
                out.append({"kind": "noise", "step": step, "layer": info.name, **windowed(info.name, per[info.name]), **sizes})
        return out
