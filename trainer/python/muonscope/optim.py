"""DynMuon as a torch optimizer, with the Muonscope TS trainer's semantics (trainer/optim/dynmuon.ts,
docs/algorithms.md §2): Muon with the polar factor U·Vᵀ of the momentum replaced by U·φ_p(S)·Vᵀ, p following
a schedule of q = step/total_steps (the step at index t, 0 first, uses p(t/total_steps)). Three modes:

- ``exact`` (default): EMA momentum and Nesterov as torch.optim.Muon, then the damped shaping U·φ_p(S)·Vᵀ
  (ε raised at p < 0 so no direction gets more than ``max_gain`` times the top one's step), sized by
  ``normalization`` (``frobenius``: Muon's Frobenius norm sqrt(min(m, n)); ``spectral``: operator norm 1;
  ``none``: as it comes), then Muon's lr scale and decoupled decay. ``method``: ``exact`` (float64 SVD),
  ``matmul`` (a fitted combination of Newton–Schulz iterates, matrix products only, §2.5), ``auto``
  (exact up to a short side of 64, matmul above), as in the TS trainer.
- ``released``: the published code (github.com/fzwark/DynMuon), formula for formula: sum-form momentum,
  identity for p ≥ 0.25, Dion Newton–Schulz for 0 ≤ p < 0.25, a second-order series times ‖X‖_F^p for p < 0.
- ``lrOnly``: plain Muon with its lr times ‖M‖_F^p of the momentum buffer (the ablation of that factor).

Only matrices are shaped: 2-D parameters as (out, in), and conv kernels (out, in, k…) flattened to
(out, in·k…) as Muon does. Embeddings, the output head, biases and gains belong in another optimizer
(AdamW), as the TS trainer's hybrid routes them (trainer/optim/routing.ts); a parameter with fewer than two
dimensions is refused.

Computation is on each parameter's device, in float32 (float64 for float64 parameters); the momentum
buffer (``state[p]["momentum_buffer"]``) is kept in that precision whatever the parameter's dtype.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch

from . import hyperparameters as hp
from .errors import MuonscopeValueError
from .linalg import (
    NS_COEFFICIENT_SETS,
    expand_ns_steps,
    ns_combination,
    orthogonalize,
    power_sigma_max,
    shape_exact,
    oriented_like,
    short_side_first,
)
from .schedules import ScheduleTimeline
from .shaping import cached_shaping_fit, gain_bounded_damping

#: `method="auto"` shapes exactly up to this short side and with matrix products above it.
EXACT_SHAPING_MAX_SIDE = 64
#: The published transform's epsilon (its optimizer-level default of 1e-8 never reaches the transform).
RELEASED_EPS = 1e-7
#: Below this p the published code orthogonalises; at and above it, it passes the momentum through.
RELEASED_IDENTITY_FROM = 0.25
#: Matmul shaping: margin over the power-iteration σ_max so the top value stays inside the fitted range,
#: and the power iterations (on the m×m Gram matrix: nothing next to one Newton–Schulz step).
SIGMA_MARGIN = 1.02
POWER_ITERATIONS = 20
#: `spectral` on the matmul path: σ_max of the shaped matrix from 100 float64 power iterations.
SPECTRAL_POWER_ITERATIONS = 100

#: Options set per param group (the rest — mode, total_steps, schedule — belong to the optimizer).
GROUP_OPTIONS = ("lr", "weight_decay", "momentum", "nesterov", "coefficients", "ns_steps", "eps", "adjust_lr",
                 "damping", "max_gain", "normalization", "method")

STATE_VERSION = 1


def adjust_lr_scale(mode: str, rows: int, cols: int) -> float:
    """The lr multiplier on torch's (out, in) shape: torch.optim.Muon's two and the published code's default."""
    if mode == "original":
        return math.sqrt(max(1.0, rows / cols))
    if mode == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(rows / cols)  # spectral_norm


def _matrix_shape(p: torch.Tensor) -> Optional[tuple]:
    if p.ndim < 2:
        return None
    return (p.shape[0], p.numel() // p.shape[0])


def _compute_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.float64 if p.dtype == torch.float64 else torch.float32


def _to_muon_size(d: torch.Tensor) -> torch.Tensor:
    """d rescaled to Frobenius norm sqrt(min(m, n)), Muon's update size; zero stays zero."""
    norm = d.norm()
    f = torch.where(norm > 0, math.sqrt(min(d.shape)) / norm.clamp(min=1e-300), torch.zeros_like(norm))
    return d * f


def _scaled_by(d: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """d·f for a finite f, zero otherwise (a zero matrix has no norm to match)."""
    return d * torch.where(torch.isfinite(f), f, torch.zeros_like(f))


class DynMuon(torch.optim.Optimizer):
    """DynMuon for 2-D (and flattened conv) parameters. See the module docstring for the modes.

    Args (defaults are the Muonscope trainer's, trainer/optim/hyperparameters.ts):
        params: matrices only (give embeddings, heads, biases and gains to AdamW).
        total_steps: the run's length; the schedule runs on q = step/total_steps. Required.
        mode: "exact" (default), "released" or "lrOnly".
        schedule: a p schedule, the run config's JSON (default the Track-3 logistic).
        lr (0.02), weight_decay (0), momentum (0.95), nesterov (True; False in released mode).
        damping (1e-3), max_gain (10; None: ε alone), normalization ("frobenius"), method ("auto"): exact mode.
        coefficients ("keller"), ns_steps (5), eps (1e-7): Newton–Schulz of lrOnly mode.
        adjust_lr ("original"; "spectral_norm" in released mode).
        check_finite (True): refuse a step whose gradients hold NaN/inf before changing anything (one
            device→host read per step).

    Bad options raise ``MuonscopeValueError`` (a ValueError) naming the option; nothing is created.
    """

    def __init__(self, params: Iterable[Any], *, total_steps: int, mode: str = hp.DYNMUON_DEFAULTS["mode"],
                 schedule: Optional[Dict[str, Any]] = None, check_finite: bool = True, **options: Any):
        mode = hp.check_mode(mode)
        total_steps = hp.check_total_steps(total_steps)
        unknown = sorted(set(options) - set(GROUP_OPTIONS))
        if unknown:
            raise MuonscopeValueError("INVALID_HYPERPARAMETER", f"DynMuon: unknown option {unknown[0]!r}; expected one of "
                                      f"total_steps, mode, schedule, check_finite, {', '.join(GROUP_OPTIONS)}", unknown[0])
        defaults = hp.group_defaults(mode)
        defaults.update(options)
        defaults = hp.check_group_options(defaults)
        timeline = ScheduleTimeline(copy.deepcopy(hp.DYNMUON_DEFAULTS["schedule"]) if schedule is None else schedule)
        self.mode = mode
        self.total_steps = total_steps
        self.check_finite = hp.check_boolean("check_finite", check_finite)
        self._timeline = timeline
        self._step = 0
        self._info: Dict[torch.Tensor, Dict[str, Any]] = {}
        super().__init__(params, defaults)

    # ---- parameters ------------------------------------------------------------------------------

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Checks the group's options and that every parameter is a matrix before adding anything."""
        group = dict(param_group)
        params = group.get("params")
        plist = [params] if isinstance(params, torch.Tensor) else list(params if params is not None else [])
        group["params"] = plist
        for i, p in enumerate(plist):
            if isinstance(p, torch.Tensor) and _matrix_shape(p) is None:
                raise MuonscopeValueError(
                    "INVALID_ARGUMENT",
                    f"DynMuon takes only matrices (2-D, or conv kernels flattened to (out, in·k…)); parameter {i} of the group "
                    f"has shape {tuple(p.shape)}: give it to AdamW", "params", tuple(p.shape))
        unknown = sorted(k for k in group if k not in GROUP_OPTIONS and k not in ("params", "param_names"))
        if unknown:
            raise MuonscopeValueError("INVALID_HYPERPARAMETER", f"DynMuon: unknown param group option {unknown[0]!r}", unknown[0])
        merged = {k: group.get(k, self.defaults[k]) for k in GROUP_OPTIONS}
        checked = hp.check_group_options(merged)
        group.update({k: checked[k] for k in GROUP_OPTIONS if k in group})
        super().add_param_group(group)

    # ---- what the watch layer reads and sets -------------------------------------------------------

    @property
    def step_count(self) -> int:
        """Steps taken so far (the next step's index)."""
        return self._step

    def current_p(self) -> float:
        """The p the next step will use."""
        return self._timeline.p_at(self._step, self.total_steps)

    def p_at(self, step: int) -> float:
        """The p of the step at index `step` under the schedules in force (past steps: the one used)."""
        return self._timeline.p_at(step, self.total_steps)

    def schedule_spec(self) -> Dict[str, Any]:
        """The schedule in force for the next step (JSON)."""
        return self._timeline.spec_at(self._step)

    def schedule_history(self) -> List[Dict[str, Any]]:
        """Every schedule with the step it took over from, who set it and why."""
        return self._timeline.history()

    def set_schedule(self, spec: Dict[str, Any], from_step: Optional[int] = None, source: str = "api", reason: str = "") -> None:
        """Uses `spec` from `from_step` (default: the next step) on, keeping the history. A step already
        taken cannot be rescheduled. Refused (MuonscopeValueError naming the field) with nothing changed."""
        step = self._step if from_step is None else from_step
        if isinstance(step, int) and not isinstance(step, bool) and step < self._step:
            raise MuonscopeValueError("INVALID_ARGUMENT", f"from_step {step} is in the past: {self._step} steps were taken", "from_step", step)
        self._timeline.replace_from(step, spec, source, reason)

    def set_lr(self, lr: float) -> None:
        """Sets every group's base lr (checked first: a bad lr changes nothing)."""
        value = hp.check_lr(lr)
        for g in self.param_groups:
            g["lr"] = value

    def config_section(self) -> Dict[str, Any]:
        """This optimizer as a run config's `optimizer` section (trainer/run/config.ts), first group's options."""
        g = self.param_groups[0] if self.param_groups else self.defaults
        return {
            "type": "dynmuon", "mode": self.mode, "method": g["method"], "schedule": self._timeline.spec_at(0),
            "damping": g["damping"], "maxGain": g["max_gain"], "normalization": g["normalization"], "lr": g["lr"],
            "weightDecay": g["weight_decay"], "momentum": g["momentum"], "nesterov": g["nesterov"],
        }

    @property
    def label(self) -> str:
        """`dynmuon (exact, frobenius)`, `dynmuon (released)`…: the name every Muonscope surface shows."""
        return hp.optimizer_label(self.config_section())  # type: ignore[return-value]

    def step_info(self, param: torch.Tensor) -> Optional[Dict[str, Any]]:
        """What the last step did to `param`: p, normPowP (‖M‖^p where it multiplies the step), method
        ("exact", "matmul", "ns", "identity", "taylor"), the lr scale, updateRms (per unit of base lr,
        decay excluded) and, on the matmul path, shapingRelError (the fit's bound). None before a step."""
        info = self._info.get(param)
        if info is None:
            return None
        out = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in info.items()}
        return out

    # ---- the step ---------------------------------------------------------------------------------

    def _check_grads(self) -> None:
        """Every gradient has its parameter's shape and (with check_finite) no NaN/inf: checked for all
        parameters before any is touched, so a refused step changes nothing."""
        flags: List[torch.Tensor] = []
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise MuonscopeValueError("INVALID_ARGUMENT", f"DynMuon: parameter {pi} of group {gi} has a sparse gradient", "grad")
                if p.grad.shape != p.shape:
                    raise MuonscopeValueError("SHAPE_MISMATCH", f"DynMuon: the gradient of parameter {pi} of group {gi} has shape "
                                              f"{tuple(p.grad.shape)}, the parameter {tuple(p.shape)}", "grad")
                if self.check_finite:
                    flags.append(torch.isfinite(p.grad).all())
        if not flags:
            return
        # One device→host read for the whole step when the parameters share a device.
        devices = {f.device for f in flags}
        ok = bool(torch.stack(flags).all()) if len(devices) == 1 else all(bool(f) for f in flags)
        if ok:
            return
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    raise MuonscopeValueError("NON_FINITE", f"DynMuon: the gradient of parameter {pi} of group {gi} "
                                              "has a non-finite value; nothing was changed", "grad")

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_grads()
        p_now = self._timeline.p_at(self._step, self.total_steps)
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._info[param] = self._step_matrix(param, group, p_now)
        self._step += 1
        return loss

    def _step_matrix(self, param: torch.Tensor, group: Dict[str, Any], p: float) -> Dict[str, Any]:
        rows, cols = _matrix_shape(param)  # type: ignore[misc]
        cdt = _compute_dtype(param)
        g = param.grad.reshape(rows, cols).to(cdt)
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros(rows, cols, dtype=cdt, device=param.device)
        buf = state["momentum_buffer"]
        mu = group["momentum"]
        if self.mode == "released":
            # The published code's sum-form momentum M ← μM + G, U = μM + G (or M without Nesterov).
            buf.mul_(mu).add_(g)
            u = buf * mu + g if group["nesterov"] else buf
        else:
            # torch.optim.Muon's EMA momentum B ← B.lerp(G, 1 − μ), U = G.lerp(B, μ) (or B).
            buf.lerp_(g, 1 - mu)
            u = g.lerp(buf, mu) if group["nesterov"] else buf
        if self.mode == "exact":
            d, info = self._exact_direction(u, group, p)
        elif self.mode == "released":
            d, info = self._released_direction(u, p)
        else:
            d, info = self._lr_only_direction(u, buf, group, p)
        scale = adjust_lr_scale(group["adjust_lr"], rows, cols)
        lr = group["lr"]
        # Decay with the base lr, step with the adjusted one (torch.optim.Muon and the published code alike);
        # in lrOnly mode the step is also multiplied by ‖M‖_F^p (a tensor: no device→host read).
        param.mul_(1 - lr * group["weight_decay"])
        update = d.to(device=param.device, dtype=param.dtype).reshape(param.shape)
        norm_pow_p = info["normPowP"]
        if self.mode == "lrOnly":
            # At p = 0, ‖M‖^0 = 1 exactly and this is torch.optim.Muon's own update, operation for operation.
            param.add_(update * norm_pow_p.to(param.dtype), alpha=-lr * scale)
        else:
            param.add_(update, alpha=-lr * scale)
        rms_factor = norm_pow_p if self.mode == "lrOnly" else 1.0
        info.update({"p": p, "scale": scale, "updateRms": d.norm() / math.sqrt(d.numel()) * scale * rms_factor})
        return info

    def _exact_direction(self, u: torch.Tensor, group: Dict[str, Any], p: float):
        normalization = group["normalization"]
        damping = gain_bounded_damping(p, group["damping"], group["max_gain"])
        method = group["method"]
        if method == "exact" or (method == "auto" and min(u.shape) <= EXACT_SHAPING_MAX_SIDE):
            shaped, phi = shape_exact(u, p, damping)
            if normalization == "frobenius":
                d = _to_muon_size(shaped)
            elif normalization == "spectral":
                # φ_p(S) are the shaped matrix's singular values: its operator norm is their largest.
                d = _scaled_by(shaped, 1 / phi.max())
            else:
                d = shaped
            return d, {"method": "exact", "normPowP": 1.0}
        # ≈ U·φ_p(S/s)·Vᵀ, s = 1.02·σ̂_max from the power iteration.
        fit = cached_shaping_fit(p, damping)
        shaped, s = ns_combination(u, [fit.step] * fit.steps, fit.weights, SIGMA_MARGIN, POWER_ITERATIONS)
        if normalization == "frobenius":
            d = _to_muon_size(shaped)
        elif normalization == "spectral":
            d = _scaled_by(shaped, (1 / power_sigma_max(shaped, SPECTRAL_POWER_ITERATIONS)).to(shaped.dtype))
        else:
            # φ_p(σ/s)·s^p = φ_p(σ) with δ = (ε·s)².
            d = shaped * torch.where(s > 1e-30, s ** p, torch.ones_like(s))
        return d, {"method": "matmul", "normPowP": 1.0, "shapingRelError": fit.max_rel_error}

    def _lr_only_direction(self, u: torch.Tensor, buf: torch.Tensor, group: Dict[str, Any], p: float):
        cs = NS_COEFFICIENT_SETS[group["coefficients"]]
        o = orthogonalize(u, expand_ns_steps(group["coefficients"], group["ns_steps"]), group["eps"], cs["norm_safety"])  # type: ignore[arg-type]
        norm = buf.norm()
        # A zero momentum gives a zero direction; 1 keeps 0^p (∞ for p < 0) out of the product.
        norm_pow_p = torch.where(norm > 0, norm.clamp(min=1e-300) ** p, torch.ones_like(norm))
        return o, {"method": "ns", "normPowP": norm_pow_p}

    def _released_direction(self, u: torch.Tensor, p: float):
        """The published `dynmuon_spectral_transform` on X = U with the short side first. Its Newton–Schulz
        divides by ‖X‖_F + eps (not max(‖X‖_F, eps)) and uses Dion's five quintics; fp32 here, bf16 there."""
        if p >= RELEASED_IDENTITY_FROM:
            return u.clone(), {"method": "identity", "normPowP": 1.0}
        x = short_side_first(u)
        dion = expand_ns_steps("dion", 5)

        def ns(y: torch.Tensor) -> torch.Tensor:
            y = y / (y.norm() + RELEASED_EPS)
            for step in dion:
                a, b, c = step
                gram = y @ y.T
                y = a * y + (b * gram + c * (gram @ gram)) @ y
            return y

        if p >= 0:
            return oriented_like(ns(x), u), {"method": "ns", "normPowP": 1.0}
        s = x.norm() + RELEASED_EPS
        xn = x / s
        y = ns(xn)
        # E = Xn·Xnᵀ − I;  C = I + δE + ½δ(δ−1)E² ≈ (Xn·Xnᵀ)^δ, δ = p/2, expanded around I.
        m = x.shape[0]
        eye = torch.eye(m, dtype=x.dtype, device=x.device)
        e = xn @ xn.T - eye
        delta = p / 2
        c = delta * e + (0.5 * delta * (delta - 1)) * (e @ e) + eye
        norm_pow_p = s ** p
        return oriented_like((c @ y) * norm_pow_p, u), {"method": "taylor", "normPowP": norm_pow_p}

    # ---- checkpoints ------------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """torch's state dict plus a `dynmuon` section: the step count, mode, total_steps and the schedule
        timeline with its history, so that a resumed run uses exactly the p it would have used."""
        sd = super().state_dict()
        sd["dynmuon"] = {
            "version": STATE_VERSION,
            "step": self._step,
            "mode": self.mode,
            "total_steps": self.total_steps,
            "check_finite": self.check_finite,
            "schedule": self._timeline.to_json(),
        }
        return sd

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restores a state_dict of this class, all or nothing: everything is checked before anything changes.
        Momentum buffers come back in the compute precision (torch's loader would cast them to the
        parameter's dtype), as copies on the parameter's device."""
        bad = lambda why: MuonscopeValueError("INVALID_STATE", f"DynMuon state: {why}", "state_dict")  # noqa: E731
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("dynmuon"), dict):
            raise bad("no 'dynmuon' section (not saved by muonscope.DynMuon)")
        own = state_dict["dynmuon"]
        if own.get("version") != STATE_VERSION:
            raise bad(f"unsupported version {own.get('version')!r}")
        step = own.get("step")
        if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
            raise bad(f"step must be a non-negative integer (got {step!r})")
        try:
            mode = hp.check_mode(own.get("mode"))
            total_steps = hp.check_total_steps(own.get("total_steps"))
            check_finite = hp.check_boolean("check_finite", own.get("check_finite", True))
            timeline = ScheduleTimeline.from_json(own.get("schedule"))
            groups = state_dict.get("param_groups")
            if not isinstance(groups, list) or len(groups) != len(self.param_groups):
                raise bad("it has a different number of parameter groups")
            for sg, g in zip(groups, self.param_groups):
                if len(sg.get("params", [])) != len(g["params"]):
                    raise bad("a parameter group has a different number of parameters")
                hp.check_group_options({k: sg.get(k) for k in GROUP_OPTIONS})
        except MuonscopeValueError as e:
            if e.code == "INVALID_STATE":
                raise
            raise bad(str(e)) from e
        params = [p for g in self.param_groups for p in g["params"]]
        saved_ids = [i for sg in groups for i in sg["params"]]
        buffers = {}
        for index, p in zip(saved_ids, params):
            entry = state_dict.get("state", {}).get(index)
            if entry is None:
                continue
            b = entry.get("momentum_buffer") if isinstance(entry, dict) else None
            if not isinstance(b, torch.Tensor) or tuple(b.shape) != _matrix_shape(p):
                raise bad(f"the momentum buffer of parameter {index} does not match its parameter {tuple(p.shape)}")
            buffers[p] = b
        super().load_state_dict({"state": state_dict.get("state", {}), "param_groups": groups})
        for p, b in buffers.items():
            self.state[p]["momentum_buffer"] = b.to(device=p.device, dtype=_compute_dtype(p), copy=True)
        self.mode, self.total_steps, self.check_finite = mode, total_steps, check_finite
        self._timeline, self._step = timeline, step
        self._info = {}
