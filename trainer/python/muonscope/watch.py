"""``muonscope.watch``: one line that makes a torch training loop a Muonscope run.

    run = muonscope.watch(model, optimizer, total_steps=1000, name="mlp", config={...})
    for step in range(1000):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(); loss.backward()
        run.log(loss=loss)          # before optimizer.step() (or right after it, see below)
        optimizer.step()            # watch hooks this call: commands, pause, diagnostics, the step record
    run.close()                     # or use `with muonscope.watch(...) as run:`

The loop keeps its own code: watch registers a step pre-hook and a post-hook on the optimizer.

**Several optimizers** (torch.optim.Muon takes only matrices, so a model often has Muon for its matrices
and AdamW for the rest): pass them as a list, the run's first. A step is then one ``step()`` of each: it
starts at the first of them called and ends after the last; lr, p and set_schedule are the first
optimizer's, set_lr moves every group of every optimizer by the same factor (as the TS trainer moves
AdamW's with the matrix optimizer's), and checkpoints hold every optimizer's state_dict (a list).

**Steps.** A step is one ``optimizer.step()`` call that updated the weights; ``step`` in records is its
0-based index. Its record carries the loss given to ``run.log(loss=…)`` between the previous step and
this one — called before ``optimizer.step()`` the loss is written with the step's record at once; called
after it (before the next step) the record waits for it. A step with no loss logged by the next step's
start gets no record (a one-time warning alert says so: the protocol's loss is required).
``stepMs`` is the wall time from the end of the previous step's hook work to the end of this step,
watch's own diagnostics and paused time excluded (the first step's from watch()). ``lr`` is the first
param group's; ``p`` is the optimizer's (DynMuon) or null. ``run.log(tokens=…)`` adds tokensPerS;
``run.log(val_loss=…)`` writes an `eval` record for the last completed step (step 0 before any).

**Commands** (from the host, over the channel) are applied at step boundaries, in the pre-hook:
pause blocks ``optimizer.step()`` until resume, step N or stop; stop makes ``run.should_stop`` true and
the pre-hook raise ``muonscope.StopTraining`` (after a final checkpoint and the `stopped` state), which
the ``with`` form swallows; set_lr scales every param group's lr by new/old (a single group gets the new
lr; ratios between groups are kept). An lr scheduler of the user's own overwrites it at its next step.

**Non-finite values.** A non-finite logged loss or gradient (checked before each update) logs an error
alert naming the layer, skips the update (every ``.grad`` is set to None, so torch optimizers leave the
weights and their state alone; the step does not count) and pauses the run until a command resumes it.
With no host to send one, the run cannot be resumed, so it is not paused: the alert says the update was
skipped and training goes on.

**Resuming** (``watch(..., resume=CHECKPOINT)``): the checkpoint's model and optimizer state_dicts are
loaded into the model and optimizer(s) given (built as for the original run) and the run's step count is
set to the checkpoint's, so step records, checkpoint names, DynMuon's schedule and the diagnostics
cadence continue where it was taken; run_started carries that step and ``resumedFrom``. The data is the
loop's job: the loop must start at the checkpoint's step (``run.steps_done``) with its data in the same
place, e.g. batches drawn from a generator seeded per step (tests/e2e/train.py does this), or a sampler
fast-forwarded by that many batches.

**Output.** With ``MUONSCOPE_CHANNEL`` set, records go to the host over the channel (channel.py). Without
it, watch starts a host for this process when it finds the muonscope CLI and Node (autostart.py, docs/python.md
§4) and prints the dashboard URL on stderr; otherwise (or with ``host=False`` / ``MUONSCOPE_NO_HOST=1``) it
writes the run folder itself (runfolder.py) and prints on stderr where and how to open it.
When the host goes away, records wait in memory for ``MUONSCOPE_HOST_TIMEOUT_S`` seconds (default 30)
before Python writes the log itself (docs/python.md §4).

**Data parallel** (torch.distributed initialized with several processes, DDP): rank 0 is the run and the
other ranks follow it at each step boundary (distributed.py, docs/python.md "Data parallel").
"""
from __future__ import annotations

import atexit
import json
import math
import os
import queue
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import torch

from . import autostart
from . import commands as cmds
from . import ddp_noise
from . import distributed as ddp
from . import measure
from . import optinfo
from .channel import ChannelClient, ChannelError
from .matrices import classify
from .observer import Observer
from .records import PROTOCOL_VERSION, alert_record, checkpoint_record, eval_record, state_record, step_record
from .runfolder import LogWriter, atomic_write, create_run_dir, how_to_open
from .scheduler import check_settings

# The TS trainer's defaults (trainer/run/config.ts), diagnostics every 100 steps, but within a 4% budget
# rather than its 10%: watch adds to someone else's training loop, and its goal is 5% of that loop's time
# all told. Here the budget is watch's whole time, its hooks included (scheduler.py); the first probe of
# each diagnostic's cost comes on top. `muonscope run` hosts a run with the same 4%
# (trainer/run/config-defaults.ts TORCH_DIAGNOSTICS_BUDGET_PCT, checked equal by test_watch.py).
DIAGNOSTICS_DEFAULTS = {"every": 100, "adaptive": True, "budgetPct": 4.0, "curvature": True, "noise": True,
                        "microbatches": 8, "noiseWindowSteps": 1000}


def _hosted_diagnostics() -> Dict[str, Any]:
    """The `diagnostics` section of the run config the host validated (MUONSCOPE_CONFIG), or nothing."""
    path = os.environ.get("MUONSCOPE_CONFIG")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            section = json.load(f).get("diagnostics")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"watch: MUONSCOPE_CONFIG={path} cannot be read as a run config: {e}") from e
    keys = ("every", "adaptive", "budgetPct", "curvature", "noise", "microbatches", "noiseWindowSteps")
    return {k: section[k] for k in keys if isinstance(section, dict) and k in section}


class StopTraining(Exception):
    """Raised by ``optimizer.step()`` after a stop command: the run has checkpointed and logged `stopped`.
    ``with muonscope.watch(...)`` ends the block quietly on it."""


def watch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, total_steps: int, name: str = "run",
          config: Optional[Dict[str, Any]] = None, probe: Optional[Callable[..., torch.Tensor]] = None,
          noise_probe: Optional[Callable[[int], torch.Tensor]] = None, microbatch_size: Optional[int] = None,
          batch_size: Optional[int] = None, out: str = "runs", channel: Optional[str] = None,
          resume: Optional[str] = None, host: Optional[bool] = None) -> "Run":
    """Starts watching: see the module's docs. `probe()` returns a held-out loss (differentiable) for the
    curvature along the update, or `probe(part, parts)` the loss of part `part` of `parts` equal parts of
    that batch (under DDP every rank then measures on its part, at 1/R the cost; elsewhere probe(0, 1) is
    the whole); `noise_probe(i)` the loss of the i-th of K = diagnostics.microbatches
    microbatches of `microbatch_size` held-out examples, for B_simple. `batch_size` is the training batch
    (under DDP each rank's, which also lets ddp_noise.py estimate B_simple from the ranks' gradients).
    `channel` (HOST:PORT) overrides
    MUONSCOPE_CHANNEL. `resume` is a checkpoint file of this run's (see the module's docs). Without a
    channel, watch starts a host itself when it finds the muonscope CLI and Node (autostart.py); `host=False`
    (or MUONSCOPE_NO_HOST=1) writes the run folder directly instead."""
    return Run(model, optimizer, total_steps, name, config, probe, noise_probe, microbatch_size, batch_size, out, channel, resume, host)


class Run:
    def __init__(self, model, optimizer, total_steps, name, config, probe, noise_probe, microbatch_size, batch_size, out, channel, resume=None, host=None):
        if not (isinstance(total_steps, int) and not isinstance(total_steps, bool) and total_steps >= 1):
            raise ValueError(f"watch: total_steps must be an integer ≥ 1, got {total_steps!r}")
        optimizers = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
        bad = [type(o).__name__ for o in optimizers if not isinstance(o, torch.optim.Optimizer)]
        if not optimizers or bad:
            raise TypeError(f"watch: optimizer must be a torch.optim.Optimizer or a list of them, got {bad[0] if bad else 'an empty list'}")
        if len({id(o) for o in optimizers}) != len(optimizers):
            raise ValueError("watch: the same optimizer is listed twice")
        optimizer = optimizers[0]
        user = dict(config or {})
        # Under `muonscope run CONFIG`, the run config's diagnostics apply unless the script sets its own.
        diag = {**DIAGNOSTICS_DEFAULTS, **_hosted_diagnostics(), **(user.get("diagnostics") or {})}
        check_settings(diag["every"], diag["adaptive"], diag["budgetPct"])
        # What runs, as the optimizer itself says it (the label, the runs tree and the advisor read it):
        # not a user-supplied `optimizer` entry, which would describe a run that is not this one.
        self.config = {**user, "name": name, "steps": total_steps, "diagnostics": diag,
                       "optimizer": optinfo.config_section(optimizers[0]),
                       **({"batchSize": batch_size} if isinstance(batch_size, int) and "batchSize" not in user else {})}
        self.model, self.optimizer, self.total_steps, self.name = model, optimizer, total_steps, name
        self.optimizers = optimizers
        self._stepped: set = set()  # the optimizers that have stepped in the step under way
        self.racing = False  # set by race.py while a fork-and-race branch trains
        self.params = classify(model)
        self.state = "running"
        self.steps_done = 0
        self.steps_before_pause: Optional[int] = None
        self.stop_reason: Optional[str] = None
        self._closed = False
        self._skip = False
        self._pending: Dict[str, float] = {}   # loss/tokens logged since the last step
        self._held: Optional[Dict[str, Any]] = None  # a step record waiting for its loss
        # Data parallel: the exchange under way (started after a step, waited for before the next), the step
        # it carries, this rank's loss flags for the next one, and rank 0's pauses for the ranks to take.
        self._inflight: Optional[ddp.PendingExchange] = None
        self._inflight_sent: Optional[_Sent] = None
        self._loss_flags = 0
        self._events: List[List[str]] = []
        self._warned_no_loss = False
        self._mark = time.perf_counter()
        self._own_ms = 0.0
        self._p: Optional[float] = None
        # Under torch.distributed with several processes, rank 0 is the run and the others follow it at
        # each step boundary (distributed.py); a single process never takes the distributed paths.
        self._dist, self._leader, self._world = ddp.is_distributed(), ddp.is_leader(), ddp.world_size()

        # Everything that can refuse the arguments runs before anything is created.
        # Under DDP `batch_size` is each rank's batch; the training batch B_simple is set against is R times it.
        train_batch = batch_size * self._world if self._dist and isinstance(batch_size, int) else batch_size
        self.observer = Observer(self.params, optimizers, self.emit, diag, probe=probe, noise_probe=noise_probe,
                                 microbatches=int(diag["microbatches"]), microbatch_size=microbatch_size, batch_size=train_batch)
        if self._dist:  # the ranks share the diagnostics' work (observer.py)
            self.observer.split(ddp.rank(), self._world, ddp.gather_objects)

        # Loaded before the channel or folder exists: a bad checkpoint is refused with nothing created.
        if resume is not None:
            self.steps_done = _restore(resume, model, optimizers)

        address = (channel or os.environ.get("MUONSCOPE_CHANNEL")) if self._leader else None
        token = os.environ.get("MUONSCOPE_CHANNEL_TOKEN", "")
        self.channel: Optional[ChannelClient] = None
        self.writer: Optional[LogWriter] = None
        host_dir = os.environ.get("MUONSCOPE_RUN_DIR")
        # No host around: start one for this process when the CLI and Node are there (docs/python.md §4).
        self.host = None if address or not self._leader else autostart.start_for_run(self.config, out, host)
        if self.host is not None:
            address, token, host_dir = self.host.channel, self.host.channel_token, self.host.run_dir
        if address:
            try:
                self.channel = ChannelClient(address, token, run_dir=host_dir, grace_s=_host_timeout_s())
            except (OSError, ChannelError, ValueError) as e:
                # Training goes on without the host: the run is written directly (docs/python.md §4).
                print(f"muonscope: no host at {address} ({e}); writing the run directly", file=sys.stderr)
                if self.host is not None:  # ours: it closes without writing, the folder is ours now
                    self.host.stop()
                    self.host = None
        if self.channel is not None:
            self.run_dir = Path(self.channel.run_dir) if self.channel.run_dir else None
            self.run_id = str(self.channel.welcome.get("runId") or (self.run_dir.name if self.run_dir else name))
        elif not self._leader:
            # Another rank of a data-parallel run: rank 0 writes the run, this one opens and writes nothing.
            self.run_dir, self.run_id = None, name
        else:
            # The host's folder when it made one (its log continued), else a new folder under `out`.
            existing = address and host_dir and (Path(host_dir) / "config.json").exists()
            self.run_dir = Path(host_dir).resolve() if existing else create_run_dir(out, name, self.config).resolve()
            self.run_id = self.run_dir.name
            self.writer = LogWriter(self.run_dir)
            print(how_to_open(self.run_dir), file=sys.stderr)

        device = next((p.param.device for p in self.params), torch.device("cpu"))
        started = {"resumedFrom": str(Path(resume).resolve())[:4096]} if resume is not None else {}
        self.emit({
            **started, **({"worldSize": self._world} if self._dist else {}), "kind": "run_started", "step": self.steps_done, "runId": self.run_id, "protocol": PROTOCOL_VERSION, "config": self.config,
            "backend": {"chosen": f"torch-{device.type}", "skipped": []},
            "kernels": {"chosen": f"torch {torch.__version__}", "skipped": []},
            "totalSteps": total_steps,
            "task": {"name": _task_name(user.get("task"), name), "lossFloor": None, "lossFloorLabel": "unknown"},
            # A matrix's shape as Muon sees it (a conv kernel (out, in, kh, kw) is (out, in·kh·kw)), as the
            # spectra are of that matrix; other parameters keep their own shape.
            "params": [{"name": p.name, "shape": [p.rows, p.cols] if p.is_matrix else list(p.shape), "route": p.route} for p in self.params],
        })
        # Gradient noise from the ranks' own gradients (ddp_noise.py): the comm hook must be on the DDP model
        # before its first backward, i.e. now. Every rank decides alike (same arguments on every rank).
        self._rank_noise = None
        if self._dist and diag.get("noise", True):
            self._rank_noise = ddp_noise.attach(model, self._world, batch_size, int(diag["noiseWindowSteps"]),
                                                lambda code, msg: self.emit(alert_record(self.steps_done, "warning", code, msg)),
                                                check_finite=True)
            if self._rank_noise is not None:
                self._rank_noise.arm(self._rank_noise_due(self.steps_done))
        self._hooks = [h for o in optimizers for h in (o.register_step_pre_hook(_weak(self, Run._pre_hook)),
                                                       o.register_step_post_hook(_weak(self, Run._post_hook)))]
        atexit.register(_weak(self, Run._at_exit))
        if self._dist:  # the first step's commands and plan (every rank calls watch at the same point)
            self._launch(None)

    # ---- records ----

    def emit(self, record: Dict[str, Any]) -> None:
        if not self._leader:  # rank 0 writes the run (distributed.py)
            return
        if self.channel is not None:
            self.channel.send_record(record)
        else:
            self.writer.append(record)

    def set_state(self, state: str, reason: str) -> None:
        if self.state == state:
            return
        self.state = state
        self.emit(state_record(self.steps_done, state, reason))

    @property
    def should_stop(self) -> bool:
        """True once the run has ended or a stop command has arrived (even before the step boundary that
        applies it): a loop may `break` on it, and close() then carries the stop out."""
        if self.stop_reason is not None or self.state in ("stopped", "finished", "crashed"):
            return True
        if self.channel is None or self._dist:
            # Data parallel: a stop not yet applied is rank 0's alone, and a loop that broke on it there
            # would leave the other ranks waiting in DDP's all-reduce; it applies at the next step on all.
            return False
        with self.channel.commands.mutex:
            waiting = list(self.channel.commands.queue)
        return any(isinstance(m.get("command"), dict) and m["command"].get("kind") == "stop" for m in waiting)

    def log(self, loss: Any = None, val_loss: Any = None, tokens: Optional[float] = None) -> None:
        """Logs this step's training loss (and tokens processed), and/or a validation loss (an `eval` record)."""
        if val_loss is not None:
            v = float(val_loss.detach() if isinstance(val_loss, torch.Tensor) else val_loss)
            at = max(self.steps_done - 1, 0)
            if math.isfinite(v):
                self.emit(eval_record(at, v))
            else:  # the protocol's numbers are finite: say so instead of writing it
                self.emit(alert_record(at, "warning", "NON_FINITE_VAL_LOSS", f"validation loss is {v} after step {at}; no eval record"))
        if tokens is not None:
            self._pending["tokens"] = float(tokens)
        if loss is None:
            return
        value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        if self._held is not None:
            self._held["loss"] = value
            if self._held.get("tokens") is None:  # tokens logged with the loss, after the step
                self._held["tokens"] = self._pending.pop("tokens", None)
            self._write_held()
        else:
            self._pending["loss"] = value

    def _write_held(self) -> None:
        held, self._held = self._held, None
        if not math.isfinite(held["loss"]):
            # The update was taken before the loss was known: pause now (at the next step boundary).
            self._non_finite(f"loss is {held['loss']} at step {held['step']}", None, skip=False)
            return
        self.emit(step_record(held["step"], held["loss"], held["lr"], held["p"], held["stepMs"], held.get("tokens")))

    # ---- diagnostics settings ----

    def diagnostics_settings(self) -> Dict[str, Any]:
        s = self.observer.scheduler.settings
        return {"every": s["every"], "adaptive": s["adaptive"], "budgetPct": s["budgetPct"]}

    def configure_diagnostics(self, every: int, adaptive: bool, budget_pct: float) -> None:
        self.observer.scheduler.configure(every, adaptive, budget_pct)

    def _rank_noise_due(self, step: int) -> bool:
        """Whether DDP's all-reduce of `step` is measured for the noise estimate: the diagnostics' K-step
        points (the estimate costs two norms per bucket, so the budget has nothing to ration). From the step
        count and settings, which every rank shares (commands apply on all ranks at the same step)."""
        return step % int(self.observer.scheduler.settings["every"]) == 0

    def set_lr(self, lr: float) -> None:
        old = optinfo.run_lr(self.optimizer)
        groups = [g for o in self.optimizers for g in o.param_groups]
        for g in groups:
            g["lr"] = lr if len(groups) == 1 or old <= 0 else g["lr"] * (lr / old)

    # ---- checkpoints ----

    def checkpoint(self, reason: str) -> str:
        """Model and optimizer state_dicts (torch.save), written atomically to checkpoints/step-NNNNNNNN.pt."""
        if self.run_dir is None:
            raise cmds.Refused("NOT_ALLOWED_NOW", "no run folder to write a checkpoint to")
        path = self.run_dir / "checkpoints" / f"step-{self.steps_done:08d}.pt"
        payload = {"runId": self.run_id, "step": self.steps_done, "reason": reason, "model": self.model.state_dict(),
                   "optimizer": self.optimizer.state_dict() if len(self.optimizers) == 1 else [o.state_dict() for o in self.optimizers],
                   "config": self.config}
        atomic_write(path, lambda f: torch.save(payload, f))
        file = str(path)
        self.emit(checkpoint_record(self.steps_done, file, reason))
        return file

    # ---- commands ----

    def _apply(self, msg: Dict[str, Any]) -> None:
        if msg.get("type") == "measure":  # the host's mode probe (measure.py); never changes the run
            if self.channel is not None:
                self.channel.send(measure.answer(self, msg))
            return
        cid = str(msg.get("id", ""))[:64]
        try:
            step, detail = cmds.apply(self, msg.get("command"), str(msg.get("source") or "host")[:64], cid or None)
            reply = {"type": "ack", "id": cid, "step": step}
            if detail:
                reply["detail"] = detail[:1000]
        except cmds.Refused as e:
            reply = {"type": "refused", "id": cid, "code": e.code, "message": e.message[:2000]}
        except Exception as e:  # a bug in a command must not take the run down
            reply = {"type": "refused", "id": cid, "code": "INTERNAL", "message": f"{type(e).__name__}: {e}"[:2000]}
        if self.channel is not None:
            self.channel.send(reply)

    def _drain(self, block: bool) -> None:
        if self.channel is None:
            return
        while True:
            try:
                msg = self.channel.commands.get(timeout=0.05) if block else self.channel.commands.get_nowait()
            except queue.Empty:
                if block and self.state == "paused" and self.stop_reason is None:
                    continue
                return
            self._apply(msg)
            block = block and self.state == "paused" and self.stop_reason is None

    def _stop_now(self) -> None:
        reason = self.stop_reason or "stopped"
        self.close()
        raise StopTraining(reason)

    def _carry_out_stop(self) -> None:
        """A final checkpoint and the `stopped` state, as the TS trainer does on stop."""
        reason = self.stop_reason or "stopped"
        if self.run_dir is not None:
            try:
                self.checkpoint(f"final: {reason}")
            except Exception as e:  # the state must still be written
                self.emit(alert_record(self.steps_done, "warning", "CHECKPOINT_FAILED", f"final checkpoint failed: {e!r}"))
        self.set_state("stopped", reason)

    # ---- the hooks ----

    def _non_finite(self, message: str, layer: Optional[str], skip: bool, can_pause: Optional[bool] = None,
                    at_boundary: bool = False) -> None:
        """The alert (rank 0) and the pause where a host can resume it. Data parallel: at a step boundary
        every rank calls it alike (`at_boundary`, with rank 0's `can_pause`); elsewhere (a loss logged after
        its update) the pause is rank 0's alone and reaches the ranks with the next exchange, to be taken
        by all at a boundary."""
        can_pause = self.channel is not None if can_pause is None else can_pause
        tail = "; the update was skipped" if skip else ""
        tail += "; paused (resume to go on)" if can_pause else "; no host to resume the run, so training goes on"
        code = "NON_FINITE_GRADIENT" if layer is not None else "NON_FINITE_LOSS"
        self.emit(alert_record(self.steps_done, "error", code, message + tail, layer))
        if not can_pause:
            return
        if self._dist and not at_boundary:
            self._events.append(["pause", message])
            return
        self._pause(message)

    def _pause(self, reason: str) -> None:
        """A pause that no command asked for (a non-finite value)."""
        self.steps_before_pause = None
        self.set_state("paused", reason)

    def _pre_hook(self, optimizer, args, kwargs) -> None:
        if self.racing:  # a race branch's step (race.py): not the run's, restored afterwards
            return
        # With several optimizers, the step starts at the first one called; a second call of the same
        # optimizer before the others means the last step did not call them all: a new step starts.
        if self._stepped and id(optimizer) not in self._stepped:
            return
        self._stepped = set()
        self._pre_step()

    def _post_hook(self, optimizer, args, kwargs) -> None:
        if self.racing:
            return
        self._stepped.add(id(optimizer))
        if len(self._stepped) == len(self.optimizers):
            self._stepped = set()
            self._post_step()

    def _pre_step(self) -> None:
        started = time.perf_counter()
        if self._closed:
            return
        if self._held is not None:  # the previous step's loss never came
            self._no_loss()
        if self._dist:
            self._pre_step_distributed(started)
            return
        self._drain(block=False)
        self._skip = self._non_finite_step()
        paused_at = time.perf_counter()
        if self.state == "paused":
            self._drain(block=True)
        paused_ms = (time.perf_counter() - paused_at) * 1000
        if self.stop_reason is not None:
            self._stop_now()
        if self._skip:
            self._drop_grads()
        else:
            self._p = optinfo.current_p(self.optimizer)  # the p this step uses (read after it, DynMuon's is the next one's)
            self.observer.before_step(self.steps_done)
        self._own_ms += (time.perf_counter() - started) * 1000 - paused_ms
        self._mark += paused_ms / 1000  # paused time is not step time

    def _no_loss(self) -> None:
        """The held step record's loss never came: the record is dropped, with one warning per run."""
        self._held = None
        if not self._warned_no_loss:
            self._warned_no_loss = True
            self.emit(alert_record(self.steps_done, "warning", "NO_LOSS", "no loss was logged for a step (call run.log(loss=…) before or after optimizer.step()); steps without one get no step record"))

    def _non_finite_step(self) -> bool:
        """A non-finite logged loss or gradient: paused with an alert, and True (the update is skipped)."""
        loss = self._pending.get("loss")
        if loss is not None and not math.isfinite(loss):
            self._pending.pop("loss")
            self._non_finite(f"loss is {loss} at step {self.steps_done}", None, skip=True)
            return True
        bad = self._non_finite_layer()
        if bad is not None:
            self._non_finite(f"gradient of {bad} is not finite at step {self.steps_done}", bad, skip=True)
            return True
        return False

    def _drop_grads(self) -> None:
        """A skipped step: the optimizers see no gradient, so step() changes nothing."""
        for o in self.optimizers:
            for g in o.param_groups:
                for p in g["params"]:
                    p.grad = None

    def _non_finite_layer(self) -> Optional[str]:
        """The first parameter whose gradient has a non-finite element, or None. Every step, so it is made
        cheap: one fused 2-norm per device and dtype, read back once. A NaN or ±inf anywhere makes its
        tensor's norm non-finite; finite values do only by overflow (|g| ≳ 1e19 in float32), and then the
        one-by-one look that names the layer finds nothing and the step goes on. A per-tensor
        isfinite().all() cost 0.85 ms a step on the example's 35 tensors, the fused 2-norms 0.25 ms (the
        fused ∞-norm, which never overflows, 0.74 ms)."""
        with_grad = [p for p in self.params if p.param.grad is not None]
        if not with_grad:
            return None
        # Data parallel with the noise estimator's comm hook: the norms of the buckets DDP reduced say it
        # (every watched parameter is the DDP model's, so in a bucket).
        reduced_finite = self._rank_noise.reduced_finite() if self._rank_noise is not None else None
        if reduced_finite is True:
            return None
        if reduced_finite is None and self._gradients_finite(with_grad):
            return None
        for p in with_grad:
            if not bool(torch.isfinite(p.param.grad).all()):
                return p.name
        return None

    @staticmethod
    def _gradients_finite(with_grad) -> bool:
        groups: Dict[tuple, List[torch.Tensor]] = {}
        for p in with_grad:
            g = p.param.grad
            groups.setdefault((g.device, g.dtype), []).append(g)
        norms = [torch.stack(torch._foreach_norm(gs, 2)).isfinite().all() for gs in groups.values()]
        return bool(torch.stack([n.cpu() for n in norms]).all())

    # ---- data parallel (distributed.py): rank 0 decides at each step boundary, every rank follows ----

    # How long rank 0 waits for commands between two "still paused" broadcasts: the other ranks wait in
    # the broadcast, and a collective that never completes would hit the process group's timeout (30 min
    # by default) and end the run; one every 0.2 s keeps a pause of any length alive.
    PAUSE_POLL_S = 0.2

    def _pre_step_distributed(self, started: float) -> None:
        """The step boundary of _pre_step for every rank of a data-parallel run. The exchange started after
        the last step (_launch) has travelled during this step's forward and backward; every rank now takes
        from it rank 0's commands, pauses and plan and applies them, so lr, p schedule, pauses and stops are
        the same on every rank at the same step, and rank 0 writes the last step's `rank_times`. Whether
        this step's update is skipped every rank decides alike from the all-reduced gradients. A
        non-finite loss whose gradients are finite is seen at the next boundary (in the flags), where it
        pauses every rank: its update was taken, as no rank can skip alone."""
        loss = self._pending.get("loss")
        if loss is not None and not math.isfinite(loss):
            self._pending.pop("loss")  # no step record with it: the alert says why
            self._loss_flags |= ddp.LOSS_NOT_FINITE
        bad_layer = self._non_finite_layer()  # all-reduced gradients: the same answer on every rank
        if self._inflight is None:
            # A step that started again without ending (an optimizer called twice before the others, see
            # _pre_hook): every rank runs the same loop, so every rank starts one here.
            self._launch(None)
        pending, self._inflight = self._inflight, None
        slots, payload = self._take_exchange(pending)
        for kind, reason in payload["events"]:
            if kind == "pause" and self.stop_reason is None:  # a stop under way goes first
                self._pause(reason)
        can_pause = payload["canPause"]
        bad_ranks = [r for r, slot in enumerate(slots) if slot.flags & ddp.LOSS_NOT_FINITE]
        if bad_ranks and self._inflight_sent is not None:
            who = f"rank {bad_ranks[0]}" if len(bad_ranks) == 1 else f"ranks {', '.join(map(str, bad_ranks))}"
            message = f"loss is not finite on {who} at step {self._inflight_sent.step} (its gradients were finite, so every rank took the update)"
            self._non_finite(message, None, skip=False, can_pause=can_pause, at_boundary=True)
        self._skip = bad_layer is not None
        if self._skip:
            self._loss_flags = 0  # the gradient's alert says it
            self._non_finite(f"gradient of {bad_layer} is not finite at step {self.steps_done}", bad_layer, skip=True,
                             can_pause=can_pause, at_boundary=True)
        due = [] if self._skip else payload["due"]
        curvature_parts = payload["curvatureParts"]  # rank 0's probe decides how the curvature is split
        paused_at = time.perf_counter()
        paused = self.state == "paused" and self.stop_reason is None  # the same on every rank
        while paused:
            payload = None
            if self._leader:
                taken = self._take(block=True, timeout=self.PAUSE_POLL_S)
                payload = {"msgs": taken, **self._verdict()}
            payload = self._follow(ddp.broadcast(payload))
            paused = payload["paused"]
        paused_ms = (time.perf_counter() - paused_at) * 1000
        if self.stop_reason is not None:
            self._stop_now()
        if self._skip:
            if self._rank_noise is not None:  # a skipped step's gradients are not measured
                self._rank_noise.discard()
            self._drop_grads()
        else:
            self._p = optinfo.current_p(self.optimizer)
            self.observer.before_step(self.steps_done, due, curvature_parts=curvature_parts)
        self._own_ms += (time.perf_counter() - started) * 1000 - paused_ms
        self._mark += paused_ms / 1000

    def _launch(self, sent: Optional["_Sent"]) -> None:
        """After a step (or a skipped one, or at the start): starts the exchange the next boundary takes.
        Rank 0's part: the commands that came since the last one (measures are answered now, by rank 0
        alone), what diagnostics the next step runs (its scheduler and budget decide for every rank), its
        probe's kind, whether a host can resume a pause, and its pauses."""
        payload = None
        if self._leader:
            payload = {"msgs": self._take(block=False, apply=False), "due": self.observer.plan(self.steps_done),
                       "curvatureParts": self.observer.probe_parts, "canPause": self.channel is not None,
                       "events": self._events}
            self._events = []
        flags, self._loss_flags = self._loss_flags, 0
        self._inflight = ddp.start_exchange(sent.step_ms if sent else None, sent.local_sq if sent else 0.0, flags, payload)
        self._inflight_sent = sent

    def _take_exchange(self, pending: ddp.PendingExchange):
        """Waits for the exchange started after the last step, writes that step's rank_times (rank 0) and
        applies the commands it carries on every rank (rank 0 acks them with this step)."""
        slots, payload = pending.wait()
        self._complete_step(self._inflight_sent, slots)
        for msg in payload["msgs"]:
            self._apply(msg)
        return slots, payload

    def _complete_step(self, sent: Optional["_Sent"], slots: List[ddp.Slot]) -> None:
        """After an exchange, rank 0: the step before it in every rank's wall time (a `rank_times` record:
        its `step` record went out without waiting), and the ranks' noise record of it when it was measured."""
        if sent is None or not self._leader:
            return
        times = [slot.step_ms for slot in slots]
        if all(t is not None for t in times):
            self.emit({"kind": "rank_times", "step": sent.step, "worldSize": self._world, "rankStepMs": times})
        if sent.reduced_sq is not None and self._rank_noise is not None:
            self.emit(self._rank_noise.finish(sent.step, sent.reduced_sq, [slot.extra for slot in slots]))

    def _verdict(self) -> Dict[str, Any]:
        """Rank 0's state after the commands it applied, for the other ranks to take."""
        return {"state": self.state, "stepsBeforePause": self.steps_before_pause, "stopReason": self.stop_reason,
                "paused": self.state == "paused" and self.stop_reason is None}

    def _follow(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """On ranks other than 0: applies rank 0's commands (their records and replies are rank 0's, so
        nothing is sent) and takes its state, which decides the pause and the stop on this rank too."""
        if not self._leader:
            for msg in payload["msgs"]:
                self._apply(msg)
            self.state, self.steps_before_pause, self.stop_reason = payload["state"], payload["stepsBeforePause"], payload["stopReason"]
        return payload

    def _take(self, block: bool, timeout: float = 0.0, apply: bool = True) -> list:
        """Rank 0's _drain: takes what the host sent (waiting up to `timeout` s while paused) and returns
        the commands among it for the other ranks, applied here now (while paused) or, with `apply` False,
        left for every rank to apply at the next boundary; measures are rank 0's alone, answered now."""
        taken: list = []
        if self.channel is None:
            if block:
                time.sleep(timeout)
            return taken
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.channel.commands.get(timeout=0.05) if block else self.channel.commands.get_nowait()
            except queue.Empty:
                if block and self.state == "paused" and self.stop_reason is None and time.monotonic() < deadline:
                    continue
                return taken
            if msg.get("type") == "measure" and msg.get("what") == "race":
                # A race trains branches on this process alone; DDP's all-reduce would wait for the others.
                self.channel.send({"type": "refused", "id": str(msg.get("id", ""))[:64], "code": "NOT_ALLOWED_NOW",
                                   "message": "race: fork-and-race is not available for data-parallel runs yet"})
                continue
            if apply or msg.get("type") == "measure":
                self._apply(msg)
            if msg.get("type") != "measure":
                taken.append(msg)
            block = block and self.state == "paused" and self.stop_reason is None

    def _post_step(self) -> None:
        optimizer = self.optimizer
        if self._closed:
            return
        if self._skip:
            self._skip = False
            if self._dist:  # the next boundary needs its exchange all the same
                self._launch(None)
            return
        step = self.steps_done
        self.steps_done += 1
        now = time.perf_counter()
        step_ms = max(0.0, (now - self._mark) * 1000 - self._own_ms)
        held = {"step": step, "lr": optinfo.run_lr(optimizer), "p": self._p, "stepMs": step_ms,
                "tokens": self._pending.pop("tokens", None)}
        if self._dist:
            # Every rank's time of this step comes with the next boundary's exchange (its rank_times); so
            # does this rank's local gradient norm when DDP's all-reduce was measured (ddp_noise.py).
            rn = self._rank_noise
            measured = rn.take() if rn is not None else None
            if rn is not None:
                rn.arm(self._rank_noise_due(self.steps_done))
            sent = _Sent(step, step_ms, measured[0] if measured else 0.0, measured[1] if measured else None)
        if self._dist and self._loss_flags:
            self._held = None  # its loss was not finite: no step record (the alert comes at the next boundary)
        elif "loss" in self._pending:
            self._held = {**held, "loss": self._pending.pop("loss")}
            self._write_held()
        else:
            self._held = held
        # Every rank measures its share; rank 0 gathers and writes (observer.py).
        runs_ms = self.observer.after_step(step, step_ms)
        if self.steps_before_pause is not None:
            self.steps_before_pause -= 1
            if self.steps_before_pause <= 0:
                self.steps_before_pause = None
                self.set_state("paused", "requested steps done")
        if self._dist:  # last: the plan it carries for the next step counts this step's diagnostics
            self._launch(sent)
        # The rest of watch's own time in this step (the boundary before it and this hook) is spent from
        # the diagnostics budget too (scheduler.py); the runs were counted by the observer. Under DDP the
        # plan just sent was made before this: the hooks of a step weigh on the plan one step later.
        self.observer.scheduler.record_hooks(self._own_ms + (time.perf_counter() - now) * 1000 - runs_ms)
        self._own_ms = 0.0
        self._mark = time.perf_counter()

    # ---- the end ----

    def close(self, error: Optional[BaseException] = None) -> None:
        """Ends the run: removes the hooks, writes the final state (finished after total_steps, else stopped,
        or crashed with the error) and closes the log or the channel. Safe to call twice."""
        if self._closed:
            return
        if self._held is not None and "loss" in self._held:
            self._write_held()
        pending, self._inflight = self._inflight, None
        if pending is not None and error is None and sys.exc_info()[1] is None and ddp.is_distributed():
            # The exchange started after the last step: every rank closes after the same step (the same loop,
            # or StopTraining at the same boundary), so every rank started it. Its commands are applied (rank
            # 0 acks them) and the last step gets its rank_times. A rank closing on an error (passed, or being
            # handled: close() in a `finally`), at exit or on Ctrl-C does not wait: the others may be
            # anywhere, and the last step then has no rank_times.
            self._take_exchange(pending)
        if error is None and self.state not in ("stopped", "finished", "crashed"):
            self._drain(block=False)  # commands that arrived after the last step (a stop the loop broke on)
        self._closed = True
        for h in self._hooks:
            h.remove()
        if self._rank_noise is not None:  # DDP keeps the comm hook: from now on a plain all-reduce
            self._rank_noise.arm(False)
            self._rank_noise.check_finite = False
        if error is not None:
            self.emit(alert_record(self.steps_done, "error", "CRASH", f"{type(error).__name__}: {error}"))
            self.set_state("crashed", f"{type(error).__name__}: {error}")
        elif self.stop_reason is not None and self.state not in ("stopped", "finished", "crashed"):
            self._carry_out_stop()
        elif self.state not in ("stopped", "finished", "crashed"):
            if self.steps_done >= self.total_steps:
                self.set_state("finished", f"completed {self.total_steps} steps")
            else:
                self.set_state("stopped", f"the script ended after {self.steps_done} of {self.total_steps} steps")
        if self.channel is not None:
            self.channel.close(self.state)
            if self.host is not None:  # a host this process started ends on the bye: let it finish
                self.host.wait(timeout=5.0)
        elif self.writer is not None:
            self.writer.close()

    def _at_exit(self) -> None:
        # A run left open: at exit the ranks may be anywhere (one of them raised), so no waiting on them.
        self._inflight = None
        self.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is StopTraining:
            return True
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C (or the host forwarding SIGINT): a stop, as the TS trainer takes it — final checkpoint, `stopped`.
            self.stop_reason = self.stop_reason or "interrupted (SIGINT)"
            # The ranks are interrupted wherever they are: no waiting on the exchange, which one could miss.
            self._inflight = None
            self.close()
            return False
        self.close(exc if exc_type is not None and not issubclass(exc_type, GeneratorExit) else None)
        return False


class _Sent(NamedTuple):
    """What a data-parallel step sends at the next step boundary (Run._pre_step_distributed): its index and
    this rank's wall time of it, and, when DDP's all-reduce was measured for the noise estimate
    (ddp_noise.py), this rank's local squared gradient norm and the reduced one (None when not)."""
    step: int
    step_ms: float
    local_sq: float
    reduced_sq: Optional[float]


def _host_timeout_s() -> float:
    """MUONSCOPE_HOST_TIMEOUT_S: how long a lost host is waited for before Python writes the log (default 30 s)."""
    raw = os.environ.get("MUONSCOPE_HOST_TIMEOUT_S")
    if not raw:
        return 30.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"MUONSCOPE_HOST_TIMEOUT_S must be a number of seconds ≥ 0, got {raw!r}")
    return value


def _restore(path: Any, model: torch.nn.Module, optimizers) -> int:
    """Loads a watch checkpoint (Run.checkpoint's payload) into `model` and `optimizers`; returns its step.
    Every part is checked before anything is loaded, so a refused checkpoint changes nothing it can help."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"watch: resume checkpoint {str(file)!r} does not exist")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    payload = torch.load(file, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or not {"model", "optimizer", "step"} <= payload.keys():
        raise ValueError(f"watch: {str(file)!r} is not a muonscope checkpoint (needs model, optimizer and step)")
    step = payload["step"]
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        raise ValueError(f"watch: the checkpoint's step must be an integer ≥ 0, got {step!r}")
    states = payload["optimizer"] if isinstance(payload["optimizer"], list) else [payload["optimizer"]]
    if len(states) != len(optimizers):
        raise ValueError(f"watch: the checkpoint holds {len(states)} optimizer state(s), the run has {len(optimizers)}")
    model.load_state_dict(payload["model"])
    for o, st in zip(optimizers, states):
        o.load_state_dict(st)
    return step


def _task_name(task: Any, default: str) -> str:
    """The config's task as a name: a string as it is, an object's `name` or `type`, else the run's name."""
    if isinstance(task, str):
        return task[:200]
    if isinstance(task, dict):
        return str(task.get("name") or task.get("type") or default)[:200]
    return default[:200]


def _weak(run: Run, method):
    """A hook that does not keep the run alive (the optimizer holds its hooks)."""
    ref = weakref.ref(run)

    def call(*args):
        r = ref()
        return None if r is None else method(r, *args)

    return call
