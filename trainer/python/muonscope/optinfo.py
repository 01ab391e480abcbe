"""What watch() reads from the user's optimizer, duck-typed so that any torch optimizer works.

- ``run_lr``: the run's lr is the first param group's (the one step records show).
- ``current_p``: the p the next step will use — DynMuon's ``optimizer.current_p()``, or a numeric
  ``optimizer.p``; 0 for torch.optim.Muon; None for optimizers without a p, so step records say
  ``p: null``. watch reads it before each step, so the step record has the p that step used.
- ``has_schedule`` / ``set_schedule``: an optimizer whose p schedule can be replaced has a
  ``set_schedule(spec, from_step=…, source=…, reason=…)`` method (DynMuon); for any other, the
  ``set_schedule`` command is refused.
- ``matrix_step_info``: what a `layer_stats` record needs about the step beyond the tensors — p, ‖M‖^p,
  the shaping method, the lr scale for the shape and whether weight decay is decoupled. torch.optim.Muon
  is Muon (p = 0, Newton–Schulz, normPowP 1, its adjust_lr_fn's scale); an optimizer may say it itself with
  ``step_info(param) -> {"p", "normPowP", "method", "scale", "shapingRelError"?, "ns"?}`` (``ns``: the
  Newton–Schulz iteration applied to M, (coefficients (a, b, c), steps, eps)); any other optimizer
  has no p, and its layers get `spectra` records but no `layer_stats` (whose p is required).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch

from .optim import DynMuon

MOMENTUM_KEYS = ("momentum_buffer", "exp_avg", "momentum")


def run_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def current_p(optimizer: Any) -> Optional[float]:
    fn = getattr(optimizer, "current_p", None)
    if callable(fn):
        v = fn()
        return None if v is None else float(v)
    v = getattr(optimizer, "p", None)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(optimizer, getattr(torch.optim, "Muon", ())):
        return 0.0  # Muon applies the polar factor: p = 0
    return None


def config_section(optimizer: Any) -> Dict[str, Any]:
    """The run config's ``optimizer`` section for the optimizer a run reports (its first): the names the
    dashboard's label, the runs tree and the advisor read (``type``, ``lr``, DynMuon's ``mode``,
    ``normalization`` and ``schedule``), from the optimizer itself, so the record says what actually runs.
    Optimizers Muonscope does not know are named by their class (the advisor then proposes no p change)."""
    lr = run_lr(optimizer)
    if isinstance(optimizer, DynMuon):
        section: Dict[str, Any] = {"type": "dynmuon", "lr": lr, "mode": optimizer.mode, "schedule": optimizer.schedule_spec()}
        if optimizer.mode == "exact":
            section["normalization"] = optimizer.param_groups[0]["normalization"]
        return section
    if isinstance(optimizer, getattr(torch.optim, "Muon", ())):
        return {"type": "muon", "lr": lr}
    if isinstance(optimizer, torch.optim.AdamW):
        return {"type": "adamw", "lr": lr}
    return {"type": type(optimizer).__name__.lower(), "lr": lr}


def has_schedule(optimizer: Any) -> bool:
    return callable(getattr(optimizer, "set_schedule", None))


def schedule_spec(optimizer: Any) -> Any:
    """The schedule in force, as JSON, for the control record's `old` (None when the optimizer does not say)."""
    for name in ("schedule_spec", "current_schedule"):
        fn = getattr(optimizer, name, None)
        if callable(fn):
            return fn()
    return None


def group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> Dict[str, Any]:
    for g in optimizer.param_groups:
        if any(p is param for p in g["params"]):
            return g
    raise KeyError("parameter is not in the optimizer")


def momentum_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> Optional[torch.Tensor]:
    state = optimizer.state.get(param, {})
    for key in MOMENTUM_KEYS:
        t = state.get(key)
        # DynMuon keeps a conv kernel's buffer as its (out, in·k…) matrix: same size, other shape.
        if isinstance(t, torch.Tensor) and t.numel() == param.numel() and t.numel() > 1:
            return t
    return None


def decoupled_weight_decay(optimizer: Any, group: Dict[str, Any]) -> bool:
    """Whether W ← W − lr·wd·W is part of the step (AdamW, Muon, and optimizers with ``step_info``, such as
    DynMuon, unless they set ``decoupled_weight_decay`` False in their group), rather than wd inside the
    gradient (SGD, Adam)."""
    if isinstance(optimizer, (torch.optim.AdamW, getattr(torch.optim, "Muon", ()))):
        return True
    if callable(getattr(optimizer, "step_info", None)):
        return bool(group.get("decoupled_weight_decay", True))
    return bool(group.get("decoupled_weight_decay", False))


def _torch_muon_scale(adjust: Optional[str], shape) -> float:
    a, b = shape[:2]
    if adjust is None or adjust == "original":
        return math.sqrt(max(1.0, a / b))
    if adjust == "match_rms_adamw":
        return 0.2 * math.sqrt(max(a, b))
    return 1.0


def matrix_step_info(optimizer: Any, param: torch.Tensor) -> Optional[Dict[str, Any]]:
    fn = getattr(optimizer, "step_info", None)
    if callable(fn):
        info = fn(param)
        if info is not None:
            return dict(info)
    if isinstance(optimizer, getattr(torch.optim, "Muon", ())):
        g = group_of(optimizer, param)
        return {"p": 0.0, "normPowP": 1.0, "method": "ns", "scale": _torch_muon_scale(g.get("adjust_lr_fn"), param.shape),
                "ns": (tuple(g["ns_coefficients"]), int(g["ns_steps"]), float(g["eps"]))}
    return None
