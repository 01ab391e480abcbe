"""Fork-and-race on a torch run (docs/algorithms.md §7.1, docs/python.md §3): the ground truth for a
suggestion, asked by the host as ``measure`` ``race`` while the run is paused. From the run's state it trains
``steps`` steps as the run is set now (the baseline branch) and ``steps`` steps with the suggested change made
(set_lr or set_schedule), scores both with the script's held-out ``probe()``, and puts everything back.

The data: the built-in trainer races on the batches the run would read next, because its data stream is a
function of the step. A script's loop owns its data, and watch() sees only ``optimizer.step``, so a branch
trains on the script's ``noise_probe(i)`` microbatches instead (i = 0, 1, …, K − 1, again from 0), the same
ones in both branches, and is scored on ``probe()``, a different held-out batch. Neither branch's steps reach
the run: the model's and every optimizer's state, and the random number generators, are restored exactly
after each branch (tested bit for bit), and watch's step hooks are off while a branch trains.

Python measures; the host builds the ``race`` record (the winner by the same rule as the built-in trainer,
trainer/run/race.ts) and the dashboard shows it beside the suggestion.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

import torch

from . import optinfo

#: The same bound as the protocol's RACE_MAX_STEPS (common/protocol.ts).
RACE_MAX_STEPS = 1000


class RaceRefused(Exception):
    """A race not run, nothing changed; `code` is one of the protocol's error codes."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def check_params(params: Any, steps_left: int) -> Dict[str, Any]:
    """{steps, change} as the host sends them; INVALID_COMMAND for anything else."""
    if not isinstance(params, dict):
        raise RaceRefused("INVALID_COMMAND", "race: params must be an object")
    steps = params.get("steps")
    if not (isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= RACE_MAX_STEPS):
        raise RaceRefused("INVALID_COMMAND", f"race: steps must be an integer in [1, {RACE_MAX_STEPS}], got {steps!r}")
    if steps > steps_left:
        raise RaceRefused("INVALID_COMMAND", f"race of {steps} steps runs past the end of the run ({steps_left} left)")
    change = params.get("change")
    kind = change.get("kind") if isinstance(change, dict) else None
    if kind == "set_lr":
        lr = change.get("lr")
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr) and 0 < lr <= 10):
            raise RaceRefused("INVALID_COMMAND", f"race: set_lr needs an lr in (0, 10], got {lr!r}")
    elif kind == "set_schedule":
        if not isinstance(change.get("schedule"), dict):
            raise RaceRefused("INVALID_COMMAND", "race: set_schedule needs a schedule object")
        f = change.get("fromStep")
        if f is not None and not (isinstance(f, int) and not isinstance(f, bool) and f >= 0):
            raise RaceRefused("INVALID_COMMAND", f"race: fromStep must be an integer ≥ 0, got {f!r}")
    else:
        raise RaceRefused("INVALID_COMMAND", f"race: change must be a set_lr or set_schedule, got {kind!r}")
    return {"steps": steps, "change": change}


def _clone(obj: Any) -> Any:
    """A deep copy with every tensor cloned (a state_dict's tensors are the live ones)."""
    return copy.deepcopy(obj)


@contextmanager
def _restored(run: Any) -> Iterator[None]:
    """Everything a branch can change, put back exactly when the block ends, however it ends."""
    model_state = _clone(run.model.state_dict())
    opt_states = [_clone(o.state_dict()) for o in run.optimizers]
    devices = sorted({p.device.index for p in run.model.parameters() if p.device.type == "cuda"})
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = [torch.cuda.get_rng_state(d) for d in devices]
    grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in run.model.parameters()]
    training = run.model.training
    try:
        yield
    finally:
        run.model.load_state_dict(model_state)
        for o, s in zip(run.optimizers, opt_states):
            o.load_state_dict(_clone(s))
        torch.random.set_rng_state(cpu_rng)
        for d, s in zip(devices, cuda_rng):
            torch.cuda.set_rng_state(s, d)
        for p, g in grads:
            p.grad = g
        run.model.train(training)


def _apply_change(run: Any, change: Dict[str, Any], start: int) -> None:
    if change["kind"] == "set_lr":
        run.set_lr(float(change["lr"]))
        return
    opt = run.optimizer
    if not optinfo.has_schedule(opt):
        raise RaceRefused("NOT_ALLOWED_NOW", f"race: this run has no p schedule (its optimizer, {type(opt).__name__}, has no set_schedule)")
    from_step = max(int(change.get("fromStep", start) or start), start)
    try:
        opt.set_schedule(change["schedule"], from_step=from_step, source="race", reason="race branch")
    except (ValueError, TypeError) as e:
        raise RaceRefused("INVALID_COMMAND", f"race: set_schedule: {e}") from e


def _p_of_step(opt: Any, step: int) -> Optional[float]:
    fn = getattr(opt, "p_at", None)
    if callable(fn):
        return float(fn(step))
    return optinfo.current_p(opt)


def _branch(run: Any, change: Optional[Dict[str, Any]], steps: int, start: int, microbatches: int) -> Dict[str, Any]:
    """One branch from the run's state (restored afterwards by the caller): its steps and its score."""
    if change is not None:
        _apply_change(run, change, start)
    losses: List[float] = []
    diverged: Optional[int] = None
    p_last = None
    for k in range(steps):
        for o in run.optimizers:
            o.zero_grad(set_to_none=True)
        loss = run.observer.noise_probe(k % microbatches)
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged = start + k
            break
        loss.backward()
        if not all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in run.model.parameters()):
            diverged = start + k
            break
        p_last = _p_of_step(run.optimizer, start + k)
        for o in run.optimizers:
            o.step()
        losses.append(value)
    lr = optinfo.run_lr(run.optimizer)
    if diverged is not None:
        return {"trainLoss": None, "valLoss": None, "divergedAtStep": diverged, "p": p_last, "lr": lr}
    with torch.no_grad():
        val = float(run.observer.probe().detach())
    if not math.isfinite(val):
        return {"trainLoss": None, "valLoss": None, "divergedAtStep": start + steps - 1, "p": p_last, "lr": lr}
    return {"trainLoss": sum(losses) / len(losses), "valLoss": val, "p": p_last, "lr": lr}


def race_result(run: Any, params: Any) -> Dict[str, Any]:
    """The host's `measure` `race`: both branches' scores, with the run exactly as it was afterwards."""
    observer = run.observer
    if observer.probe is None or observer.noise_probe is None:
        raise RaceRefused("NOT_ALLOWED_NOW", "race needs watch(probe=…) to score the branches and noise_probe=… to train them "
                          "(a script's loop owns its data; the race trains on the noise microbatches)")
    if run.state != "paused":
        raise RaceRefused("NOT_ALLOWED_NOW", f'"race" compares branches while paused; the run is {run.state}')
    start = run.steps_done
    checked = check_params(params, run.total_steps - start)
    started = time.perf_counter()
    microbatches = int(observer.microbatches)
    run.racing = True  # watch's step hooks do nothing while a branch trains
    try:
        with _restored(run):
            baseline = _branch(run, None, checked["steps"], start, microbatches)
        with _restored(run):
            suggested = _branch(run, checked["change"], checked["steps"], start, microbatches)
    finally:
        run.racing = False
    return {"what": "race", "start": start, "steps": checked["steps"], "baseline": baseline, "suggested": suggested,
            "heldOutExamples": None, "costMs": (time.perf_counter() - started) * 1000}
