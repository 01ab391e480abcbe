"""What both integrations share: the trainer's optimizer and scheduler found under their wrappers, a
Muonscope stop taken as the trainer's own, and set_lr carried into the trainer's lr scheduler.

**set_lr and the trainer's scheduler.** Both trainers step an lr scheduler after every optimizer step, which
would overwrite the lr a set_lr command has just set. ``attach`` replaces the run's ``set_lr`` (the method
commands.apply calls for a set_lr command, on every rank) with one that, after scaling the param groups'
lr as watch does, scales each scheduler's own base by the same per-group factor: ``base_lrs`` (torch's
LRScheduler: LambdaLR, which 🤗's linear/cosine schedules are, StepLR, CosineAnnealingLR, ...),
the groups' ``initial_lr``, CyclicLR's ``max_lrs`` and OneCycleLR's ``max_lr``/``min_lr``, recursing into
SequentialLR/ChainedScheduler. The schedule then goes on from the user's level, with its shape. A
scheduler with none of these (an unknown kind), or a set_lr while the lr is 0 (the start of a warmup, no
factor to scale by), is refused (NOT_ALLOWED_NOW) before anything changes. ReduceLROnPlateau multiplies the
lr it finds, so it keeps the new level without help.

**Stop.** The optimizer's ``step`` is wrapped on the instance so that a stop applied at the step boundary
(watch's pre-hook raises ``StopTraining`` after the final checkpoint and the `stopped` state) skips that
update and returns instead of raising; the callbacks then end the trainer through its own stop flag.
"""
from __future__ import annotations

import types
from typing import Any, Callable, Dict, List, Optional

import torch

from ..commands import Refused
from ..watch import StopTraining

# Scheduler attributes (lists, one per param group) and param-group keys that hold the schedule's level.
_LIST_ATTRS = ("base_lrs", "max_lrs")
_GROUP_KEYS = ("initial_lr", "max_lr", "min_lr")


def unwrap_optimizer(opt: Any) -> Any:
    """The torch optimizer under accelerate's AcceleratedOptimizer or Lightning's LightningOptimizer: the
    hooks go on the one whose ``step`` updates the weights."""
    for _ in range(8):
        inner = getattr(opt, "optimizer", None) or getattr(opt, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is opt:
            return opt
        opt = inner
    return opt


def unwrap_scheduler(sched: Any) -> Any:
    """The torch scheduler under accelerate's AcceleratedScheduler (``.scheduler``)."""
    for _ in range(8):
        inner = getattr(sched, "scheduler", None)
        if inner is None or inner is sched or not hasattr(inner, "step"):
            return sched
        sched = inner
    return sched


def _flatten(schedulers: List[Any]) -> List[Any]:
    out: List[Any] = []
    for s in schedulers:
        if s is None:
            continue
        s = unwrap_scheduler(s)
        out.append(s)
        out.extend(_flatten(list(getattr(s, "_schedulers", None) or [])))  # SequentialLR, ChainedScheduler
    return out


def _scalable(s: Any) -> bool:
    return any(isinstance(getattr(s, a, None), list) for a in _LIST_ATTRS) or isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau) \
        or bool(getattr(s, "_schedulers", None))


def attach(run: Any, optimizers: List[torch.optim.Optimizer], schedulers: Callable[[], List[Any]],
           closure_first: Optional[Callable[[Any], None]] = None) -> None:
    """Makes set_lr scale the trainer's schedulers (`schedulers()` lists them when a set_lr arrives) and a
    stop end the step quietly (see the module's docs)."""
    original_set_lr = run.set_lr

    def set_lr(lr: float) -> None:
        # A scheduler may hold the optimizer's wrapper (🤗's is built on accelerate's): its groups are the same.
        ours = [s for s in _flatten(schedulers()) if any(unwrap_optimizer(getattr(s, "optimizer", None)) is o for o in optimizers)]
        groups = [g for o in optimizers for g in o.param_groups]
        if ours:
            unknown = [type(s).__name__ for s in ours if not _scalable(s)]
            if unknown:
                raise Refused("NOT_ALLOWED_NOW", f"set_lr: the trainer's lr scheduler ({unknown[0]}) has no base_lrs to scale, "
                                                 "so its next step would undo the new lr; nothing changed")
            if any(not (g["lr"] > 0) for g in groups):
                raise Refused("NOT_ALLOWED_NOW", "set_lr: the lr is 0 now (the start of a warmup?), so the trainer's lr schedule "
                                                 "cannot be scaled to the new level; try again once it is above 0. Nothing changed")
        before: Dict[int, float] = {id(g): float(g["lr"]) for g in groups}
        original_set_lr(lr)
        factor = {id(g): float(g["lr"]) / before[id(g)] for g in groups if before[id(g)] > 0}
        for s in ours:
            sgroups = s.optimizer.param_groups
            for attr in _LIST_ATTRS:
                values = getattr(s, attr, None)
                if isinstance(values, list) and len(values) == len(sgroups):
                    setattr(s, attr, [v * factor.get(id(g), 1.0) for v, g in zip(values, sgroups)])
            if isinstance(getattr(s, "_last_lr", None), list):  # what get_last_lr() (and 🤗's logs) report
                s._last_lr = [float(g["lr"]) for g in sgroups]
        for g in groups:
            for key in _GROUP_KEYS:
                if isinstance(g.get(key), (int, float)) and not isinstance(g.get(key), bool):
                    g[key] = g[key] * factor.get(id(g), 1.0)

    run.set_lr = set_lr  # commands.apply calls run.set_lr: the instance's own wins over the class's

    for o in optimizers:
        guard_step(o, closure_first)


def guard_step(optimizer: torch.optim.Optimizer, closure_first: Optional[Callable[[Any], None]] = None) -> None:
    """Wraps ``optimizer.step`` on the instance: StopTraining from watch's pre-hook ends the step quietly
    (the update is not made; the run has stopped). With `closure_first`, a closure is run before the hooked
    step rather than inside it, so watch's pre-hook (non-finite checks, diagnostics) sees this step's
    gradients; `closure_first(loss)` gets what it returned. Optimizers that call the closure several times
    (LBFGS) keep it inside."""
    step = optimizer.step  # the bound, hooked method
    first = closure_first is not None and not isinstance(optimizer, torch.optim.LBFGS)

    def guarded(_self: Any, closure: Any = None, **kwargs: Any) -> Any:
        result = None
        if first and closure is not None:
            with torch.enable_grad():
                result = closure()
            closure_first(result)
            closure = None
        try:
            out = step(closure, **kwargs) if closure is not None else step(**kwargs)
        except StopTraining:
            return result
        return result if first and result is not None else out

    # torch's LRScheduler marks the step it wrapped to check the order of optimizer and scheduler steps; the
    # mark is carried over, else Lightning warns that step() was overridden after the scheduler was made.
    if hasattr(step, "_wrapped_by_lr_sched"):
        guarded._wrapped_by_lr_sched = step._wrapped_by_lr_sched
    # A bound method, as torch's LRScheduler expects of ``step`` when it wraps it (a scheduler made later).
    optimizer.step = types.MethodType(guarded, optimizer)


def ended(run: Any) -> bool:
    return run is None or run.state in ("stopped", "finished", "crashed")
