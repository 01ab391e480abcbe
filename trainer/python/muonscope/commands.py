"""Commands at step boundaries, as the TS trainer applies them (trainer/run/trainer.ts, apply()): each is
carried out or refused with a protocol error code and nothing changed; every accepted change is a
`control` record (step, old, new, source, reason, commandId). `apply` returns (step, detail) for the ack.

apply_suggestion, dismiss_suggestion: the suggestions are the host's (docs/python.md §3): it resolves
apply_suggestion into a plain set_lr or set_schedule and logs every suggestion_outcome itself, so these
never reach Python from a host; one that does is refused, nothing changed. A race reaches Python as the
host's ``measure`` ``race`` (race.py), never as a command; a ``race`` command is refused.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

from . import optinfo
from .records import control_record


class Refused(Exception):
    """A command that was not carried out; nothing changed. `code` is one of the protocol's ERROR_CODES."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


KINDS = ("pause", "resume", "stop", "step", "set_lr", "set_schedule", "set_diagnostics", "checkpoint",
         "apply_suggestion", "dismiss_suggestion", "race")


def _bad(message: str) -> Refused:
    return Refused("INVALID_COMMAND", message)


def check(command: Any) -> Dict[str, Any]:
    """The command's shape, as CommandSchema has it (the host has validated it already; this guards the
    Python side against a host of another version): a clear INVALID_COMMAND refusal otherwise."""
    if not isinstance(command, dict) or command.get("kind") not in KINDS:
        kind = command.get("kind") if isinstance(command, dict) else None
        raise _bad(f"unknown command {kind!r}; expected one of {', '.join(KINDS)}")
    kind = command["kind"]
    reason = command.get("reason")
    if reason is not None and not (isinstance(reason, str) and len(reason) <= 500):
        raise _bad("reason must be a string of at most 500 characters")
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    whole = lambda v: isinstance(v, int) and not isinstance(v, bool)
    if kind == "set_lr" and not (num(command.get("lr")) and 0 < command["lr"] <= 10):
        raise _bad(f"set_lr: lr must be a number in (0, 10], got {command.get('lr')!r}")
    if kind == "step" and not (whole(command.get("n")) and 1 <= command["n"] <= 100000):
        raise _bad(f"step: n must be an integer in [1, 100000], got {command.get('n')!r}")
    if kind == "set_diagnostics":
        if not (whole(command.get("every")) and command["every"] >= 1):
            raise _bad(f"set_diagnostics: every must be an integer ≥ 1, got {command.get('every')!r}")
        if "adaptive" in command and not isinstance(command["adaptive"], bool):
            raise _bad(f"set_diagnostics: adaptive must be true or false, got {command['adaptive']!r}")
        b = command.get("budgetPct")
        if b is not None and not (num(b) and 0 < b <= 100):
            raise _bad(f"set_diagnostics: budgetPct must be in (0, 100], got {b!r}")
    if kind == "set_schedule":
        if not isinstance(command.get("schedule"), dict):
            raise _bad("set_schedule: schedule must be a schedule object")
        f = command.get("fromStep")
        if f is not None and not (whole(f) and f >= 0):
            raise _bad(f"set_schedule: fromStep must be an integer ≥ 0, got {f!r}")
    if kind in ("apply_suggestion", "dismiss_suggestion", "race") and not (isinstance(command.get("id"), str) and 1 <= len(command["id"]) <= 64):
        raise _bad(f"{kind}: id must be a string of 1 to 64 characters")
    return command


def apply(run: Any, command: Dict[str, Any], source: str, command_id: Optional[str]) -> Tuple[int, Optional[str]]:
    """Carries out one command on `run` (a watch.Run) at its step boundary; raises Refused."""
    check(command)
    step = run.steps_done
    kind = command["kind"]
    reason = command.get("reason")

    def control(field: str, old: Any, new: Any) -> None:
        run.emit(control_record(step, kind, field, old, new, source, reason, command_id))

    if run.state in ("finished", "stopped", "crashed"):
        raise Refused("RUN_ENDED", f"the run has {run.state}; it takes no more commands")
    if kind == "pause":
        if run.state != "running":
            raise Refused("NOT_ALLOWED_NOW", f"cannot pause: the run is {run.state}")
        run.steps_before_pause = None
        control("state", "running", "paused")
        run.set_state("paused", reason or f"paused by {source}")
        return step, None
    if kind == "resume":
        if run.state != "paused":
            raise Refused("NOT_ALLOWED_NOW", f"cannot resume: the run is {run.state}")
        run.steps_before_pause = None
        control("state", "paused", "running")
        run.set_state("running", reason or f"resumed by {source}")
        return step, None
    if kind == "stop":
        control("state", run.state, "stopped")
        run.stop_reason = reason or f"stopped by {source}"
        return step, None
    if kind == "step":
        n = command["n"]
        if run.state != "paused":
            raise Refused("NOT_ALLOWED_NOW", f'"step {n}" runs steps while paused; the run is {run.state}')
        control("state", "paused", f"running {n} step(s)")
        run.steps_before_pause = n
        run.set_state("running", f"stepping {n} by {source}")
        return step, f"running {n} step(s), then pausing"
    if kind == "set_lr":
        old = optinfo.run_lr(run.optimizer)
        run.set_lr(command["lr"])
        control("lr", old, command["lr"])
        return step, None
    if kind == "set_schedule":
        opt = run.optimizer
        if not optinfo.has_schedule(opt):
            raise Refused("NOT_ALLOWED_NOW", f"this run has no p schedule (its optimizer, {type(opt).__name__}, has no set_schedule); nothing changed")
        from_step = command.get("fromStep", step)
        if from_step < step:
            raise Refused("INVALID_COMMAND", f"fromStep {from_step} is in the past (the next step is {step})")
        old = optinfo.schedule_spec(opt)
        try:
            opt.set_schedule(command["schedule"], from_step=from_step, source=source, reason=reason or "")
        except (ValueError, TypeError) as e:
            raise Refused("INVALID_COMMAND", f"set_schedule: {e}") from e
        control("schedule", old, {"fromStep": from_step, "schedule": command["schedule"]})
        p = optinfo.current_p(opt)
        return step, (f"p now {p:.4f}; schedule from step {from_step}" if p is not None else f"schedule from step {from_step}")
    if kind == "set_diagnostics":
        old = run.diagnostics_settings()
        run.configure_diagnostics(command["every"], command.get("adaptive", old["adaptive"]), command.get("budgetPct", old["budgetPct"]))
        control("diagnostics", old, run.diagnostics_settings())
        return step, None
    if kind == "checkpoint":
        return step, run.checkpoint(reason or f"requested by {source}")
    if kind in ("apply_suggestion", "dismiss_suggestion"):
        raise Refused("NOT_ALLOWED_NOW", f"{kind}: suggestions are the host's (it forwards an applied one as set_lr or set_schedule); nothing changed")
    raise Refused("NOT_ALLOWED_NOW", "race: the host runs races as a `measure` `race` (it resolves the suggestion first); nothing changed")
