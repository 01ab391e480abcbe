"""Gradient noise from DDP's communication hook (muonscope/ddp_noise.py), on two CPU ranks (gloo,
torch.multiprocessing spawn as in test_distributed.py): the hook leaves every gradient bit for bit what DDP
gives without it; on a linear regression with known noise the ranks' B_simple agrees with the exact value
and with the held-out microbatch estimate of the same run; every record is valid under common/protocol.ts."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import muonscope
from muonscope import diagnostics as dg
from test_watch import protocol_issues, read_log

# Each test spawns two torch processes (about 10 s on a loaded 2-core machine).
pytestmark = [pytest.mark.skipif(not dist.is_available(), reason="torch without torch.distributed"), pytest.mark.slow]

WORLD = 2


def _spawn(fn, tmp_path, *args):
    init = (tmp_path / "pg-init").as_uri()
    mp.start_processes(fn, args=(init, str(tmp_path), *args), nprocs=WORLD, join=True, start_method="spawn")


def _logs(out):
    return {p.parent.name.split("-")[0]: read_log(p.parent) for p in Path(out).glob("*/log.ndjson")}


# ---------- (a) the gradients are DDP's, bit for bit ----------

ID_STEPS = 5


def _id_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))


def _identity_worker(rank, init, tmp, every):
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        out = str(Path(tmp) / "runs")
        data = [(torch.randn(16, 16, generator=torch.Generator().manual_seed(100 * s + rank)),
                 torch.randn(16, 3, generator=torch.Generator().manual_seed(100 * s + rank + 50))) for s in range(ID_STEPS)]

        def train(mode):
            # A small bucket cap: several buckets, so the per-step sums run over more than one.
            model = DDP(_id_model(), bucket_cap_mb=0.001)
            if mode == "allreduce_hook":
                model.register_comm_hook(None, allreduce_hook)
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            run = None
            if mode == "watched":
                run = muonscope.watch(model, opt, total_steps=ID_STEPS, name="watched", host=False, out=out, batch_size=16,
                                      config={"diagnostics": {"every": every, "adaptive": False}})
                assert run._rank_noise is not None
            grads, buckets = [], []
            for x, y in data:
                loss = nn.functional.mse_loss(model(x), y)
                opt.zero_grad()
                loss.backward()
                grads.append([p.grad.detach().clone() for p in model.parameters()])
                buckets.append(len(run._rank_noise.local) if run is not None else 0)
                if run is not None:
                    run.log(loss=loss)
                opt.step()
            if run is not None:
                run.close()
            return {"grads": grads, "params": [p.detach().clone() for p in model.parameters()], "buckets": buckets}

        result = {mode: train(mode) for mode in ("plain", "allreduce_hook", "watched")}

        # A hook already there is kept (DDP allows one): the estimator steps aside with a warning.
        model = DDP(_id_model())
        model.register_comm_hook(None, allreduce_hook)
        run = muonscope.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=1, name="taken",
                              host=False, out=out, batch_size=16)
        result["taken"] = run._rank_noise is None
        run.close()
        # Without batch_size the estimator cannot run: a warning, and no hook.
        model = DDP(_id_model())
        run = muonscope.watch(model, torch.optim.SGD(model.parameters(), lr=0.1), total_steps=1, name="nobatch", host=False, out=out)
        result["nobatch"] = (run._rank_noise is None, len(model._comm_hooks))
        run.close()
        torch.save(result, str(Path(tmp) / f"rank{rank}.pt"))
        dist.barrier()  # no rank tears the group down while another is still in a collective (see below)
    finally:
        dist.destroy_process_group()


def test_the_hook_leaves_ddps_gradients_bit_for_bit_and_steps_aside_for_a_users_hook(tmp_path):
    every = 2
    _spawn(_identity_worker, tmp_path, every)
    for rank in range(WORLD):
        r = torch.load(str(tmp_path / f"rank{rank}.pt"), weights_only=False)
        for other in ("allreduce_hook", "watched"):
            for s in range(ID_STEPS):
                for a, b in zip(r["plain"]["grads"][s], r[other]["grads"][s]):
                    assert torch.equal(a, b), f"rank {rank}, {other}, step {s}: gradient differs from DDP's"
            for a, b in zip(r["plain"]["params"], r[other]["params"]):
                assert torch.equal(a, b), f"rank {rank}, {other}: weights differ after {ID_STEPS} steps"
        # Measured exactly at the diagnostics' K-step points, over every bucket (several: the small cap).
        measured = r["watched"]["buckets"]
        assert [n > 0 for n in measured] == [s % every == 0 for s in range(ID_STEPS)], measured
        assert max(measured) >= 2, measured
        assert r["taken"] is True
        assert r["nobatch"] == (True, 0)
    logs = _logs(tmp_path / "runs")
    noise = [x for x in logs["watched"] if x["kind"] == "noise"]
    assert [x["step"] for x in noise] == [s for s in range(ID_STEPS) if s % every == 0]
    assert all(x["estimator"] == "ranks" and x["ranks"] == WORLD and x["batchSize"] == 32 and x["layer"] is None for x in noise)
    codes = {name: [x["code"] for x in log if x["kind"] == "alert"] for name, log in logs.items()}
    assert codes["taken"] == ["DDP_NOISE_HOOK_TAKEN"] and codes["nobatch"] == ["DDP_NOISE_NO_BATCH_SIZE"], codes
    assert not any(x["kind"] == "noise" for x in logs["taken"] + logs["nobatch"])
    assert protocol_issues([x for log in logs.values() for x in log]) == []


# ---------- (b) the estimate, on a linear regression with known noise ----------

# x ~ N(0, I_d), y = xᵀw* + ε, ε ~ N(0, s²), loss ½(xᵀw − y)², at the fixed w = w* + Δ (lr 0): the
# per-example gradient is x(xᵀΔ − ε), so G = Δ and tr Σ = (d + 1)|Δ|² + d·s² (docs/algorithms.md §5.1).
D, S, B_RANK, STEPS = 8, 1.0, 32, 300
K, MICRO = 8, 16
DELTA = torch.tensor([1.0] + [0.0] * (D - 1))
EXACT = ((D + 1) * float(DELTA @ DELTA) + D * S * S) / float(DELTA @ DELTA)  # 17
W_STAR = torch.linspace(-1, 1, D)


def _regression(seed, n):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g)
    return x, x @ W_STAR + S * torch.randn(n, generator=g)


def _rank_seed(step, rank):
    return 1000 * step + rank


def _noise_worker(rank, init, tmp):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        net = nn.Linear(D, 1, bias=False)
        with torch.no_grad():
            net.weight.copy_((W_STAR + DELTA).unsqueeze(0))
        model = DDP(net)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        at = [0]

        def noise_probe(i):
            # Fresh held-out examples at every step, on the underlying module (docs/python.md). Microbatch i
            # is drawn from (step, i) alone: the ranks share the microbatches (rank r computes i ≡ r mod R),
            # so a draw that depended on how often this process had called would repeat rank 0's draws on
            # rank 1 and bias the estimate (it did: 12.7 against 17).
            x, y = _regression(10 ** 7 + K * at[0] + i, MICRO)
            return 0.5 * ((net(x).squeeze(1) - y) ** 2).mean()

        run = muonscope.watch(model, opt, total_steps=STEPS, name="noise", host=False, out=str(Path(tmp) / "runs"),
                              batch_size=B_RANK, noise_probe=noise_probe, microbatch_size=MICRO,
                              config={"diagnostics": {"every": 1, "adaptive": False, "microbatches": K, "noiseWindowSteps": 100000}})
        with run:
            for step in range(STEPS):
                at[0] = step
                x, y = _regression(_rank_seed(step, rank), B_RANK)
                loss = 0.5 * ((model(x).squeeze(1) - y) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                run.log(loss=loss)
                opt.step()
        # Every rank done with every collective before any tears the group down: once in CI a rank of this
        # run aborted in gloo (SIGABRT, "terminate called without an active exception"; not reproduced in
        # three runs here), most likely a group destroyed while the other rank was still closing its run.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def noise_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp-noise")
    _spawn(_noise_worker, tmp)
    return _logs(tmp / "runs")["noise"]


def test_the_ranks_estimate_is_the_two_batch_estimate_of_the_ranks_gradients(noise_run):
    """The plumbing, exactly: the window's |G|² and tr(Σ) are the two-batch estimates recomputed here from
    each rank's own batch (b = 32) and their mean (R·b = 64), step by step, in float64."""
    ranks = [x for x in noise_run if x["kind"] == "noise" and x.get("estimator") == "ranks"]
    assert [x["step"] for x in ranks] == list(range(STEPS))
    w = (W_STAR + DELTA).double()
    window = dg.NoiseWindow(100000)
    for step in range(STEPS):
        gs = []
        for rank in range(WORLD):
            x, y = _regression(_rank_seed(step, rank), B_RANK)
            x, y = x.double(), y.double()
            gs.append((x * (x @ w - y).unsqueeze(1)).mean(0))
        small = sum(float(g @ g) for g in gs) / WORLD
        mean = sum(gs) / WORLD
        window.add(step, dg.two_batch_estimate(small, B_RANK, float(mean @ mean), WORLD * B_RANK))
    avg, last = window.average(), ranks[-1]
    assert last["windowCount"] == STEPS and last["ranks"] == WORLD and last["batchSize"] == WORLD * B_RANK
    # float32 gradients against a float64 recomputation.
    assert last["gradSq"] == pytest.approx(avg["gradSq"], rel=1e-4)
    assert last["traceSigma"] == pytest.approx(avg["traceSigma"], rel=1e-4)
    assert last["bSimple"] == pytest.approx(avg["bSimple"], rel=1e-4)


def test_the_ranks_b_simple_matches_the_exact_value_and_the_microbatch_estimate(noise_run):
    """Tolerances, from a numpy simulation of both estimators on this regression (200 repetitions): over
    300 measurements the ranks' window ratio (b = 32, R·b = 64) has a standard deviation of 0.68 around 17,
    the microbatches' (b = 16, K·b = 128) 0.31. The ranks' estimate must lie within 4σ = 2.7 of the exact
    17; the difference of the two independent estimates has σ = √(0.68² + 0.31²) = 0.75, so within 4σ = 3.0."""
    noise = [x for x in noise_run if x["kind"] == "noise" and x["layer"] is None]
    ranks = [x for x in noise if x.get("estimator") == "ranks"][-1]
    micro = [x for x in noise if x.get("estimator") is None][-1]
    assert micro["windowCount"] == STEPS and micro["batchSize"] == WORLD * B_RANK  # the training batch under DDP
    print(f"exact {EXACT}, ranks {ranks['bSimple']:.3f}, microbatches {micro['bSimple']:.3f}")
    assert abs(ranks["bSimple"] - EXACT) < 2.7, (ranks["bSimple"], EXACT)
    assert abs(ranks["bSimple"] - micro["bSimple"]) < 3.0, (ranks["bSimple"], micro["bSimple"])


def test_the_noise_runs_records_are_valid(noise_run):
    assert protocol_issues(noise_run) == []
    assert {x.get("estimator") for x in noise_run if x["kind"] == "noise"} == {None, "ranks"}
