"""The 🤗 Trainer and Lightning callbacks (muonscope/integrations): a run folder per training, a dashboard
stop ending the trainer cleanly, and set_lr carried into the trainer's lr schedule. Tiny randomly
initialised models on CPU; skipped where the optional `integrations` extra is not installed."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

MAX_STEPS = 6
BASE_LR = 1e-2
NEW_LR = 0.05
SET_AT = 2  # set_lr / stop are applied at the boundary before this step


def read_log(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "log.ndjson").read_text().splitlines()]


def command(run, kind, **fields):
    """Applies a command as the run does at a step boundary (no host in these tests)."""
    run._apply({"type": "command", "id": f"t-{kind}", "command": {"kind": kind, **fields}, "source": "test"})


def expected_lr(step):
    """A linear decay to 0 over MAX_STEPS from BASE_LR, scaled at SET_AT so that step's lr is NEW_LR."""
    if step < SET_AT:
        return BASE_LR * (MAX_STEPS - step) / MAX_STEPS
    return NEW_LR * (MAX_STEPS - step) / (MAX_STEPS - SET_AT)


def check_finished(run_dir, eval_records=True):
    log = read_log(run_dir)
    assert log[0]["kind"] == "run_started" and log[0]["totalSteps"] == MAX_STEPS
    steps = [r for r in log if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(MAX_STEPS))
    assert all(isinstance(r["loss"], float) and r["loss"] > 0 for r in steps)
    assert log[-1]["kind"] == "state" and log[-1]["state"] == "finished"
    if eval_records:
        assert [r for r in log if r["kind"] == "eval"], "no eval record"
    return log


# ---------------------------------------------------------------- 🤗 transformers


def hf_setup(tmp_path, callbacks, **extra):
    transformers = pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=16))
    gen = torch.Generator().manual_seed(1)
    model.config.bos_token_id = model.config.eos_token_id = None  # the vocabulary is tiny
    data = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 50, (64, 16), generator=gen)]
    settings = dict(output_dir=str(tmp_path / "hf"), max_steps=MAX_STEPS, logging_steps=1, report_to=[], use_cpu=True,
                    per_device_train_batch_size=4, learning_rate=BASE_LR, lr_scheduler_type="linear", warmup_steps=0,
                    save_strategy="no", disable_tqdm=True)
    args = TrainingArguments(**{**settings, **extra})
    return Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8], callbacks=callbacks)


def hf_callback(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer's own requirement
    from muonscope.integrations.transformers import MuonscopeCallback
    return MuonscopeCallback(name="hf", out=str(tmp_path / "runs"), host=False)


def test_hf_trainer_writes_the_run(tmp_path):
    cb = hf_callback(tmp_path)
    # logging_steps=3: the callback still has the Trainer log every step, as each step record needs its loss.
    trainer = hf_setup(tmp_path, [cb], eval_strategy="steps", eval_steps=3, logging_steps=3)
    trainer.train()
    log = check_finished(cb.run.run_dir)
    assert log[0]["config"]["name"] == "hf"


def test_hf_stop_ends_the_trainer_cleanly(tmp_path):
    cb = hf_callback(tmp_path)
    from transformers import TrainerCallback

    class Stopper(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            if state.global_step == SET_AT:
                command(cb.run, "stop")  # applied before the step's update: the pre-hook's StopTraining

    trainer = hf_setup(tmp_path, [cb, Stopper()])
    trainer.train()  # no StopTraining escapes
    assert trainer.state.global_step < MAX_STEPS
    log = read_log(cb.run.run_dir)
    assert [r["step"] for r in log if r["kind"] == "step"] == list(range(SET_AT))
    assert log[-1]["kind"] == "state" and log[-1]["state"] == "stopped"


def test_hf_set_lr_scales_the_linear_schedule(tmp_path):
    cb = hf_callback(tmp_path)
    from transformers import TrainerCallback

    class SetLr(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == SET_AT:  # after step SET_AT-1 and the scheduler's step
                command(cb.run, "set_lr", lr=NEW_LR)

    trainer = hf_setup(tmp_path, [cb, SetLr()])
    trainer.train()
    log = read_log(cb.run.run_dir)
    lrs = [r["lr"] for r in log if r["kind"] == "step"]
    assert lrs == pytest.approx([expected_lr(s) for s in range(MAX_STEPS)], rel=1e-6)
    assert [r["new"] for r in log if r["kind"] == "control" and r.get("field") == "lr"] == [NEW_LR]


# ---------------------------------------------------------------- Lightning


def lightning_module():
    try:
        import lightning.pytorch as pl
    except ImportError:
        pl = pytest.importorskip("pytorch_lightning")

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=BASE_LR)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (MAX_STEPS - s) / MAX_STEPS)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return pl, Tiny()


def lightning_fit(tmp_path, extra_callbacks=(), **extra):
    pl, module = lightning_module()
    from muonscope.integrations.lightning import MuonscopeCallback
    torch.manual_seed(0)
    cb = MuonscopeCallback(name="pl", out=str(tmp_path / "runs"), host=False)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=gen)
    ds = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    trainer = pl.Trainer(max_steps=MAX_STEPS, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[cb, *extra_callbacks], **extra)
    trainer.fit(module, loader, torch.utils.data.DataLoader(ds, batch_size=16))
    return trainer, cb


def test_lightning_writes_the_run(tmp_path):
    trainer, cb = lightning_fit(tmp_path, val_check_interval=3)
    log = check_finished(cb.run.run_dir)
    assert log[0]["config"]["name"] == "pl"


def test_lightning_stop_ends_fit_cleanly(tmp_path):
    pl, _ = lightning_module()
    holder = {}

    class Stopper(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == SET_AT:
                command(holder["cb"].run, "stop")

        def on_train_start(self, trainer, pl_module):
            holder["cb"] = next(c for c in trainer.callbacks if type(c).__name__ == "MuonscopeCallback")

    trainer, cb = lightning_fit(tmp_path, [Stopper()], num_sanity_val_steps=0, limit_val_batches=0)
    assert trainer.global_step < MAX_STEPS
    log = read_log(cb.run.run_dir)
    assert [r["step"] for r in log if r["kind"] == "step"] == list(range(SET_AT))
    assert log[-1]["kind"] == "state" and log[-1]["state"] == "stopped"


def test_lightning_set_lr_scales_the_schedule(tmp_path):
    pl, _ = lightning_module()

    class SetLr(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == SET_AT:
                cb = next(c for c in trainer.callbacks if type(c).__name__ == "MuonscopeCallback")
                command(cb.run, "set_lr", lr=NEW_LR)

    trainer, cb = lightning_fit(tmp_path, [SetLr()], num_sanity_val_steps=0, limit_val_batches=0)
    log = read_log(cb.run.run_dir)
    lrs = [r["lr"] for r in log if r["kind"] == "step"]
    assert lrs == pytest.approx([expected_lr(s) for s in range(MAX_STEPS)], rel=1e-6)


def test_lightning_step_boundary_sees_this_steps_loss(tmp_path):
    """The training step runs before the hooked optimizer step, so a non-finite loss skips its own update
    (without the reordering, Lightning's closure would run after watch's pre-hook and the update be made)."""
    pl, _ = lightning_module()

    class NanAt(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            forward = pl_module.training_step
            pl_module.training_step = lambda *a, **k: forward(*a, **k) * (float("nan") if trainer.global_step == SET_AT else 1.0)

    trainer, cb = lightning_fit(tmp_path, [NanAt()], num_sanity_val_steps=0, limit_val_batches=0)
    log = read_log(cb.run.run_dir)
    alerts = [r for r in log if r["kind"] == "alert" and r["code"] == "NON_FINITE_LOSS"]
    assert len(alerts) == 1 and "the update was skipped" in alerts[0]["message"]
    assert len([r for r in log if r["kind"] == "step"]) == MAX_STEPS - 1


def test_set_lr_refused_when_the_schedule_cannot_follow(tmp_path):
    """No trainer needed: a scheduler with no base to scale, or an lr of 0, refuses set_lr, nothing changed."""
    import muonscope
    from muonscope.integrations import _common

    model = nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=BASE_LR)

    class Opaque:  # a scheduler of unknown kind: it would set its own lr at its next step
        optimizer = opt

        def step(self):
            pass

    schedulers = [Opaque()]
    run = muonscope.watch(model, opt, total_steps=2, out=str(tmp_path), host=False)
    _common.attach(run, [opt], lambda: schedulers)
    command(run, "set_lr", lr=NEW_LR)
    assert opt.param_groups[0]["lr"] == BASE_LR
    schedulers[:] = [torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.0)]  # the lr is 0 now
    command(run, "set_lr", lr=NEW_LR)
    assert opt.param_groups[0]["lr"] == 0.0
    schedulers[:] = []  # no scheduler: set_lr as watch does it
    command(run, "set_lr", lr=NEW_LR)
    assert opt.param_groups[0]["lr"] == NEW_LR
    run.close()
    controls = [r for r in read_log(run.run_dir) if r["kind"] == "control"]
    assert [c["new"] for c in controls] == [NEW_LR]
