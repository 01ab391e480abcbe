"""A data-parallel run for the end-to-end tests, launched by torchrun (env:// rendezvous) under the host:
gloo on the CPU, a DDP MLP with DynMuon on its matrices and AdamW on the rest, watched on every rank (rank 0
alone reports). `--crash-rank R --crash-at S`: rank R raises at step S, as a rank that dies."""
import argparse

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import muonscope


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--crash-rank", type=int, default=-1)
    ap.add_argument("--crash-at", type=int, default=3)
    a = ap.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same initial weights on every rank, as DDP expects
    model = DDP(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)))
    matrices = [p for p in model.parameters() if p.ndim == 2]
    rest = [p for p in model.parameters() if p.ndim != 2]
    optimizers = [muonscope.DynMuon(matrices, total_steps=a.steps, lr=0.02), torch.optim.AdamW(rest, lr=0.01)]
    gen = torch.Generator().manual_seed(rank + 1)  # each rank its own data
    try:
        with muonscope.watch(model, optimizers, total_steps=a.steps, name="ddp-e2e") as run:
            for step in range(a.steps):
                if rank == a.crash_rank and step == a.crash_at:
                    raise RuntimeError(f"rank {rank} fails on purpose at step {step}")
                x, y = torch.randn(16, 8, generator=gen), torch.randn(16, 4, generator=gen)
                loss = nn.functional.mse_loss(model(x), y)
                for o in optimizers:
                    o.zero_grad()
                loss.backward()
                run.log(loss=loss)
                for o in optimizers:
                    o.step()
        dist.barrier()  # every rank done with every collective before any tears the group down (test_distributed._settle)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
