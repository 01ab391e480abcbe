"""Muonscope for Lightning (``lightning.pytorch``, or the older ``pytorch_lightning``), in one line:

    from muonscope.integrations.lightning import MuonscopeCallback
    trainer = lightning.Trainer(..., callbacks=[MuonscopeCallback()])   # watch kwargs: MuonscopeCallback(out=..., host=False)

At on_train_start (the optimizers exist by then) the callback calls ``muonscope.watch`` on the
LightningModule and the trainer's torch optimizer(s), with total_steps = the trainer's stepping batches
(max_steps, or what max_epochs gives) less ``global_step``. Constructor keywords go to watch.

* **Step order.** In automatic optimization Lightning runs the training step (forward, backward) as a
  closure *inside* ``optimizer.step``, i.e. after watch's pre-hook. The callback wraps the optimizer's
  ``step`` on the instance so the closure runs first and the hooked step after it: the pre-hook's
  commands, pause, non-finite checks and diagnostics then see this step's gradients, and the closure's
  loss is logged before the update (LBFGS, which calls its closure several times, keeps it inside).
  Otherwise (e.g. under mixed precision, where Lightning runs the closure itself) the loss comes from
  on_train_batch_end's outputs. With accumulate_grad_batches > 1 it is Lightning's loss of the last
  micro-batch.
* **Eval**: ``val_loss`` in ``trainer.callback_metrics`` at on_validation_epoch_end (``self.log("val_loss", ...)``
  in validation_step) becomes an `eval` record; the sanity check's is skipped.
* **Stop** from the dashboard: ``trainer.should_stop = True`` as soon as ``run.should_stop``; a stop
  applied at the step boundary skips that update instead of raising StopTraining, so ``fit`` returns
  normally. **Pause** blocks in the optimizer step.
* **set_lr** scales the configured lr schedulers' base (``base_lrs``), as for 🤗 (see _common.py).
* The run is closed at on_train_end, or with the error at on_exception.
"""
from __future__ import annotations

from typing import Any, Optional

import torch

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    from pytorch_lightning import Callback

from ..watch import watch
from . import _common


def _loss_of(outputs: Any) -> Optional[torch.Tensor]:
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    return outputs if isinstance(outputs, (torch.Tensor, float, int)) and not isinstance(outputs, bool) else None


class MuonscopeCallback(Callback):
    def __init__(self, name: str = "lightning", **watch_kwargs: Any):
        super().__init__()
        self.name = name
        self.watch_kwargs = watch_kwargs
        self.run = None
        self._logged = False  # the loss of the step under way was logged from the closure

    def on_train_start(self, trainer, pl_module) -> None:
        if self.run is not None:
            return
        opts = [_common.unwrap_optimizer(o) for o in trainer.optimizers]
        if not opts:
            return  # nothing steps: nothing to watch
        stepping = trainer.max_steps if trainer.max_steps not in (None, -1) else trainer.estimated_stepping_batches
        total = stepping - trainer.global_step if stepping != float("inf") else 0
        if total < 1:
            raise ValueError("MuonscopeCallback: the run needs a finite number of steps (set max_steps or max_epochs)")
        self.run = watch(pl_module, opts if len(opts) > 1 else opts[0], total_steps=int(total), name=self.name, **self.watch_kwargs)
        _common.attach(self.run, opts, lambda: [c.scheduler for c in getattr(trainer, "lr_scheduler_configs", [])],
                       closure_first=self._closure_loss)

    def _closure_loss(self, result: Any) -> None:
        loss = _loss_of(result)
        if loss is not None and not _common.ended(self.run):
            self.run.log(loss=loss)
            self._logged = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.run is None:
            return
        if not self._logged and not _common.ended(self.run):
            loss = _loss_of(outputs)
            if loss is not None:
                self.run.log(loss=loss)
        self._logged = False
        if self.run.should_stop:
            trainer.should_stop = True

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.run is None or trainer.sanity_checking or _common.ended(self.run):
            return
        v = trainer.callback_metrics.get("val_loss")
        if v is not None:
            self.run.log(val_loss=v)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.run is not None:
            self.run.close()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.run is not None:
            self.run.close(exception)
