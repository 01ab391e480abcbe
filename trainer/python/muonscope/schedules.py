"""Schedules for DynMuon's exponent p, the same JSON as a run config's `schedule` and a `set_schedule`
command (common/schedules.ts): each is a pure function of training progress q = step/total_steps in [0, 1],
checked with errors that name the field. ``ScheduleTimeline`` keeps every replacement (from which step, who,
why) so the p used at any past step can be replayed and a resumed run continues identically
(trainer/optim/schedules.ts).
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any, Dict, List

from .errors import MuonscopeValueError

#: modded-nanogpt Track 3 settings (Muonscope's default): p(0) ≈ 0.116, negative for ~96% of training.
TRACK3_LOGISTIC: Dict[str, Any] = {"type": "logistic", "pMax": 0.25, "pMin": -0.25, "tau": 0.04, "width": 0.04}
#: The published DynMuon repository's defaults (p_max 1, p_min −0.25, τ = w = 0.04).
DYNMUON_REPO_LOGISTIC: Dict[str, Any] = {"type": "logistic", "pMax": 1, "pMin": -0.25, "tau": 0.04, "width": 0.04}

#: p is an exponent on singular values; outside [−1, 1] it amplifies noise directions or collapses rank.
P_MIN = -1.0
P_MAX = 1.0

# Each leaf type's fields (all required, no others); "number" is a finite number, "positive" one > 0.
_FIELDS: Dict[str, Dict[str, str]] = {
    "constant": {"p": "number"},
    "linear": {"from": "number", "to": "number"},
    "cosine": {"from": "number", "to": "number"},
    "piecewise": {"points": "points"},
    "logistic": {"pMax": "number", "pMin": "number", "tau": "number", "width": "positive"},
}
LEAF_TYPES = tuple(_FIELDS)
SCHEDULE_TYPES = LEAF_TYPES + ("reversed",)
MAX_POINTS = 1000


def evaluate(spec: Dict[str, Any], q: float) -> float:
    """p at progress q (clamped to [0, 1]: after total_steps a schedule holds its final value)."""
    t = min(1.0, max(0.0, q))
    kind = spec["type"]
    if kind == "constant":
        return spec["p"]
    if kind == "linear":
        return spec["from"] + (spec["to"] - spec["from"]) * t
    if kind == "cosine":
        return spec["to"] + (spec["from"] - spec["to"]) * 0.5 * (1 + math.cos(math.pi * t))
    if kind == "piecewise":
        p = spec["points"][0][1]
        for qi, pi in spec["points"]:
            if qi <= t:
                p = pi
        return p
    if kind == "logistic":
        return spec["pMin"] + (spec["pMax"] - spec["pMin"]) / (1 + math.exp((t - spec["tau"]) / spec["width"]))
    if kind == "reversed":
        return evaluate(spec["of"], 1 - t)
    raise MuonscopeValueError("UNKNOWN_SCHEDULE", f"unknown schedule type {kind!r}")


def _got(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _invalid(path: str, message: str, value: Any) -> MuonscopeValueError:
    return MuonscopeValueError("INVALID_HYPERPARAMETER", f"{path}: {message} (got {_got(value)})", path, value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_structure(spec: Any, path: str, types: tuple) -> None:
    if not isinstance(spec, dict):
        raise _invalid(path, 'must be an object with a "type"', spec)
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in types:
        raise MuonscopeValueError(
            "UNKNOWN_SCHEDULE", f"{path}: unknown schedule type {_got(kind)}; expected one of {', '.join(types)}", f"{path}.type", kind
        )
    if kind == "reversed":
        # One level: reversing a reversal gives the schedule back.
        extra = sorted(set(spec) - {"type", "of"})
        if extra:
            raise _invalid(f"{path}.{extra[0]}", "is not a field of a reversed schedule", spec[extra[0]])
        if "of" not in spec:
            raise _invalid(f"{path}.of", "is required", None)
        _check_structure(spec["of"], f"{path}.of", LEAF_TYPES)
        return
    fields = _FIELDS[kind]
    for name in spec:
        if name != "type" and name not in fields:
            raise _invalid(f"{path}.{name}", f"is not a field of a {kind} schedule", spec[name])
    for name, what in fields.items():
        at = f"{path}.{name}"
        if name not in spec:
            raise _invalid(at, "is required", None)
        v = spec[name]
        if what == "number" and not _finite(v):
            raise _invalid(at, "must be a finite number", v)
        if what == "positive" and not (_finite(v) and v > 0):
            raise _invalid(at, "must be a finite number > 0", v)
        if what == "points":
            if not isinstance(v, list) or not 1 <= len(v) <= MAX_POINTS:
                raise _invalid(at, f"must be a list of 1 to {MAX_POINTS} [q, p] points", v)
            for i, point in enumerate(v):
                if not (isinstance(point, (list, tuple)) and len(point) == 2 and _finite(point[0]) and _finite(point[1])):
                    raise _invalid(f"{at}[{i}]", "must be a [q, p] pair of finite numbers", point)


def _check_p(p: float, path: str, where: str) -> None:
    if p < P_MIN or p > P_MAX:
        raise MuonscopeValueError(
            "P_OUT_OF_RANGE", f"{path}: p = {p:g}{' ' + where if where else ''} is outside [{P_MIN:g}, {P_MAX:g}]", path, p
        )


def _check_range(spec: Dict[str, Any], path: str) -> None:
    """p within [−1, 1] for every q: constant, linear, cosine and logistic are monotone in q (their ends
    bound them), piecewise takes only its points' values, reversed has its leaf's range. The error names
    the field that holds the p (the whole spec for logistic, whose ends depend on all four fields)."""
    kind = spec["type"]
    if kind == "constant":
        _check_p(spec["p"], f"{path}.p", "")
    elif kind in ("linear", "cosine"):
        _check_p(spec["from"], f"{path}.from", "at q = 0")
        _check_p(spec["to"], f"{path}.to", "at q = 1")
    elif kind == "logistic":
        _check_p(evaluate(spec, 0), path, "at q = 0")
        _check_p(evaluate(spec, 1), path, "at q = 1")
    elif kind == "piecewise":
        last_q = -math.inf
        for i, (q, p) in enumerate(spec["points"]):
            at = f"{path}.points[{i}]"
            if q < 0 or q > 1:
                raise _invalid(at, "q must be within [0, 1]", q)
            if q <= last_q:
                raise _invalid(at, "q must increase strictly from point to point", q)
            last_q = q
            _check_p(p, at, f"at q = {q:g}")
    else:
        _check_range(spec["of"], f"{path}.of")


def validate_schedule(spec: Any, path: str = "schedule") -> Dict[str, Any]:
    """Checks a spec (structure, then p within [−1, 1]); returns a deep copy. Raises MuonscopeValueError
    (a ValueError) naming the field: UNKNOWN_SCHEDULE, P_OUT_OF_RANGE or INVALID_HYPERPARAMETER."""
    _check_structure(spec, path, SCHEDULE_TYPES)
    _check_range(spec, path)
    return copy.deepcopy(spec)


class ScheduleTimeline:
    """A schedule that can be replaced mid-run. Every spec is a function of global progress, so a
    replacement at step t continues from the new spec's value at q = t/total_steps; earlier entries stay."""

    def __init__(self, spec: Any, source: str = "config", reason: str = "initial schedule"):
        self._entries: List[Dict[str, Any]] = [
            {"fromStep": 0, "spec": validate_schedule(spec), "source": source, "reason": reason}
        ]

    def replace_from(self, step: int, spec: Any, source: str = "api", reason: str = "") -> None:
        """Uses `spec` from `step` on; steps must not go back before the latest replacement."""
        if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
            raise MuonscopeValueError("INVALID_ARGUMENT", f"from_step must be a non-negative integer step (got {step!r})", "from_step", step)
        checked = validate_schedule(spec)
        last = self._entries[-1]["fromStep"]
        if step < last:
            raise MuonscopeValueError(
                "INVALID_ARGUMENT", f"cannot replace the schedule from step {step}: it was already replaced from step {last}", "from_step", step
            )
        self._entries.append({"fromStep": step, "spec": checked, "source": str(source), "reason": str(reason)})

    def spec_at(self, step: int) -> Dict[str, Any]:
        """The spec in force at `step` (the latest entry starting at or before it), a copy."""
        spec = self._entries[0]["spec"]
        for e in self._entries:
            if e["fromStep"] <= step:
                spec = e["spec"]
        return copy.deepcopy(spec)

    def p_at(self, step: int, total_steps: int) -> float:
        spec = self._entries[0]["spec"]
        for e in self._entries:
            if e["fromStep"] <= step:
                spec = e["spec"]
        return float(evaluate(spec, step / total_steps))

    def history(self) -> List[Dict[str, Any]]:
        return copy.deepcopy(self._entries)

    def to_json(self) -> Dict[str, Any]:
        """The same JSON as the TS timeline's (version 1, entries with fromStep, spec, source, reason)."""
        return {"version": 1, "entries": self.history()}

    @classmethod
    def from_json(cls, data: Any) -> "ScheduleTimeline":
        """Rebuilds a timeline, validating every entry; raises INVALID_STATE for anything malformed."""

        def bad(why: str) -> MuonscopeValueError:
            return MuonscopeValueError("INVALID_STATE", f"schedule timeline: {why}", "schedule")

        if not isinstance(data, dict):
            raise bad("not an object")
        if data.get("version") != 1:
            raise bad(f"unsupported version {data.get('version')!r}")
        entries = data.get("entries")
        if not isinstance(entries, list) or not entries:
            raise bad("no entries")
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("source"), str) or not isinstance(e.get("reason"), str):
                raise bad(f"entry {i} lacks source/reason")
        if entries[0].get("fromStep") != 0:
            raise bad("the first entry must start at step 0")
        try:
            t = cls(entries[0].get("spec"), entries[0]["source"], entries[0]["reason"])
            for e in entries[1:]:
                t.replace_from(e.get("fromStep"), e.get("spec"), e["source"], e["reason"])
        except MuonscopeValueError as e:
            # A stored spec that no longer validates is a corrupt snapshot, whatever the spec's own error.
            raise bad(str(e)) from e
        return t

