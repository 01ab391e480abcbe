"""Gradient noise for free under DDP (docs/python.md, "Data parallel"; docs/algorithms.md §5.1).

Before DDP's all-reduce each of the R ranks holds the mean gradient g_r of its own b examples: R independent
small batches at the same weights, and their mean (what the all-reduce gives) is a batch of R·b. So
|g_small|² = mean_r |g_r|² (batch b) and |g_big|² = |mean_r g_r|² (batch R·b) are the two batch sizes of
McCandlish et al.'s estimator (diagnostics.two_batch_estimate), with no held-out data and no extra backward.

A DDP communication hook sees each bucket's local gradients before the all-reduce and the averaged ones
after it. On a measured step it adds up, over the buckets, the local squared norm (read before the
reduction) and the reduced one (read after); every other step it is the plain average all-reduce and,
on rank 0, the reduced norm alone, which stands in for watch's per-step non-finite check of the
gradients (one norm per bucket, against one per parameter). The reduction itself is never changed, so every rank ends with exactly the gradient DDP gives
without a hook (it multiplies by 1/R as DDP's built-in reduction does; torch's allreduce_hook divides by R,
which differs in the last bits when R is not a power of two): the local sums are not put into the bucket (a longer tensor can move a ring all-reduce's
chunk boundaries, and with it the order in which some elements are summed, for R > 2) but ride on the
next step boundary's exchange that watch does anyway (distributed.start_exchange), so a measured step costs
two norms per bucket and no extra collective.

Which steps are measured is decided on every rank alike (``arm``: the diagnostics' K-step points, from the
step count and settings every rank shares), since a rank's local sum must be there when the others gather it.
"""
from __future__ import annotations

import math
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

    def __init__(self, world: int, batch_size: int, window_steps: int, process_group=None, check_finite: bool = False):
        if not (isinstance(world, int) and world >= 2):
            raise ValueError(f"RankNoise: needs at least 2 ranks, got {world!r}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"RankNoise: batch_size (examples per rank per step) must be an integer ≥ 1, got {batch_size!r}")
        self.world = world
        self.batch_size = batch_size
        self.process_group = process_group
        self.window = dg.NoiseWindow(window_steps)
        self.armed = False
        # Bucket index → local |g_r|² (measured steps) and reduced |mean g|² (measured steps, and every step
        # where the reduced norms stand in for watch's non-finite check); by index, so a bucket reduced
        # twice in a step (two backwards without no_sync) counts once, with its last gradient.
        self.local: Dict[int, torch.Tensor] = {}
        self.reduced: Dict[int, torch.Tensor] = {}
        self.check_finite = bool(check_finite)

    # ---- the hook (runs inside the backward, on every rank) ----

    def hook(self, state, bucket):  # unannotated: DDP checks annotations against real types, not strings
        buf = bucket.buffer()
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        armed = self.armed
        index = bucket.index()
        if armed:
            self.local[index] = _sq(buf)
        # DDP's built-in reduction, bit for bit: ×(1/R) (as the reducer scales each gradient into its bucket),
        # then a sum all-reduce. Python's 1/R is cast to the buffer's type, as the reducer's wrapped scalar is.
        buf.mul_(1.0 / group.size())
        fut = dist.all_reduce(buf, group=group, async_op=True).get_future()
        if not (armed or self.check_finite):
            return fut.then(lambda f: f.value()[0])

        def done(f):
            out = f.value()[0]
            self.reduced[index] = _sq(out)
            return out

        return fut.then(done)

    # ---- the step boundary (every rank) ----

    def arm(self, on: bool) -> None:
        """Whether the next backward is measured; every rank must be given the same answer."""
        self.armed = bool(on)

    def reduced_finite(self) -> Optional[bool]:
        """At the step boundary: whether every bucket DDP reduced in this step's backward is finite, from
        the reduced squared norms (float64: a float32 gradient's cannot overflow); None when no bucket was
        reduced (a backward without DDP's sync), and the caller checks the gradients themselves."""
        if not self.reduced:
            return None
        # One read per bucket (a handful): cheaper than stacking them into a tensor to test.
        return all(math.isfinite(float(v)) for v in self.reduced.values())

    def discard(self) -> None:
        self.local.clear()
        self.reduced.clear()

    def take(self) -> Optional[Tuple[float, float]]:
        """After the update: the measured step's sums over its buckets, (Σ local |g_r|², Σ reduced |mean g|²),
        or None when it was not measured; the buckets are emptied for the next step. The local sum rides
        on the next step boundary's exchange (distributed.py), where rank 0 gets every rank's."""
        local, reduced = self.local, self.reduced
        self.local, self.reduced = {}, {}
        if not local:
            return None
        return (float(sum(float(v) for v in local.values())), float(sum(float(reduced[i]) for i in local)))

    def finish(self, step: int, reduced_sq: float, locals_: List[float]) -> Dict[str, object]:
        """Rank 0, after the exchange: the measurement of `step` (its reduced sum from take, every rank's
        local sum) into the window, and its `noise` record."""
        small_sq = sum(locals_) / len(locals_)
        sample = dg.two_batch_estimate(small_sq, self.batch_size, reduced_sq, self.world * self.batch_size)
        self.window.add(step, sample)
        avg = self.window.average()
        return {"kind": "noise", "step": step, "layer": None, "estimator": "ranks", "ranks": self.world,
                "bSimple": avg["bSimple"], "bSimpleLatest": dg.b_simple(sample), "batchSize": self.world * self.batch_size,
                "gradSq": avg["gradSq"], "traceSigma": avg["traceSigma"],
                "windowSteps": self.window.steps, "windowCount": avg["count"]}


def attach(model: object, world: int, batch_size: Optional[int], window_steps: int,
           warn: Callable[[str, str], None], check_finite: bool = False) -> Optional[RankNoise]:
    """Registers the estimator's comm hook on a DDP `model` with R = `world` ≥ 2 ranks and returns its state;
    None (with a warning through `warn(code, message)` where the user would want to know) when it cannot run.
    `check_finite`: the hook also takes each reduced bucket's norm at every step (RankNoise.reduced_finite),
    for rank 0's non-finite check."""
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
    state = RankNoise(world, batch_size, window_steps, getattr(model, "process_group", None), check_finite)
    try:
        model.register_comm_hook(None, state.hook)
    except RuntimeError as e:  # a builtin hook, or one registered on the reducer directly
        warn("DDP_NOISE_HOOK_TAKEN", f"cannot register the gradient-noise communication hook ({e}); "
             "gradient noise from the ranks is not measured")
        return None
    return state
