"""Data-parallel runs (DDP under torchrun or mp.spawn): torch.distributed is the engine, this module only
asks it who we are and moves the little that watch needs between ranks (docs/python.md, "Data parallel").

Rank 0 is the run: it alone talks to the host or writes the run folder, takes the commands and computes
the records. The other ranks follow it at every step boundary, through one collective started after each
step and waited for at the next boundary (``start_exchange``): rank 0's commands and plan go to every
rank, which applies the same ones, and every rank's wall time of the step comes back with it for that
step's `rank_times` record. Every function here is a no-op answer when torch.distributed is
not initialized or has one process, so a single-process run never calls a collective.
"""
from __future__ import annotations

import math
import pickle
import struct
from typing import Any, List, NamedTuple, Optional, Tuple

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


# The one collective of a step boundary (`start_exchange`): every rank's slot holds the previous step's wall time
# and one float riding with it, this rank's flags, and (rank 0's) the commands and state, pickled.
_HEADER = struct.Struct("<ddBI")  # step ms (NaN: none), extra, flags, payload bytes
# Room for rank 0's payload inside the all_gather. The usual one (no command, state unchanged) is ~150
# bytes and a set_schedule ~400; a longer one follows in a broadcast that every rank joins.
PAYLOAD_ROOM = 1024
LOSS_NOT_FINITE = 1  # flags: this rank's logged loss (before the update) is not finite


class Slot(NamedTuple):
    """One rank's part of an exchange: the previous step's wall time (None when there was none), the
    float riding with it, and its flags."""
    step_ms: Optional[float]
    extra: float
    flags: int


class PendingExchange:
    """An exchange under way (start_exchange); `wait()` gives every rank's Slot and rank 0's payload."""

    def __init__(self, work, every: List[torch.Tensor], payload: Any, leader: bool,
                 done: Optional[Tuple[List[Slot], Any]] = None):
        self._work, self._every, self._payload, self._leader, self._done = work, every, payload, leader, done

    def wait(self) -> Tuple[List[Slot], Any]:
        if self._done is not None:
            return self._done
        self._work.wait()
        # One copy to the host (one sync under NCCL), read as bytes (numpy is not a dependency).
        raw = bytes(torch.cat(self._every).cpu().tolist())
        size = len(raw) // len(self._every)
        heads = [_HEADER.unpack_from(raw, r * size) for r in range(len(self._every))]
        slots = [Slot(None if math.isnan(ms) else ms, ex, fl) for ms, ex, fl, _ in heads]
        length = heads[0][3]
        if length > PAYLOAD_ROOM:  # rank 0's payload did not fit: every rank saw its length, every rank joins
            self._done = (slots, broadcast(self._payload))
        elif self._leader:
            self._done = (slots, self._payload)
        else:
            self._done = (slots, pickle.loads(raw[_HEADER.size:_HEADER.size + length]))
        return self._done


def start_exchange(step_ms: Optional[float], extra: float = 0.0, flags: int = 0, payload: Any = None) -> PendingExchange:
    """Every rank's Slot, in rank order, and rank 0's `payload` (picklable; the others pass None), on every
    rank, once `wait()`ed: the one collective of watch's step boundary (watch.py).

    Started after a step's update and waited for before the next one's, so that it travels while the next
    forward and backward run: watch then has no collective of its own that the ranks wait in. It replaced
    a broadcast of the commands at the boundary (broadcast_object_list, two collectives) and an all_gather
    of the step times after the update, which cost ~1.4 ms of gloo latency a step here and made the ranks
    wait out the optimizer's skew. One all_gather of a fixed-size byte tensor, with every rank's slot:
    every backend has all_gather (gather is missing from NCCL in older torch), and every rank sees every
    rank's flags, so a decision made from them is the same on every rank. Every rank must start it at the
    same point and wait for it (collectives are matched in the order they are issued)."""
    if not is_distributed():
        return PendingExchange(None, [], payload, True, ([Slot(step_ms, float(extra), int(flags))], payload))
    leader = dist.get_rank() == 0  # asked once: every step pays for these questions
    body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL) if leader else b""
    mine = bytearray(_HEADER.size + PAYLOAD_ROOM)
    mine[:_HEADER.size] = _HEADER.pack(math.nan if step_ms is None else float(step_ms), float(extra), int(flags), len(body))
    if len(body) <= PAYLOAD_ROOM:
        mine[_HEADER.size:_HEADER.size + len(body)] = body
    tensor = torch.frombuffer(mine, dtype=torch.uint8).to(_device())
    every = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    work = dist.all_gather(every, tensor, async_op=True)
    return PendingExchange(work, every, payload if leader else None, leader)


def gather_objects(obj: Any) -> Optional[List[Any]]:
    """Every rank's `obj` (picklable), in rank order, on rank 0 (None elsewhere): the diagnostics' shares
    (observer.py), a few records per rank on a diagnostics step. all_gather_object rather than
    gather_object, for the reason start_exchange gives."""
    if not is_distributed():
        return [obj]
    every: List[Any] = [None] * world_size()
    dist.all_gather_object(every, obj)
    return every if is_leader() else None
