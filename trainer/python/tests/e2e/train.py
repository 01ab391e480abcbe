"""A small deterministic torch training script for the end-to-end tests (tests/test_e2e_host.py), run
under `muonscope run -- python train.py ARGS` or on its own.

The data is a pure function of the step: batch `s` is drawn from a generator seeded with `s`, so a run
resumed from a checkpoint at step k (``--resume``) sees exactly the batches the uninterrupted run saw
from step k on — this is how a loop keeps its data in place across a resume (watch.py's docs).

Options (all optional): --model mlp|conv, --opt dynmuon|adamw, --steps N, --sleep S (seconds per step, so
a client has time to act), --checkpoint-at K, --resume FILE, --bad-record-at K (a raw malformed record
over the channel), --nan-at K (a non-finite loss logged, once), --nan-grad-at K (a non-finite gradient
in the first layer, once), --losses FILE (the losses written as JSON at
the end: step → loss), --print-steps (a line on stdout per step), --diag-every K (spectra cadence; 0 = the defaults).
"""
import argparse
import json
import time

import torch
from torch import nn

import muonscope
from muonscope.optim import DynMuon

D_IN, D_HID, D_OUT, BATCH = 8, 16, 4, 32


def build(kind):
    torch.manual_seed(0)
    if kind == "conv":
        # Kernel (6, 2, 3, 3): Muon's matrix is 6 × 18 (rows = out, cols = in·kh·kw).
        return nn.Sequential(nn.Conv2d(2, 6, 3, bias=False), nn.Tanh(), nn.Flatten(), nn.Linear(6 * 4 * 4, D_OUT, bias=False))
    return nn.Sequential(nn.Linear(D_IN, D_HID, bias=False), nn.Tanh(), nn.Linear(D_HID, D_OUT, bias=False))


def batch(kind, step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(BATCH, 2, 6, 6, generator=g) if kind == "conv" else torch.randn(BATCH, D_IN, generator=g)
    flat = x.flatten(1)
    y = torch.sin(flat[:, :D_OUT] * 1.5) + 0.1 * torch.randn(BATCH, D_OUT, generator=g)
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=["mlp", "conv"])
    ap.add_argument("--opt", default="dynmuon", choices=["dynmuon", "adamw"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--checkpoint-at", type=int, default=-1)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--bad-record-at", type=int, default=-1)
    ap.add_argument("--nan-at", type=int, default=-1)
    ap.add_argument("--nan-grad-at", type=int, default=-1)
    ap.add_argument("--losses", default=None)
    ap.add_argument("--diag-every", type=int, default=0)
    ap.add_argument("--print-steps", action="store_true")
    ap.add_argument("--out", default="runs")
    a = ap.parse_args()

    model = build(a.model)
    if a.opt == "dynmuon":
        opt = DynMuon(model.parameters(), lr=0.02, momentum=0.9, total_steps=a.steps, schedule={"type": "linear", "from": 0.5, "to": 0.0})
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    config = {"task": {"name": f"e2e-{a.model}"}}
    if a.diag_every:
        config["diagnostics"] = {"every": a.diag_every, "adaptive": False, "curvature": False, "noise": False}
    losses = {}
    done = set()
    run = muonscope.watch(model, opt, total_steps=a.steps, name=f"e2e-{a.model}", config=config, out=a.out, resume=a.resume)
    with run:
        step = run.steps_done  # 0, or the checkpoint's step when resumed
        while step < a.steps and not run.should_stop:
            x, y = batch(a.model, step)
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            logged = loss
            if step == a.nan_at and "nan" not in done:  # once: the retried step after a resume is clean
                done.add("nan")
                logged = float("nan")
            if step == a.nan_grad_at and "grad" not in done:
                done.add("grad")
                with torch.no_grad():
                    model[0].weight.grad.view(-1)[0] = float("inf")
            if step == a.bad_record_at and run.channel is not None:
                run.channel.send_record({"kind": "step", "step": step, "loss": "not a number", "lr": 0.1, "p": None, "stepMs": 1})
            run.log(loss=logged)
            before = run.steps_done
            opt.step()
            if run.steps_done == before:  # the update was skipped (non-finite): the same batch again
                continue
            losses[step] = loss.item()
            step = run.steps_done
            if a.print_steps:
                print(f"e2e train: step {step - 1} loss {losses[step - 1]:.6f}", flush=True)
            if step == a.checkpoint_at:
                run.checkpoint("e2e")
            if a.sleep:
                time.sleep(a.sleep)
    if a.losses:
        with open(a.losses, "w") as f:
            json.dump({str(k): v for k, v in losses.items()}, f)
    try:  # under a host that was killed, stdout is a broken pipe
        print(f"e2e train: done at step {run.steps_done}, state {run.state}", flush=True)
    except OSError:
        pass


if __name__ == "__main__":
    main()
