"""Gradient noise for free under DDP (docs/python.md, "Data parallel"; docs/algorithms.md §5.1).

Before DDP's all-reduce each of the R ranks holds the mean gradient g_r of its own b examples: R independent
small batches at the same weights, and their mean (what the all-reduce gives) is a batch of R·b. So
|g_small|² = mean_r |g_r|² (batch b) and |g_big|² = |mean_r g_r|² (batch R·b) are the two batch sizes of
McCandlish et al.'s estimator (diagnostics.two_batch_estimate), with no held-out data and no extra backward.

A DDP communication hook sees each bucket's local gradients before the all-reduce and the averaged ones
after it. On a measured step it adds up, over the buckets, the local squared norm (read before the
reduction) and the reduced one (read after); every other step it is the plain average all-reduce and
nothing more. The reduction itself is never changed, so every rank ends with exactly the gradient DDP gives
without a hook (it multiplies by 1/R as DDP's built-in reduction does; torch's allreduce_hook divides by R,
which differs in the last bits when R is not a power of two): the local sums are not put into the bucket (a longer tensor can move a ring all-reduce's
chunk boundaries, and with it the order in which some elements are summed, for R > 2) but ride on the
per-step all_gather of step times that watch does anyway (distributed.gather_step), so a measured step
costs two norms per bucket and no extra collective.

Which steps are measured is decided on every rank alike (``arm``: the diagnostics' K-step points, from the
step count and settings every rank shares), since a rank's local sum must be there when the others gather it.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch

from . import diagnostics as dg

try:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
except ImportError:  # a torch built without distributed support
    dist = None  # type: ignore[assignment]
    DistributedDataParallel = None  # type: ignore[assignment,misc]


def is_ddp(model: object) -> bool:
    return DistributedDataParallel is not None and isinstance(model, DistributedDataParallel)


def _sq(x: torch.Tensor) -> torch.Tensor:
    # In float64 without a float64 copy of the bucket; stays on the device (no sync inside the backward).
    return torch.linalg.vector_norm(x, dtype=torch.float64).square()


class RankNoise:
    """The hook's state and the window of measurements (every rank keeps one; rank 0's is the one logged)."""

    def __init__(self, world: int, batch_size: int, window_steps: int, process_group=None):
        if not (isinstance(world, int) and world >= 2):
            raise ValueError(f"RankNoise: needs at least 2 ranks, got {world!r}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"RankNoise: batch_size (examples per rank per step) must be an integer ≥ 1, got {batch_size!r}")
        self.world = world
        self.batch_size = batch_size
        self.process_group = process_group
        self.window = dg.NoiseWindow(window_steps)
        self.armed = False
        # bucket index → (local |g_r|², reduced |mean g|²); by index, so a bucket reduced twice in a step
        # (two backwards without no_sync) counts once, with its last gradient.
        self.buckets: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- the hook (runs inside the backward, on every rank) ----

    def hook(self, state, bucket):  # unannotated: DDP checks annotations against real types, not strings
        buf = bucket.buffer()
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        local = _sq(buf) if self.armed else None
        # DDP's built-in reduction, bit for bit: ×(1/R) (as the reducer scales each gradient into its bucket),
        # then a sum all-reduce. Python's 1/R is cast to the buffer's type, as the reducer's wrapped scalar is.
        buf.mul_(1.0 / group.size())
        fut = dist.all_reduce(buf, group=group, async_op=True).get_future()
        if local is None:
            return fut.then(lambda f: f.value()[0])
        index = bucket.index()

        def done(f):
            out = f.value()[0]
            self.buckets[index] = (local, _sq(out))
            return out

        return fut.then(done)

    # ---- the step boundary (every rank) ----

    def arm(self, on: bool) -> None:
        """Whether the next backward is measured; every rank must be given the same answer."""
        self.armed = bool(on)
        if not self.armed:
            self.buckets.clear()

    def local_sum(self) -> float:
        """This rank's Σ over buckets of |g_r|² for the measured step (0 when none), for the all_gather."""
        return float(sum(float(v[0]) for v in self.buckets.values())) if self.buckets else 0.0

    def discard(self) -> None:
        self.buckets.clear()

    def finish(self, step: int, locals_: Optional[List[float]]) -> Optional[Dict[str, object]]:
        """After the all_gather: the measurement of `step` into the window and its `noise` record (rank 0,
        which has every rank's local sum); None when the step was not measured or no bucket was reduced."""
        buckets, self.buckets = self.buckets, {}
        if not buckets or locals_ is None:
            return None
        small_sq = sum(locals_) / len(locals_)
        big_sq = float(sum(float(v[1]) for v in buckets.values()))
        sample = dg.two_batch_estimate(small_sq, self.batch_size, big_sq, self.world * self.batch_size)
        self.window.add(step, sample)
        avg = self.window.average()
        return {"kind": "noise", "step": step, "layer": None, "estimator": "ranks", "ranks": self.world,
                "bSimple": avg["bSimple"], "bSimpleLatest": dg.b_simple(sample), "batchSize": self.world * self.batch_size,
                "gradSq": avg["gradSq"], "traceSigma": avg["traceSigma"],
                "windowSteps": self.window.steps, "windowCount": avg["count"]}


def attach(model: object, world: int, batch_size: Optional[int], window_steps: int,
           warn: Callable[[str, str], None]) -> Optional[RankNoise]:
    """Registers the estimator's comm hook on a DDP `model` with R = `world` ≥ 2 ranks and returns its state;
    None (with a warning through `warn(code, message)` where the user would want to know) when it cannot run."""
    if not is_ddp(model) or world < 2:
        return None
    if not (isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1):
        warn("DDP_NOISE_NO_BATCH_SIZE", "gradient noise from the ranks needs batch_size (each rank's examples per step) "
             "passed to watch; without it there is no noise record from DDP's all-reduce")
        return None
    if getattr(model, "_comm_hooks", None):
        warn("DDP_NOISE_HOOK_TAKEN", "the DDP model already has a communication hook (DDP allows one); "
             "gradient noise from the ranks is not measured")
        return None
    state = RankNoise(world, batch_size, window_steps, getattr(model, "process_group", None))
    try:
        model.register_comm_hook(None, state.hook)
    except RuntimeError as e:  # a builtin hook, or one registered on the reducer directly
        warn("DDP_NOISE_HOOK_TAKEN", f"cannot register the gradient-noise communication hook ({e}); "
             "gradient noise from the ranks is not measured")
        return None
    return state
