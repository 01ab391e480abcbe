"""Data-parallel runs for `npm run bench:torch`: what watch costs a DDP run, and how the diagnostics' cost per
rank changes with the number of ranks.

Usage: python test/bench/torch_ddp_bench.py WORLD MODE STEPS  → one JSON line on stdout.

WORLD ranks (torch.multiprocessing, gloo on the CPU, one thread each so that ranks do not share cores) train
examples/torch/train.py's GPT (its default size) with DynMuon on the hidden matrices and AdamW on the rest,
each rank its own batches (DDP), the curvature probe a probe of parts (`probe(part, parts)`, docs/python.md:
with R ranks each measures on 1/R of the held-out batch). MODE:
- `plain`: no watch;
- `watch`: watch at its default cadence (diagnostics every 100 steps within its 4% budget, which its hooks
  are charged to as well);
- `diag`: watch with the diagnostics every 10 steps and the budget off (every due diagnostic runs), so that
  runs at different WORLD do the same diagnostics work: (wall(diag) − wall(plain)) per step is what the
  diagnostics cost each rank (the ranks wait for one another at each all-reduce).
`wall_s` is rank 0's wall time of the training loop (model built, watch started, every step), the slowest
rank's being the same within the last step's all-reduce. Records go to a run folder (no host). A watched run
also reports `own_s`, each rank's time inside watch's own code (torch_watch_bench.time_watch_methods; it
includes the waits in watch's per-step collectives, which without watch would fall in DDP's all-reduce),
and `diag_s`, each rank's time inside the diagnostics (time_diagnostics).
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "torch"))

BATCH, CONTEXT = 16, 64  # per rank


def _rank(rank: int, world: int, mode: str, steps: int, init: str, out: str, result) -> None:
    os.environ["MUONSCOPE_NO_HOST"] = "1"
    torch.set_num_threads(1)
    import muonscope
    import train  # examples/torch/train.py

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        data = train.CharData(train.DATA, CONTEXT)
        model = train.GPT(data.vocab_size, CONTEXT, 64, 3, 4)
        matrices = model.hidden_matrices()
        chosen = {id(p) for p in matrices}
        rest = [p for p in model.parameters() if id(p) not in chosen]
        ddp = DDP(model) if world > 1 else model
        optimizers = [muonscope.DynMuon(matrices, total_steps=steps, lr=0.02), torch.optim.AdamW(rest, lr=3e-3)]
        gen = torch.Generator().manual_seed(1000 + rank)
        val_gen = torch.Generator().manual_seed(1)
        vx, vy = data.batch(data.val, 32, val_gen)
        nx, ny = data.batch(data.val, 64, val_gen)

        def probe(part, parts):  # the underlying module, not the DDP wrapper (docs/python.md, "Data parallel")
            return train.loss_of(model, vx[part::parts], vy[part::parts])

        def noise_probe(i):
            return train.loss_of(model, nx[i * 8:(i + 1) * 8], ny[i * 8:(i + 1) * 8])

        diag = {"every": 10, "adaptive": False} if mode == "diag" else {}
        own, diag_s = [0.0], [0.0]
        if mode != "plain":
            from torch_watch_bench import time_watch_methods
            time_watch_methods(own)
            time_diagnostics(diag_s)
        started = time.perf_counter()
        run = None
        if mode != "plain":
            run = muonscope.watch(ddp, optimizers, total_steps=steps, name=f"ddp-bench-{world}", out=out, host=False,
                                  probe=probe, noise_probe=noise_probe, microbatch_size=8, batch_size=BATCH,
                                  config={"diagnostics": {**diag, "microbatches": 8}})
        for _ in range(steps):
            x, y = data.batch(data.train, BATCH, gen)
            loss = train.loss_of(ddp, x, y)
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            loss.backward()
            if run is not None:
                run.log(loss=loss)
            for o in optimizers:
                o.step()
        if run is not None:
            run.close()
        dist.barrier()
        wall = time.perf_counter() - started
        result.put((rank, wall, own[0], diag_s[0]))
    finally:
        dist.destroy_process_group()


def time_diagnostics(total: list) -> None:
    """Adds this rank's wall time inside the observer's after_step (every due diagnostic: this rank's share,
    the gather of the shares and the noise all-reduce, rank 0's writing) to total[0]: the diagnostics' wall
    time per rank measured where it is spent, which needs no run without watch to subtract."""
    from muonscope.observer import Observer
    inner = Observer.after_step

    def timed(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(self, *args, **kwargs)
        finally:
            total[0] += time.perf_counter() - started
    Observer.after_step = timed


def main() -> None:
    world, mode, steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    if mode not in ("plain", "watch", "diag") or world < 1 or steps < 1:
        raise SystemExit("usage: torch_ddp_bench.py WORLD plain|watch|diag STEPS")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = mp.get_context("spawn")
        result = ctx.Queue()
        init = (Path(tmp) / "pg").as_uri()
        mp.start_processes(_rank, args=(world, mode, steps, init, str(Path(tmp) / "runs"), result), nprocs=world, start_method="spawn")
        per_rank = sorted(result.get(timeout=5) for _ in range(world))
    wall = per_rank[0][1]
    own = [r[2] for r in per_rank] if mode != "plain" else None
    diag = [r[3] for r in per_rank] if mode != "plain" else None
    print(json.dumps({"world": world, "mode": mode, "steps": steps, "wall_s": wall, "own_s": own, "diag_s": diag, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
