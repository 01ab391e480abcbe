"""Muonscope for the 🤗 ``transformers.Trainer``, in one line:

    from muonscope.integrations.transformers import MuonscopeCallback
    trainer = Trainer(model, args, ..., callbacks=[MuonscopeCallback()])   # watch kwargs: MuonscopeCallback(out=..., host=False)

When training begins (on_train_begin, or the first on_step_begin if the optimizer is created later) the
callback calls ``muonscope.watch`` on the trainer's model and its torch optimizer (under accelerate's
wrapper), with total_steps = the Trainer's max_steps less the steps already done (a resumed Trainer is a
new Muonscope run counting from 0). Constructor keywords go to watch (name defaults to ``args.run_name``,
batch_size to the global batch).

* **Loss**: the training loss the Trainer logs (on_log ``loss``). Muonscope needs one per step, so the
  callback asks the Trainer to log every step (``control.should_log``) unless ``log_every_step=False``;
  then only logged steps get step records. ``eval_loss`` from on_evaluate becomes an `eval` record.
* **Stop** from the dashboard: ``control.should_training_stop`` as soon as ``run.should_stop``; a stop
  applied at the step boundary skips that update instead of raising StopTraining, so ``trainer.train()``
  returns normally. **Pause** blocks in the optimizer step, as for any loop.
* **set_lr** scales the Trainer's lr scheduler's base (``base_lrs``) by new/old, so the schedule (warmup,
  linear decay, ...) continues from the new level instead of the next ``lr_scheduler.step()`` undoing it;
  schedulers that cannot be scaled refuse set_lr (see _common.py).
* The run is closed at on_train_end; a Trainer that crashes leaves it to watch's at-exit close.
"""
from __future__ import annotations

from typing import Any, Optional

from transformers import TrainerCallback

from ..watch import watch
from . import _common


class MuonscopeCallback(TrainerCallback):
    def __init__(self, name: Optional[str] = None, log_every_step: bool = True, **watch_kwargs: Any):
        self.name = name
        self.log_every_step = log_every_step
        self.watch_kwargs = watch_kwargs
        self.run = None
        self._lr_scheduler = None

    # ---- start ----

    def _start(self, args, state, model, optimizer, lr_scheduler) -> None:
        if self.run is not None or optimizer is None or model is None:
            return
        opt = _common.unwrap_optimizer(optimizer)
        self._lr_scheduler = lr_scheduler
        kwargs = dict(self.watch_kwargs)
        if "batch_size" not in kwargs:
            kwargs["batch_size"] = int(args.per_device_train_batch_size * max(1, args.gradient_accumulation_steps) * max(1, args.world_size))
        name = self.name or (args.run_name if isinstance(getattr(args, "run_name", None), str) and args.run_name else "hf-trainer")
        total = max(1, int(state.max_steps) - int(state.global_step))
        self.run = watch(model, opt, total_steps=total, name=name, **kwargs)
        _common.attach(self.run, [opt], lambda: [self._lr_scheduler])

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        self._start(args, state, model, optimizer, lr_scheduler)

    def on_step_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        if lr_scheduler is not None:
            self._lr_scheduler = lr_scheduler
        self._start(args, state, model, optimizer, lr_scheduler)
        self._check_stop(control)

    # ---- each step ----

    def _check_stop(self, control) -> None:
        if self.run is not None and self.run.should_stop:
            control.should_training_stop = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.run is None:
            return
        if self.log_every_step and not _common.ended(self.run):
            control.should_log = True  # Muonscope's step records need each step's loss
        self._check_stop(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not _common.ended(self.run) and logs and isinstance(logs.get("loss"), (int, float)):
            self.run.log(loss=logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not _common.ended(self.run) and metrics and isinstance(metrics.get("eval_loss"), (int, float)):
            self.run.log(val_loss=metrics["eval_loss"])

    # ---- the end ----

    def on_train_end(self, args, state, control, **kwargs):
        if self.run is not None:
            self.run.close()
