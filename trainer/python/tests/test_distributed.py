"""muonscope.watch under torch.distributed: two CPU processes (gloo, torch.multiprocessing), a DDP model and
DynMuon. Rank 0 alone writes the run (a run folder, or the fake host of test_watch.py over the channel);
commands apply at the same step on both ranks; a rank_times record after each step gives each rank's step time."""
import queue
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import muonscope
from muonscope.optim import DynMuon
from test_watch import batch, host, mlp, protocol_issues, read_log  # noqa: F401 (host: test_watch's fake-host fixture)

# Each test spawns two torch processes (about 10 s on a loaded 2-core machine).
pytestmark = [pytest.mark.skipif(not dist.is_available(), reason="torch without torch.distributed"), pytest.mark.slow]

WORLD = 2


def _settle():
    """Every rank done with every collective before any tears the group down: a rank of such a run has
    aborted in gloo now and then (SIGABRT, "terminate called without an active exception"; twice in this
    suite, not reproduced on demand) when the other destroyed the group right after their last collective.
    On the normal path only: a rank that failed is not there to meet."""
    dist.barrier()


def _worker(rank, init, out, address, reports, steps, pace_s, nan_at, nan_grad):
    """One rank: a DDP MLP trained with DynMuon under watch; after each step it reports what a test compares
    between ranks (steps_done, lr, p, state, the weights' sum), and at the end how it ended. Rank 1 logs a
    NaN loss (its gradients stay finite) in the first iteration that starts with `nan_at` steps done, or,
    with `nan_grad`, keeps its loss finite and makes its gradients NaN (and watch gets a batch_size, so
    the noise estimator's comm hook is on and its reduced norms are the non-finite check)."""
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        model = DDP(mlp())
        opt = DynMuon(model.parameters(), total_steps=steps, lr=0.02, schedule={"type": "constant", "p": 0.5})
        x, y = batch(seed=rank + 1)  # each rank its own data, as data parallel has it
        kw = {"host": False, "out": out} if address is None else {"channel": address, "out": out}
        if nan_grad:
            kw["batch_size"] = len(x)
            if rank == 0:  # the reduced bucket norms must be what finds it, not the per-parameter norms
                def no_fallback(with_grad):
                    raise AssertionError("the per-parameter finite check ran: the reduced bucket norms were not used")
                sys.modules["muonscope.watch"].Run._gradients_finite = staticmethod(no_fallback)
        run = muonscope.watch(model, opt, total_steps=steps, name="ddp", **kw)
        fired = set()
        with run:
            for _ in range(steps):
                poisoned = rank == 1 and run.steps_done == nan_at and nan_at not in fired
                fired.add(run.steps_done)
                out_ = model(x)
                if poisoned and nan_grad:
                    out_.register_hook(lambda g: torch.full_like(g, float("nan")))
                loss = nn.functional.mse_loss(out_, y)
                opt.zero_grad()
                loss.backward()
                run.log(loss=torch.tensor(float("nan")) if poisoned and not nan_grad else loss)
                opt.step()
                total = float(sum(p.detach().double().sum() for p in model.parameters()))
                reports.put((rank, "step", run.steps_done, opt.param_groups[0]["lr"], opt.current_p(), run.state, total))
                if pace_s:
                    time.sleep(pace_s)
        reports.put((rank, "end", run.steps_done, run.should_stop, run.state))
        _settle()
    finally:
        dist.destroy_process_group()


class Ranks:
    """The spawned ranks and what they report; every process is gone when it closes."""

    def __init__(self, tmp_path, address=None, steps=4, pace_s=0.0, nan_at=None, nan_grad=False):
        ctx = mp.get_context("spawn")
        self.reports_q = ctx.Queue()
        self.out = str(tmp_path / "runs")
        init = (tmp_path / "pg-init").as_uri()
        self.procs = mp.start_processes(_worker, args=(init, self.out, address, self.reports_q, steps, pace_s, nan_at, nan_grad),
                                        nprocs=WORLD, join=False, start_method="spawn")
        self.seen = []

    def drain(self):
        while True:
            try:
                self.seen.append(self.reports_q.get_nowait())
            except queue.Empty:
                return self.seen

    def wait_for(self, pred, timeout=45.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            if pred():
                return True
            time.sleep(0.02)
        return False

    def done(self, rank):
        return max((r[2] for r in self.seen if r[0] == rank and r[1] == "step"), default=0)

    def ends(self):
        return sorted((r for r in self.seen if r[1] == "end"), key=lambda r: r[0])

    def join(self, timeout=45.0):
        deadline = time.monotonic() + timeout
        while not self.procs.join(timeout=0.5):  # raises if a rank failed
            assert time.monotonic() < deadline, "the ranks did not end"
        self.drain()
        return [p.exitcode for p in self.procs.processes]

    def close(self):
        for p in self.procs.processes:
            if p.is_alive():
                p.terminate()
            p.join(5)
        assert not any(p.is_alive() for p in self.procs.processes)
        self.reports_q.close()


def test_a_ddp_run_folder_holds_only_rank_0s_records_with_each_ranks_step_time(tmp_path):
    ranks = Ranks(tmp_path, steps=4)
    try:
        assert ranks.join() == [0, 0]
    finally:
        ranks.close()
    (run_dir,) = [d for d in Path(ranks.out).iterdir() if d.is_dir()]  # one folder: rank 1 wrote none
    records = read_log(run_dir)
    assert [r["kind"] for r in records].count("run_started") == 1
    (started,) = [r for r in records if r["kind"] == "run_started"]
    assert started["worldSize"] == 2
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [0, 1, 2, 3]  # once each: rank 1 emitted nothing
    times = [r for r in records if r["kind"] == "rank_times"]
    assert [r["step"] for r in times] == [0, 1, 2, 3]  # the last one from the exchange at close
    for r, t in zip(steps, times):
        assert "rankStepMs" not in r and t["worldSize"] == 2 and len(t["rankStepMs"]) == 2 and all(ms >= 0 for ms in t["rankStepMs"])
        assert t["rankStepMs"][0] == r["stepMs"]  # rank 0's own
        assert records.index(r) < records.index(t)  # the step record does not wait for the ranks' times
    assert [r["state"] for r in records if r["kind"] == "state"] == ["finished"]
    assert [e[2:] for e in ranks.ends()] == [(4, True, "finished")] * 2
    assert protocol_issues(records) == []


def test_commands_apply_at_the_same_step_on_every_rank(tmp_path, host):
    ranks = Ranks(tmp_path, address=host.address, steps=100000, pace_s=0.03)

    def send(cid, command):
        assert host.ready.wait(45)
        host._send({"type": "command", "id": cid, "command": command, "source": "test"})
        assert host.wait_for(lambda: host.replies(cid), timeout=20), f"no reply to {cid}"
        (reply,) = host.replies(cid)
        assert reply["type"] == "ack", reply
        return reply["step"]

    def per_step(rank):
        return {r[2]: r for r in ranks.seen if r[0] == rank and r[1] == "step"}

    try:
        assert ranks.wait_for(lambda: min(ranks.done(0), ranks.done(1)) >= 2)
        lr_at = send("lr", {"kind": "set_lr", "lr": 0.05})
        p_at = send("sch", {"kind": "set_schedule", "schedule": {"type": "constant", "p": 0.25}})
        assert ranks.wait_for(lambda: min(ranks.done(0), ranks.done(1)) >= p_at + 2)
        r0, r1 = per_step(0), per_step(1)
        for done in sorted(set(r0) & set(r1)):  # after step index done-1
            assert r0[done][3] == r1[done][3] == (0.05 if done > lr_at else 0.02), done
            assert r0[done][4] == r1[done][4], done
            if done > p_at:
                assert r0[done][4] == 0.25

        paused_at = send("pz", {"kind": "pause"})
        time.sleep(1.5)  # the ranks would take ~40 steps in this time
        ranks.drain()
        assert ranks.done(0) == ranks.done(1) == paused_at  # both held before step `paused_at`
        assert send("go", {"kind": "resume"}) == paused_at
        assert ranks.wait_for(lambda: min(ranks.done(0), ranks.done(1)) >= paused_at + 2)

        stopped_at = send("st", {"kind": "stop"})
        assert ranks.join() == [0, 0]
    finally:
        ranks.close()
    # Both ranks ended cleanly at the acked step (StopTraining on each, swallowed by `with`).
    assert [e[2:] for e in ranks.ends()] == [(stopped_at, True, "stopped")] * 2
    assert host.wait_for(lambda: any(m["type"] == "bye" for m in host.messages))
    assert host.hello["rank"] == 0  # only rank 0 opened a channel
    assert not Path(ranks.out).exists()  # and no rank wrote a folder of its own
    steps = host.records("step")
    assert [r["step"] for r in steps] == list(range(stopped_at))
    times = host.records("rank_times")
    assert [r["step"] for r in times] == list(range(stopped_at)) and all(len(r["rankStepMs"]) == 2 for r in times)
    assert [(r["command"], r["step"]) for r in host.records("control")] == [
        ("set_lr", lr_at), ("set_schedule", p_at), ("pause", paused_at), ("resume", paused_at), ("stop", stopped_at)]
    # The final checkpoint is rank 0's: one file.
    (ck,) = host.records("checkpoint")
    assert ck["step"] == stopped_at and len(list((Path(host.run_dir) / "checkpoints").iterdir())) == 1


def _nan_run(tmp_path, nan_grad):
    ranks = Ranks(tmp_path, steps=5, nan_at=2, nan_grad=nan_grad)
    try:
        assert ranks.join() == [0, 0]
    finally:
        ranks.close()
    (run_dir,) = [d for d in Path(ranks.out).iterdir() if d.is_dir()]
    records = read_log(run_dir)
    assert protocol_issues(records) == []
    sums = {rank: [r[6] for r in ranks.seen if r[0] == rank and r[1] == "step"] for rank in range(WORLD)}
    done = {rank: [r[2] for r in ranks.seen if r[0] == rank and r[1] == "step"] for rank in range(WORLD)}
    assert sums[0] == sums[1], "the ranks' weights stay equal"
    return records, sums[0], done


def test_nan_gradients_on_one_rank_skip_the_update_on_every_rank_and_name_the_layer(tmp_path):
    """No host: NaN gradients on rank 1 (all-reduced to every rank, which each decide alike): an alert
    naming the layer, no update on either rank (their weights stay equal and unchanged), no record for the
    skipped step, and training goes on."""
    records, sums, done = _nan_run(tmp_path, nan_grad=True)
    (alert,) = [r for r in records if r["kind"] == "alert" and r["level"] == "error"]
    (started,) = [r for r in records if r["kind"] == "run_started"]
    assert alert["code"] == "NON_FINITE_GRADIENT" and alert["step"] == 2
    assert alert["layer"] == started["params"][0]["name"]
    assert alert["message"].startswith(f"gradient of {alert['layer']} is not finite at step 2; the update was skipped")
    assert [r["step"] for r in records if r["kind"] == "step"] == [0, 1, 2, 3]  # 5 iterations, 4 updates
    assert done == {0: [1, 2, 2, 3, 4], 1: [1, 2, 2, 3, 4]}
    assert sums[1] == sums[2] and sums[2] != sums[3]  # the skipped iteration changed nothing


def test_a_nan_loss_with_finite_gradients_on_one_rank_is_named_at_the_next_step(tmp_path):
    """No host: rank 1 logs a NaN loss while its gradients are finite. No rank can skip alone, so every
    rank takes the update; at the next boundary the exchange brings rank 1's flag and rank 0 names it."""
    records, sums, done = _nan_run(tmp_path, nan_grad=False)
    (alert,) = [r for r in records if r["kind"] == "alert" and r["level"] == "error"]
    assert alert["code"] == "NON_FINITE_LOSS" and alert["step"] == 3
    assert alert["message"] == ("loss is not finite on rank 1 at step 2 (its gradients were finite, so every rank took the "
                                "update); no host to resume the run, so training goes on")
    assert [r["step"] for r in records if r["kind"] == "step"] == [0, 1, 2, 3, 4]  # rank 0's own loss was finite
    assert done == {0: [1, 2, 3, 4, 5], 1: [1, 2, 3, 4, 5]}
    assert len(set(sums)) == 5  # every iteration updated


def test_a_nan_loss_on_one_rank_pauses_every_rank_under_a_host(tmp_path, host):
    ranks = Ranks(tmp_path, address=host.address, steps=100000, pace_s=0.03, nan_at=3)
    try:
        assert host.wait_for(lambda: any(r["code"] == "NON_FINITE_LOSS" for r in host.records("alert")), timeout=45)
        time.sleep(1.0)  # the ranks would take ~30 steps in this time
        ranks.drain()
        assert ranks.done(0) == ranks.done(1) == 4  # step 3's update taken (finite gradients), both held before step 4
        assert host.records("state")[-1]["state"] == "paused"
        host._send({"type": "command", "id": "go", "command": {"kind": "resume"}, "source": "test"})
        assert ranks.wait_for(lambda: min(ranks.done(0), ranks.done(1)) >= 5)
        host._send({"type": "command", "id": "st", "command": {"kind": "stop"}, "source": "test"})
        assert ranks.join() == [0, 0]
    finally:
        ranks.close()
    (alert,) = [r for r in host.records("alert") if r["code"] == "NON_FINITE_LOSS"]
    assert "on rank 1 at step 3 (its gradients were finite, so every rank took the update); paused" in alert["message"]


def _exchange_worker(rank, init, reports, big):
    """Three exchanges: the first step's (no time yet), one with flags, one whose payload is too long for
    the all_gather's room and comes by broadcast (the broadcasts are counted: only that one). The second
    is started and waited for with another collective in between, as watch does across a step."""
    from muonscope import distributed as ddp
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    broadcasts = []
    inner = ddp.broadcast
    ddp.broadcast = lambda payload=None: (broadcasts.append(len(out)), inner(payload))[1]
    try:
        out = []
        out.append(ddp.start_exchange(None, 0.0, 0, {"msgs": []} if rank == 0 else None).wait())
        pending = ddp.start_exchange(10.0 + rank, 0.5 * rank, rank, {"msgs": ["a"]} if rank == 0 else None)
        between = torch.tensor([float(rank + 1)])
        dist.all_reduce(between)  # DDP's gradient all-reduce, say
        assert float(between) == 3.0
        out.append(pending.wait())
        out.append(ddp.start_exchange(1.0, 2.0, 0, {"msgs": [big]} if rank == 0 else None).wait())
        reports.put((rank, ([([tuple(s) for s in slots], payload) for slots, payload in out], broadcasts)))
        _settle()
    finally:
        dist.destroy_process_group()


def test_the_step_boundary_exchange_gives_every_rank_every_slot_and_rank_0s_payload(tmp_path):
    from muonscope import distributed as ddp
    big = "x" * (2 * ddp.PAYLOAD_ROOM)
    q = mp.get_context("spawn").Queue()
    mp.start_processes(_exchange_worker, args=((tmp_path / "pg").as_uri(), q, big), nprocs=WORLD, start_method="spawn")
    seen = dict(q.get(timeout=5) for _ in range(WORLD))
    expected = [([(None, 0.0, 0)] * 2, {"msgs": []}),
                ([(10.0, 0.0, 0), (11.0, 0.5, 1)], {"msgs": ["a"]}),
                ([(1.0, 2.0, 0)] * 2, {"msgs": [big]})]
    assert seen[0] == seen[1] == (expected, [2]), "a broadcast for the third payload only (it is past the room)"


# ---------- under the host, launched by torchrun ----------

def _torchrun(*args):
    """`python -m torch.distributed.run --standalone` (torchrun, with a free rendezvous port) on tests/e2e/ddp_train.py."""
    import sys
    script = Path(__file__).resolve().parent / "e2e" / "ddp_train.py"
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(WORLD), str(script), *args]


@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="node is not on PATH: the host is Node")
def test_muonscope_run_torchrun_one_run_from_two_ranks_and_a_dying_rank_is_named(tmp_path):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))
    from host import Host, Validator  # noqa: E402

    validator = Validator()
    try:
        ok = Host(tmp_path / "ok", [], command=_torchrun("--steps", "5"))
        assert ok.wait(timeout=120) == 0, ok.output()
        records = read_log(ok.run_dir)
        assert validator.issues(ok.run_dir / "log.ndjson") == []
        started = [r for r in records if r["kind"] == "run_started"]
        assert len(started) == 1 and started[0]["worldSize"] == WORLD and started[0]["config"]["name"] == "ddp-e2e"
        steps = [r for r in records if r["kind"] == "step"]
        assert [r["step"] for r in steps] == list(range(5)), "each step once: only rank 0 reports"
        times = [r for r in records if r["kind"] == "rank_times"]
        assert [r["step"] for r in times] == list(range(5)) and all(len(r["rankStepMs"]) == WORLD for r in times)
        assert records[-1]["kind"] == "state" and records[-1]["state"] == "finished"

        bad = Host(tmp_path / "bad", [], command=_torchrun("--steps", "8", "--crash-rank", "1", "--crash-at", "3"))
        assert bad.wait(timeout=120) != 0
        records = read_log(bad.run_dir)
        assert validator.issues(bad.run_dir / "log.ndjson") == []
        assert [r["step"] for r in records if r["kind"] == "step"] == [0, 1, 2], "steps until rank 1 died"
        named = [r for r in records if r["kind"] == "alert" and r["code"] == "RANK_FAILED"]
        assert len(named) == 1, bad.output()
        assert named[0]["message"].startswith("rank 1 failed first (RuntimeError: rank 1 fails on purpose at step 3); its last lines:\n")
        assert "raise RuntimeError" in named[0]["message"]
        assert [r for r in records if r["kind"] == "state"][-1]["state"] == "crashed"
    finally:
        validator.close()


# ---------- the diagnostics' work shared among ranks ----------

def _wide_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 10, bias=False), nn.Tanh(), nn.Linear(10, 9, bias=False), nn.Tanh(), nn.Linear(9, 3, bias=False))


def _diag_data(rank):
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(16, 6, generator=g), torch.randn(16, 3, generator=g)


def _diag_run(model, wrapped, out, steps, x, y, vx, vy, parts=False):
    """Three steps of DynMuon with every diagnostic every step (budget off), curvature on a held-out probe:
    of the whole batch, or (`parts`) of part `part` of `parts` equal parts of it."""
    opt = DynMuon(model.parameters(), total_steps=steps, lr=0.02, schedule={"type": "constant", "p": 0.25})

    def probe_part(part, parts):
        return nn.functional.mse_loss(model(vx[part::parts]), vy[part::parts])

    run = muonscope.watch(wrapped, opt, total_steps=steps, name="shared", host=False, out=out,
                          probe=probe_part if parts else lambda: nn.functional.mse_loss(model(vx), vy),
                          config={"diagnostics": {"every": 1, "adaptive": False, "noise": False}})
    _train(run, wrapped, opt, x, y, steps)


def _train(run, wrapped, opt, x, y, steps):
    """`steps` watched steps on one batch: the loop every run here shares."""
    with run:
        for _ in range(steps):
            loss = nn.functional.mse_loss(wrapped(x), y)
            opt.zero_grad()
            loss.backward()
            run.log(loss=loss)
            opt.step()


def _diag_worker(rank, init, out, steps, parts):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        model = _wide_mlp()
        vx, vy = torch.randn(32, 6, generator=torch.Generator().manual_seed(7)), torch.randn(32, 3, generator=torch.Generator().manual_seed(8))
        _diag_run(model, DDP(model), out, steps, *_diag_data(rank), vx, vy, parts)
        _settle()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("parts", [False, True], ids=["probe", "probe-of-parts"])
def test_the_ranks_share_the_diagnostics_and_rank_0_writes_them_in_layer_order(tmp_path, parts):
    """With probe(): the curvature split by direction (the whole model on rank 0, the layer on rank 1).
    With probe(part, parts): both directions on every rank, each on its half of the probe's batch, and rank 0
    writes the mean, which is the whole batch's value (what one process measures with probe(0, 1))."""
    steps = 3
    procs = mp.start_processes(_diag_worker, args=((tmp_path / "pg").as_uri(), str(tmp_path / "ddp"), steps, parts), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + 90
    try:
        while not procs.join(timeout=0.5):
            assert time.monotonic() < deadline, "the ranks did not end"
    finally:
        for p in procs.processes:
            if p.is_alive():
                p.terminate()
    (run_dir,) = [d for d in (tmp_path / "ddp").iterdir() if d.is_dir()]
    records = read_log(run_dir)
    assert protocol_issues(records) == []
    assert not [r for r in records if r["kind"] == "alert"], [r for r in records if r["kind"] == "alert"]
    names = ["0.weight", "2.weight", "4.weight"]
    # The same run in one process on the union of the ranks' batches: the same mean gradient, so the same
    # diagnostics up to the order of float sums (DDP averages the ranks' means).
    model = _wide_mlp()
    x = torch.cat([_diag_data(r)[0] for r in range(WORLD)])
    y = torch.cat([_diag_data(r)[1] for r in range(WORLD)])
    vx, vy = torch.randn(32, 6, generator=torch.Generator().manual_seed(7)), torch.randn(32, 3, generator=torch.Generator().manual_seed(8))
    _diag_run(model, model, str(tmp_path / "one"), steps, x, y, vx, vy, parts)
    (one_dir,) = [d for d in (tmp_path / "one").iterdir() if d.is_dir()]
    single = read_log(one_dir)
    for step in range(steps):
        spectra = [r for r in records if r["kind"] == "spectra" and r["step"] == step]
        assert [(r["layer"], r["rank"]) for r in spectra] == [(n, i % WORLD) for i, n in enumerate(names)], "layer i measured by rank i mod 2, written in layer order"
        (stats,) = [r for r in records if r["kind"] == "layer_stats" and r["step"] == step]
        assert [(l["name"], l["rank"]) for l in stats["layers"]] == [(n, i % WORLD) for i, n in enumerate(names)]
        curv = [r for r in records if r["kind"] == "curvature" and r["step"] == step]
        if parts:
            assert [(r["layer"], r.get("rank"), r["ranks"]) for r in curv] == [(None, None, 2), (names[step % 3], None, 2)], "both on every rank"
        else:
            assert [(r["layer"], r["rank"]) for r in curv] == [(None, 0), (names[step % 3], 1)], "whole model on rank 0, the layer in turn on rank 1"
        ref = {r["layer"]: r for r in single if r["kind"] == "spectra" and r["step"] == step}
        for r in spectra:
            # Tolerance 1e-4 relative, and 1e-5 of the largest σ absolute: float32 training whose mean gradient
            # is summed in another order (DDP averages the ranks' means), and O recovered from a float32 weight
            # difference ΔW = lr·O (weights ~0.3, lr 0.02: ~1e-6 per element of O).
            for k in "GMOW":
                expected = ref[r["layer"]][k]
                assert r[k] == pytest.approx(expected, rel=1e-4, abs=1e-5 * max(expected)), (step, r["layer"], k)
        ref_curv = [r for r in single if r["kind"] == "curvature" and r["step"] == step]
        assert len(ref_curv) == len(curv) == 2
        for a, b in zip(curv, ref_curv):
            # 1e-3 relative: the update d differs in the last float32 bits between the runs (see spectra),
            # and the mean of two half-batch losses is the whole batch's up to float32 summation order.
            assert a["layer"] == b["layer"]
            for key in ("kappaUpdate", "etaStarBefore", "edgeAlongUpdate"):
                assert a[key] == pytest.approx(b[key], rel=1e-3), (step, a["layer"], key)
    assert "rank" not in [r for r in single if r["kind"] == "spectra"][0], "one process: no rank field"


# ---------- the microbatch gradient noise shared among ranks ----------

NOISE_STEPS = 3


def _noise_data(seed, n):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randn(n, 3, generator=g)


class _NoiseProbe:
    """noise_probe(i): the loss of held-out microbatch i of 8 (4 examples each, the same on every rank);
    with `fail_call`, its fail_call-th call raises (on a rank of 2 with K = 8: the first of step 1's four)."""

    def __init__(self, model, fail_call=None):
        self.model, self.fail_call, self.calls = model, fail_call, 0
        self.x, noise = _noise_data(12, 32)
        self.y = 2 * self.x[:, :3] + 0.1 * noise  # a signal to learn: |G|² > 0, so bSimple is a number

    def __call__(self, i):
        self.calls += 1
        if self.calls == self.fail_call:
            raise RuntimeError("noise probe fails on purpose")
        return nn.functional.mse_loss(self.model(self.x[4 * i:4 * i + 4]), self.y[4 * i:4 * i + 4])


def _noise_run(model, wrapped, out, batch_size, fail_call=None):
    """NOISE_STEPS steps of DynMuon with the noise (K = 8) every step, on the same training batch on every
    rank: DDP's mean of identical gradients is the gradient itself (×1/2, then a sum, both exact), so the
    weights are one process's bit for bit and the noise is measured at the same weights."""
    x, y = _noise_data(11, 16)
    opt = DynMuon(model.parameters(), total_steps=NOISE_STEPS, lr=0.02, schedule={"type": "constant", "p": 0.25})
    run = muonscope.watch(wrapped, opt, total_steps=NOISE_STEPS, name="noise", host=False, out=out,
                          noise_probe=_NoiseProbe(model, fail_call), microbatch_size=4, batch_size=batch_size,
                          config={"diagnostics": {"every": 1, "adaptive": False, "curvature": False, "microbatches": 8}})
    _train(run, wrapped, opt, x, y, NOISE_STEPS)


def _noise_worker(rank, init, out, fail_rank):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        model = _wide_mlp()
        _noise_run(model, DDP(model), out, 16, fail_call=5 if rank == fail_rank else None)
        _settle()
    finally:
        dist.destroy_process_group()


def _spawned_run(tmp_path, fail_rank=None):
    """The records of a 2-rank gloo run of _noise_run; fails when the ranks do not end in time (a hang)."""
    procs = mp.start_processes(_noise_worker, args=((tmp_path / "pg").as_uri(), str(tmp_path / "ddp"), fail_rank),
                               nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + 90
    try:
        while not procs.join(timeout=0.5):
            assert time.monotonic() < deadline, "the ranks did not end"
    finally:
        for p in procs.processes:
            if p.is_alive():
                p.terminate()
    (run_dir,) = [d for d in (tmp_path / "ddp").iterdir() if d.is_dir()]
    records = read_log(run_dir)
    assert protocol_issues(records) == []
    return records


def _micro_noise(records, step):
    # The microbatch estimate's records (the ranks' own estimate, ddp_noise.py, carries `estimator`).
    return [r for r in records if r["kind"] == "noise" and r["step"] == step and "estimator" not in r]


def test_the_ranks_share_the_microbatch_noise_and_rank_0_writes_what_one_process_would(tmp_path):
    records = _spawned_run(tmp_path)
    assert not [r for r in records if r["kind"] == "alert"], [r for r in records if r["kind"] == "alert"]
    model = _wide_mlp()
    _noise_run(model, model, str(tmp_path / "one"), 32)  # batchSize 32 = 2 ranks × 16, as under DDP
    (one_dir,) = [d for d in (tmp_path / "one").iterdir() if d.is_dir()]
    single = read_log(one_dir)
    for step in range(NOISE_STEPS):
        got, expected = _micro_noise(records, step), _micro_noise(single, step)
        assert [r["layer"] for r in got] == [None, "0.weight", "2.weight", "4.weight"]
        assert [r["layer"] for r in expected] == [r["layer"] for r in got]
        for a, b in zip(got, expected):
            assert set(a) == set(b), "the same fields: no rank, nothing new"
            for key, value in b.items():
                if key in ("seq", "t"):  # the log's own: the DDP run has the ranks' noise records too
                    continue
                if isinstance(value, float):
                    # float64 sums of the same float32 gradients, added in another order
                    assert a[key] == pytest.approx(value, rel=1e-9), (step, a["layer"], key)
                else:
                    assert a[key] == value, (step, a["layer"], key)
        assert got[0]["microbatches"] == 8 and got[0]["batchSize"] == 32 and got[0]["windowCount"] == step + 1
        assert all(r["bSimple"] is not None and r["bSimple"] > 0 for r in got)


def test_a_rank_whose_noise_share_fails_is_one_alert_and_no_noise_record_at_that_step(tmp_path):
    records = _spawned_run(tmp_path, fail_rank=1)  # rank 1's probe raises at step 1; no rank waits for it
    alerts = [r for r in records if r["kind"] == "alert"]
    assert [(a["step"], a["code"]) for a in alerts] == [(1, "OBSERVER_FAILED")], alerts
    assert alerts[0]["message"].startswith("noise diagnostics failed at step 1 on rank 1 (training goes on)")
    assert "noise probe fails on purpose" in alerts[0]["message"]
    # Step 1's sum would lack rank 1's microbatches: no record. The other steps' are whole.
    assert [len(_micro_noise(records, step)) for step in range(NOISE_STEPS)] == [4, 0, 4]
    assert [r["windowCount"] for r in _micro_noise(records, 2)] == [2] * 4
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(NOISE_STEPS))


def _thread_collectives(world):
    """Stand-ins for the observer's gather and all-reduce between ranks that are threads of one process:
    collectives(rank) → (gather, all_reduce) for that rank."""
    import threading
    barrier, slots = threading.Barrier(world), [None] * world

    def collectives(rank):
        def exchange(x):
            slots[rank] = x
            barrier.wait()
            every = list(slots)
            barrier.wait()  # every rank has read the slots before any writes the next
            return every

        def all_reduce(t):
            t.copy_(sum(x.clone() for x in exchange(t.clone())))

        return (lambda obj: exchange(obj) if rank == 0 else (exchange(obj), None)[1]), all_reduce

    return collectives


@pytest.mark.parametrize("rank1", ["fails", "plain"])
def test_a_rank_whose_part_of_the_curvature_probe_fails_is_one_alert_and_no_curvature_record(rank1):
    """probe(part, parts) failing on rank 1 of 2 (threads), or rank 1 given a plain probe() while rank 0's
    takes parts (rank 0 decides the path): rank 1 still takes part in the all-reduce, and rank 0 writes no
    curvature record (half a batch is not the batch's value) but rank 1's alert; nobody waits."""
    import threading

    from muonscope.matrices import classify
    from muonscope.observer import Observer

    world, settings = 2, {"every": 1, "adaptive": False, "budgetPct": 10.0, "noise": False}
    collectives = _thread_collectives(world)
    vx, vy = _noise_data(5, 8)

    def observe(rank, model):
        records = []

        def probe(part, parts):
            if part == 1:
                raise RuntimeError("no held-out data on this rank")
            return nn.functional.mse_loss(model(vx[part::parts]), vy[part::parts])

        def plain():
            return nn.functional.mse_loss(model(vx), vy)

        opt = DynMuon(model.parameters(), total_steps=1, lr=0.02)
        obs = Observer(classify(model), [opt], records.append, settings, probe=plain if rank == 1 and rank1 == "plain" else probe)
        obs.split(rank, world, *collectives(rank))
        nn.functional.mse_loss(model(vx), vy).backward()
        obs.before_step(0, due=["curvature"], curvature_parts=True)  # rank 0's decision, on every rank
        opt.step()
        obs.after_step(0, 1.0)
        return [r for r in records if r["kind"] in ("curvature", "alert")]

    results = [None] * world
    models = [_wide_mlp() for _ in range(world)]
    threads = [threading.Thread(target=lambda r=r: results.__setitem__(r, observe(r, models[r]))) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a rank waits for another"
    assert results[1] == []
    (alert,) = results[0]
    reason = "no held-out data" if rank1 == "fails" else "every rank needs the same kind of probe"
    assert alert["code"] == "OBSERVER_FAILED" and "on rank 1" in alert["message"] and reason in alert["message"], alert


def test_a_probe_must_take_no_argument_or_part_and_parts():
    model = _wide_mlp()
    with pytest.raises(ValueError, match=r"probe must take no argument .* or two, probe\(part, parts\).*it needs 1"):
        muonscope.watch(model, DynMuon(model.parameters(), total_steps=1), total_steps=1, host=False, probe=lambda x: x)


def test_the_last_exchange_is_waited_for_only_on_a_clean_close(tmp_path, monkeypatch):
    """close() after the loop waits for the exchange started after the last step (its rank_times, and the
    commands it carries); close() while an exception is being handled (a `finally`), or at exit for a run
    left open, does not: the other ranks may be in DDP's all-reduce, and waiting on them could hang the
    job. One process here, with the distributed answers stood in."""
    from muonscope import distributed as ddp
    from muonscope.watch import _Sent
    waited = []

    class Pending:
        def __init__(self, name):
            self.name = name

        def wait(self):
            waited.append(self.name)
            return [ddp.Slot(5.0, 0.0, 0)] * 2, {"msgs": []}

    def started(name):
        model = mlp()
        run = muonscope.watch(model, DynMuon(model.parameters(), total_steps=3), total_steps=3, name=name, host=False, out=str(tmp_path))
        run._inflight, run._inflight_sent = Pending(name), _Sent(2, 5.0, 0.0, None)  # as after a data-parallel step
        return run

    runs = {name: started(name) for name in ("finally", "exit", "clean")}
    monkeypatch.setattr(ddp, "is_distributed", lambda: True)
    try:
        raise RuntimeError("a rank's own failure")
    except RuntimeError:
        runs["finally"].close()
    runs["exit"]._at_exit()
    assert waited == []
    runs["clean"].close()
    assert waited == ["clean"]


def _logged(f):
    import functools

    @functools.wraps(f)
    def call(*args, **kwargs):  # a decorator's *args: the signature is the wrapped function's
        return f(*args, **kwargs)
    return call


@_logged
def _decorated(part, parts):
    return part


def test_which_probes_are_probes_of_parts():
    import functools

    from muonscope.observer import _takes_parts

    class Probe:
        def __call__(self, part, parts):
            return part

        def whole(self):
            return 0

    def with_defaults(part=0, parts=1):
        return part

    def one_default(part, parts=1):
        return part

    def three(model, part, parts):
        return part

    assert [_takes_parts(f) for f in (lambda: 0, Probe().whole, lambda *a: 0, lambda batch=None: 0)] == [False] * 4
    assert [_takes_parts(f) for f in (lambda part, parts: 0, with_defaults, one_default, Probe(),
                                      functools.partial(three, None), _decorated)] == [True] * 6
    for bad, why in ((three, "it needs 3"), (lambda x: x, "it needs 1"), (lambda *, k: 0, "keyword-only parameters need defaults.*: k")):
        with pytest.raises(ValueError, match=why):
            _takes_parts(bad)


def test_more_ranks_than_microbatches_the_idle_ranks_add_zeros(tmp_path):
    """R = 3 > K = 2, the ranks as threads of one process with stand-in collectives (the observer takes its
    gather and all-reduce from split): rank 2 has no microbatch, takes part in the all-reduce with zeros,
    and rank 0 writes what one process does."""
    import threading

    from muonscope.matrices import classify
    from muonscope.observer import Observer

    world, settings = 3, {"every": 1, "adaptive": False, "budgetPct": 10.0, "curvature": False}
    collectives = _thread_collectives(world)

    def observe(rank, split, model):
        records = []
        calls = []
        probe = _NoiseProbe(model)
        obs = Observer(classify(model), [DynMuon(model.parameters(), total_steps=1)], records.append, settings,
                       noise_probe=lambda i: (calls.append(i), probe(i))[1], microbatches=2, microbatch_size=4)
        if split:
            obs.split(rank, world, *collectives(rank))
        obs.before_step(0, due=["noise"])
        obs.after_step(0, 1.0)
        return [r for r in records if r["kind"] in ("noise", "alert")], calls

    results = [None] * world
    models = [_wide_mlp() for _ in range(world)]  # here: _wide_mlp seeds the global generator, which threads share
    threads = [threading.Thread(target=lambda r=r: results.__setitem__(r, observe(r, True, models[r]))) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a rank waits for another"
    assert [calls for _, calls in results] == [[0], [1], []]
    assert [len(records) for records, _ in results] == [4, 0, 0]  # rank 0 writes, the others nothing
    single, _ = observe(0, False, _wide_mlp())
    assert [r["layer"] for r in single] == [r["layer"] for r in results[0][0]] == [None, "0.weight", "2.weight", "4.weight"]
    for a, b in zip(results[0][0], single):
        assert a.keys() == b.keys()
        for key in ("gradSq", "traceSigma", "bSimple"):
            assert a[key] == pytest.approx(b[key], rel=1e-12), (a["layer"], key)
