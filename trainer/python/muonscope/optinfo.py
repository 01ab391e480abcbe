"""What watch() reads from the user's optimizer, duck-typed so that any torch optimizer works.

- ``run_lr``: the run's lr is the first param group's (the one step records show).
- ``current_p``: DynMuon's p (``optimizer.current_p()``, or a numeric ``optimizer.p``); None for optimizers
  without a p schedule, so step records say ``p: null``.
- ``has_schedule`` / ``set_schedule``: an optimizer whose p schedule can be replaced has a
  ``set_schedule(spec, from_step=…, source=…, reason=…)`` method (DynMuon); for any other, the
  ``set_schedule`` command is refused.
- ``matrix_step_info``: what a `layer_stats` record needs about the step beyond the tensors — p, ‖M‖^p,
  the shaping method, the lr scale for the shape and whether weight decay is decoupled. torch.optim.Muon
  is Muon (p = 0, Newton–Schulz, normPowP 1, its adjust_lr_fn's scale); an optimizer may say it itself with
  ``step_info(param) -> {"p", "normPowP", "method", "scale", "shapingRelError"?}``; any other optimizer
  has no p, and its layers get `spectra` records but no `layer_stats` (whose p is required).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch

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
        if isinstance(t, torch.Tensor) and t.shape == param.shape:
            return t
    return None


def decoupled_weight_decay(optimizer: Any, group: Dict[str, Any]) -> bool:
    """Whether W ← W − lr·wd·W is part of the step (AdamW, Muon), rather than wd inside the gradient (SGD, Adam)."""
    if isinstance(optimizer, (torch.optim.AdamW, getattr(torch.optim, "Muon", ()))):
        return True
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
        return {"p": 0.0, "normPowP": 1.0, "method": "ns", "scale": _torch_muon_scale(g.get("adjust_lr_fn"), param.shape)}
    return None
