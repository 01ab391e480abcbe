"""DynMuon's options: their defaults (the TS trainer's table, trainer/optim/hyperparameters.ts, so that a
torch run and an empty Muonscope config mean the same thing) and their checks, each refusal naming the
option and the value.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

from .errors import MuonscopeValueError
from .schedules import TRACK3_LOGISTIC

#: torch.optim.Muon's momentum, Nesterov, five steps of Keller's quintic and eps; not its lr (1e-3) and
#: weight decay (0.1): the TS trainer's defaults, tuned for the small models a default run trains.
MUON_DEFAULTS: Dict[str, Any] = {
    "lr": 0.02,
    "weight_decay": 0.0,
    "momentum": 0.95,
    "nesterov": True,
    "coefficients": "keller",
    "ns_steps": 5,
    "eps": 1e-7,
    "adjust_lr": "original",
}

DYNMUON_DEFAULTS: Dict[str, Any] = {
    "mode": "exact",
    "method": "auto",
    # ε of φ_p's damping δ = (ε·σ_max)².
    "damping": 1e-3,
    # At p < 0 no direction gets more than this many times the top direction's step (docs/algorithms.md §2.3).
    "max_gain": 10.0,
    "normalization": "frobenius",
    "schedule": TRACK3_LOGISTIC,
}

#: `released` mode follows the published code: no Nesterov, the "spectral_norm" lr scale.
RELEASED_DEFAULTS: Dict[str, Any] = {"nesterov": False, "adjust_lr": "spectral_norm"}

MODES = ("exact", "released", "lrOnly")
METHODS = ("auto", "exact", "matmul")
NORMALIZATIONS = ("frobenius", "spectral", "none")
COEFFICIENTS = ("keller", "polarExpress")
ADJUST_LR = ("original", "match_rms_adamw", "spectral_norm")

OWNER = "DynMuon"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(name: str, value: Any, minimum: float, maximum: float = math.inf,
                 min_exclusive: bool = False, max_exclusive: bool = False) -> float:
    ok = (
        _is_number(value)
        and math.isfinite(value)
        and (value > minimum if min_exclusive else value >= minimum)
        and (value < maximum if max_exclusive else value <= maximum)
    )
    if not ok:
        bounds = f"{'>' if min_exclusive else '≥'} {minimum:g}"
        if maximum < math.inf:
            bounds += f" and {'<' if max_exclusive else '≤'} {maximum:g}"
        raise MuonscopeValueError("INVALID_HYPERPARAMETER", f"{OWNER}: {name} must be a finite number {bounds} (got {value!r})", name, value)
    return float(value)


def check_integer(name: str, value: Any, minimum: int, maximum: int) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum):
        raise MuonscopeValueError("INVALID_HYPERPARAMETER", f"{OWNER}: {name} must be an integer from {minimum} to {maximum} (got {value!r})", name, value)
    return value


def check_boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise MuonscopeValueError("INVALID_HYPERPARAMETER", f"{OWNER}: {name} must be True or False (got {value!r})", name, value)
    return value


def check_one_of(name: str, value: Any, allowed: Sequence[str], code: str = "INVALID_HYPERPARAMETER") -> str:
    if not (isinstance(value, str) and value in allowed):
        raise MuonscopeValueError(code, f"{OWNER}: unknown {name} {value!r}; expected one of {', '.join(allowed)}", name, value)
    return value


def check_lr(lr: Any) -> float:
    """The learning rate, the one option changed mid-run: checked the same way at construction and in set_lr."""
    return check_number("lr", lr, 0.0)


def check_mode(mode: Any) -> str:
    return check_one_of("mode", mode, MODES, "UNKNOWN_MODE")


def check_total_steps(total_steps: Any) -> int:
    return check_integer("total_steps", total_steps, 1, 2**53 - 1)


def group_defaults(mode: str) -> Dict[str, Any]:
    """The per-group options' defaults for a mode (released: the published code's Nesterov and lr scale)."""
    d = {k: v for k, v in MUON_DEFAULTS.items()}
    d.update({k: DYNMUON_DEFAULTS[k] for k in ("method", "damping", "max_gain", "normalization")})
    if mode == "released":
        d.update(RELEASED_DEFAULTS)
    return d


def check_group_options(o: Dict[str, Any]) -> Dict[str, Any]:
    """Checks a param group's options (all present); returns them normalised. Raises on the first bad one."""
    max_gain: Optional[float] = None if o["max_gain"] is None else check_number("max_gain", o["max_gain"], 1.0)
    return {
        "lr": check_lr(o["lr"]),
        "weight_decay": check_number("weight_decay", o["weight_decay"], 0.0),
        "momentum": check_number("momentum", o["momentum"], 0.0, 1.0, max_exclusive=True),
        "nesterov": check_boolean("nesterov", o["nesterov"]),
        "coefficients": check_one_of("coefficients", o["coefficients"], COEFFICIENTS, "UNKNOWN_COEFFICIENTS"),
        "ns_steps": check_integer("ns_steps", o["ns_steps"], 1, 99),
        "eps": check_number("eps", o["eps"], 0.0, min_exclusive=True),
        "adjust_lr": check_one_of("adjust_lr", o["adjust_lr"], ADJUST_LR),
        "damping": check_number("damping", o["damping"], 0.0),
        "max_gain": max_gain,
        "normalization": check_one_of("normalization", o["normalization"], NORMALIZATIONS),
        "method": check_one_of("method", o["method"], METHODS, "UNKNOWN_MODE"),
    }


def optimizer_label(section: Any) -> Optional[str]:
    """The optimizer as every surface names it (common/optimizer-label.ts): `muon`, `dynmuon (released)`,
    `dynmuon (exact, frobenius)`; from a run config's `optimizer` section."""
    if not isinstance(section, dict) or not isinstance(section.get("type"), str):
        return None
    if section["type"] != "dynmuon" or not isinstance(section.get("mode"), str):
        return section["type"]
    norm = f", {section['normalization']}" if section["mode"] == "exact" and isinstance(section.get("normalization"), str) else ""
    return f"dynmuon ({section['mode']}{norm})"
