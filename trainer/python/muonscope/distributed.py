"""Data-parallel runs (DDP under torchrun or mp.spawn): torch.distributed is the engine, this module only
asks it who we are and moves the little that watch needs between ranks (docs/python.md, "Data parallel").

Rank 0 is the run: it alone talks to the host or writes the run folder, takes the commands and computes
the records. The other ranks follow it at every step boundary: rank 0 broadcasts the commands it applies
there (``broadcast``), every rank applies the same ones, and each rank's step time is gathered to rank 0
for the step record (``gather_step_ms``). Every function here is a no-op answer when torch.distributed is
not initialized or has one process, so a single-process run never calls a collective.
"""
from __future__ import annotations

from typing import Any, List, Optional

import torch

try:
    import torch.distributed as dist
except ImportError:  # a torch built without distributed support
    dist = None  # type: ignore[assignment]


def is_distributed() -> bool:
    """True when torch.distributed is initialized with more than one process."""
    return dist is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_leader() -> bool:
    """Rank 0 (or a single process): the one that talks to the host and writes records."""
    return rank() == 0


def _device() -> torch.device:
    # NCCL moves only CUDA tensors; gloo (and mpi) take CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def broadcast(payload: Any = None) -> Any:
    """Rank 0's `payload` on every rank (picklable; the others pass None). Used at each step boundary
    for the commands that apply there, so every rank applies the same ones at the same step."""
    if not is_distributed():
        return payload
    box: List[Any] = [payload if is_leader() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_step_ms(step_ms: float) -> Optional[List[float]]:
    """Every rank's step wall time (ms), in rank order, on rank 0 (None elsewhere).

    One all_gather of a one-element float64 tensor per step: next to DDP's gradient all-reduce of every
    parameter each step it is noise, and on CUDA the sync it forces is one run.log(loss=…) already makes
    (it reads the loss as a float), so there is no need for a cadence. all_gather rather than gather:
    every backend has it (gather is missing from NCCL in older torch)."""
    every = gather_step(step_ms)
    return [ms for ms, _ in every] if every is not None else None


def gather_step(step_ms: float, extra: float = 0.0) -> Optional[List[tuple]]:
    """gather_step_ms with one more float per rank riding on the same all_gather: (step ms, extra) per
    rank, in rank order, on rank 0 (None elsewhere). The extra is this rank's local gradient squared norm
    on a step the DDP noise estimator measures (ddp_noise.py), 0 otherwise: two floats every step, so the
    tensors' shapes never depend on which steps are measured."""
    if not is_distributed():
        return [(float(step_ms), float(extra))]
    mine = torch.tensor([float(step_ms), float(extra)], dtype=torch.float64, device=_device())
    every = [torch.empty_like(mine) for _ in range(world_size())]
    dist.all_gather(every, mine)
    return [tuple(float(v) for v in t.tolist()) for t in every] if is_leader() else None


def gather_objects(obj: Any) -> Optional[List[Any]]:
    """Every rank's `obj` (picklable), in rank order, on rank 0 (None elsewhere): the diagnostics' shares
    (observer.py), a few records per rank on a diagnostics step. all_gather_object rather than
    gather_object, for the reason gather_step gives."""
    if not is_distributed():
        return [obj]
    every: List[Any] = [None] * world_size()
    dist.all_gather_object(every, obj)
    return every if is_leader() else None
