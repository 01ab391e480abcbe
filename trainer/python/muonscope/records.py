"""The log records a torch run writes, built in one place with the fields common/protocol.ts defines.

Records here carry neither ``seq`` nor ``t``: the writer that appends them (the host over the channel, or
the direct run-folder writer) stamps both. Every number must be finite (the protocol refuses NaN and
±Infinity); `dumps` refuses them too, so a bad value fails here instead of in the host's validator.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, Optional

PROTOCOL_VERSION = 1

Record = Dict[str, Any]

# Kinds whose records the channel's bounded queue never drops (docs/python.md §4).
KEPT_KINDS = frozenset({"run_started", "step", "eval", "control", "state", "alert", "checkpoint"})


def dumps(obj: Any) -> str:
    """One NDJSON line's JSON: compact, UTF-8, non-finite numbers refused (ValueError)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def finite(x: Any, what: str) -> float:
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{what} is {v}; a record's numbers must be finite")
    return v


def step_record(step: int, loss: float, lr: float, p: Optional[float], step_ms: float, tokens: Optional[float] = None) -> Record:
    r: Record = {"kind": "step", "step": int(step), "loss": finite(loss, "loss"), "lr": finite(lr, "lr"),
                 "p": None if p is None else finite(p, "p"), "stepMs": finite(step_ms, "stepMs")}
    if tokens is not None and step_ms > 0:
        r["tokensPerS"] = finite(tokens * 1000.0 / step_ms, "tokensPerS")
    return r


def eval_record(step: int, val_loss: float) -> Record:
    return {"kind": "eval", "step": int(step), "valLoss": finite(val_loss, "valLoss")}


def state_record(step: int, state: str, reason: str) -> Record:
    return {"kind": "state", "step": int(step), "state": state, "reason": reason[:1000]}


def alert_record(step: int, level: str, code: str, message: str, layer: Optional[str] = None) -> Record:
    r: Record = {"kind": "alert", "step": int(step), "level": level, "code": code[:40], "message": message[:2000]}
    if layer is not None:
        r["layer"] = layer[:200]
    return r


def control_record(step: int, command: str, field: str, old: Any, new: Any, source: str, reason: Optional[str], command_id: Optional[str]) -> Record:
    r: Record = {"kind": "control", "step": int(step), "command": command, "field": field, "old": old, "new": new,
                 "source": source[:64], "reason": (reason or "")[:500]}
    if command_id:
        r["commandId"] = command_id[:64]
    return r


def checkpoint_record(step: int, file: str, reason: str) -> Record:
    return {"kind": "checkpoint", "step": int(step), "file": file, "reason": reason[:500]}

