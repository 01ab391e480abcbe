"""End to end: a real torch run (tests/e2e/train.py, small deterministic models on the CPU) under the Node
host `muonscope run` (trainer/host/*, docs/python.md), driven by a WebSocket client as the extension would
drive it (docs/protocol.md). Every log is checked line by line with the protocol's own validator
(common/protocol.ts validateLogRecord, through tsx).

Slow (marked `slow`, and skipped when `node` is not on PATH): each test starts node (tsx) and a Python process that imports torch — several seconds each on a
loaded machine (pytest -m "not slow" leaves them out). The resume refusals at the end are quick and in-process.
"""
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))
from host import Host, Validator, WsClient, kill, read_log, steps_of, wait_log  # noqa: E402
import train  # noqa: E402

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH: the end-to-end tests run the Node host (muonscope run)")

TOTAL = 400  # steps planned; the runs are stopped long before


@pytest.fixture(scope="module")
def validator():
    v = Validator()  # starts now, while the first run starts
    yield v
    v.close()


@pytest.fixture
def assert_log_sound(validator):
    """Every line validates (the protocol's validator), and seq runs 1, 2, 3, … without a hole or a repeat."""
    def check(run_dir):
        assert validator.issues(Path(run_dir) / "log.ndjson") == []
        seqs = [r["seq"] for r in read_log(run_dir)]
        assert seqs == list(range(1, len(seqs) + 1))
    return check


def linear_p(step, total=TOTAL):
    """train.py's DynMuon schedule, linear 0.5 → 0 over q = step / total (common/schedules.ts)."""
    return 0.5 + (0.0 - 0.5) * (step / total)


@needs_node
@pytest.mark.slow
def test_commands_from_a_client_take_effect_at_the_acked_step(tmp_path, assert_log_sound):
    host = Host(tmp_path, ["--steps", str(TOTAL), "--sleep", "0.02", "--bad-record-at", "3"])
    ws = WsClient(host.info["url"], host.info["token"])
    try:
        ws.subscribe(0)
        ws.wait_records(lambda rs: len(steps_of(rs)) >= 6)

        # pause: no step at or after the acked step while paused.
        a = ws.command({"kind": "pause", "reason": "e2e"})
        assert a["type"] == "ack" and a["kind"] == "pause", a
        paused_at = a["step"]
        time.sleep(0.6)
        assert max(r["step"] for r in steps_of(ws.records)) == paused_at - 1
        assert [r for r in ws.records if r["kind"] == "state"][-1]["state"] == "paused"
        assert ws.command({"kind": "resume"})["type"] == "ack"

        # set_lr while running: the step records' lr changes exactly at the acked step.
        ws.wait_records(lambda rs: max(r["step"] for r in steps_of(rs)) >= paused_at + 3)
        a = ws.command({"kind": "set_lr", "lr": 0.005})
        assert a["type"] == "ack", a
        lr_at = a["step"]

        # set_schedule (DynMuon): p changes at the acked step.
        ws.wait_records(lambda rs: max(r["step"] for r in steps_of(rs)) >= lr_at + 3)
        a = ws.command({"kind": "set_schedule", "schedule": {"type": "constant", "p": 0.25}})
        assert a["type"] == "ack", a
        sched_at = a["step"]
        ws.wait_records(lambda rs: max(r["step"] for r in steps_of(rs)) >= sched_at + 3)

        a = ws.command({"kind": "stop", "reason": "e2e done"})
        assert a["type"] == "ack", a
        assert host.wait() == 0, host.output()
    finally:
        ws.close()
        host.kill()

    records = read_log(host.run_dir)
    assert_log_sound(host.run_dir)
    steps = steps_of(records)
    # One record per step, 0 … last, in order: the bad record was refused, the real step 3 still logged.
    assert [r["step"] for r in steps] == list(range(len(steps)))
    assert all(isinstance(r["loss"], float) for r in steps)
    for r in steps:
        assert r["lr"] == (0.02 if r["step"] < lr_at else 0.005), r
        want_p = linear_p(r["step"]) if r["step"] < sched_at else 0.25
        assert r["p"] == pytest.approx(want_p, abs=1e-12), r
    assert paused_at < lr_at < sched_at
    bad = [r for r in records if r["kind"] == "alert" and r["code"] == "BAD_RECORD"]
    assert len(bad) == 1 and "/loss" in bad[0]["message"] and bad[0]["level"] == "warning", bad
    controls = [(r["command"], r["field"], r["step"]) for r in records if r["kind"] == "control"]
    assert controls == [("pause", "state", paused_at), ("resume", "state", paused_at), ("set_lr", "lr", lr_at),
                        ("set_schedule", "schedule", sched_at), ("stop", "state", controls[-1][2])]
    final = [r for r in records if r["kind"] == "state"][-1]
    assert final["state"] == "stopped"
    assert any(r["kind"] == "checkpoint" for r in records)  # the stop's final checkpoint


@needs_node
@pytest.mark.slow
def test_conv_kernels_are_matrices_adamw_refuses_a_schedule_and_non_finite_values_pause(tmp_path, assert_log_sound):
    host = Host(tmp_path, ["--model", "conv", "--opt", "adamw", "--steps", str(TOTAL), "--sleep", "0.01",
                           "--diag-every", "2", "--nan-at", "4", "--nan-grad-at", "8"])
    ws = WsClient(host.info["url"], host.info["token"])
    try:
        ws.subscribe(0)
        # A non-finite loss: an error alert, the update skipped, paused.
        ws.wait_records(lambda rs: rs and rs[-1]["kind"] == "state" and rs[-1]["state"] == "paused")
        assert max(r["step"] for r in steps_of(ws.records)) == 3
        # set_schedule on AdamW: refused while paused, nothing changed.
        e = ws.command({"kind": "set_schedule", "schedule": {"type": "constant", "p": 0.25}})
        assert e["type"] == "error" and e["code"] == "NOT_ALLOWED_NOW" and "no p schedule" in e["message"], e
        assert ws.command({"kind": "resume"})["type"] == "ack"
        # A non-finite gradient at step 8: the alert names the layer, paused again.
        ws.wait_records(lambda rs: sum(1 for r in rs if r["kind"] == "state" and r["state"] == "paused") == 2)
        assert ws.command({"kind": "resume"})["type"] == "ack"
        ws.wait_records(lambda rs: max(r["step"] for r in steps_of(rs)) >= 12)
        assert ws.command({"kind": "stop"})["type"] == "ack"
        assert host.wait() == 0, host.output()
    finally:
        ws.close()
        host.kill()

    records = read_log(host.run_dir)
    assert_log_sound(host.run_dir)
    alerts = [r for r in records if r["kind"] == "alert"]
    loss_alert = next(r for r in alerts if r["code"] == "NON_FINITE_LOSS")
    assert loss_alert["step"] == 4 and loss_alert["level"] == "error" and "paused" in loss_alert["message"]
    grad_alert = next(r for r in alerts if r["code"] == "NON_FINITE_GRADIENT")
    assert grad_alert["step"] == 8 and grad_alert["layer"] == "0.weight" and "paused" in grad_alert["message"]
    # The skipped updates did not count: one step record per step, none missing, every loss finite.
    steps = steps_of(records)
    assert [r["step"] for r in steps] == list(range(len(steps)))
    assert not any(r["kind"] == "control" and r["command"] == "set_schedule" for r in records)
    assert all(r["p"] is None for r in steps)

    # The conv kernel (6, 2, 3, 3) is the 6 × 18 matrix Muon sees, in run_started and in the spectra.
    started = next(r for r in records if r["kind"] == "run_started")
    # No config file, none in the script: the host's config for a PyTorch run and watch agree on the 4% budget.
    assert started["config"]["diagnostics"]["budgetPct"] == 4
    assert json.loads((host.run_dir / "config.json").read_text())["diagnostics"]["budgetPct"] == 4
    params = {p["name"]: p for p in started["params"]}
    assert params["0.weight"] == {"name": "0.weight", "shape": [6, 18], "route": "matrix"}
    assert params["3.weight"] == {"name": "3.weight", "shape": [4, 96], "route": "matrix"}
    spectra = [r for r in records if r["kind"] == "spectra" and r["layer"] == "0.weight"]
    assert spectra, "no spectra for the conv kernel"
    # min(6, 18) = 6 singular values; a (12, 9) or (36, 3) flattening would give 9 or 3.
    assert all(len(r["G"]) == 6 for r in spectra)


@needs_node
@pytest.mark.slow
def test_sigkill_of_the_python_process_is_logged_as_a_crash_with_its_last_lines(tmp_path, assert_log_sound):
    host = Host(tmp_path, ["--steps", str(TOTAL), "--sleep", "0.02", "--print-steps"])
    try:
        pid = host.python_pid()
        wait_log(host.run_dir, lambda rs: len(steps_of(rs)) >= 5)
        kill(pid)
        assert host.wait() == 1, host.output()
    finally:
        host.kill()
    text = (host.run_dir / "log.ndjson").read_text()
    assert text.endswith("\n")
    records = read_log(host.run_dir)
    assert_log_sound(host.run_dir)
    crash = records[-2]
    assert crash["kind"] == "alert" and crash["code"] == "CRASH" and "SIGKILL" in crash["message"]
    final = records[-1]
    assert final["kind"] == "state" and final["state"] == "crashed" and "SIGKILL" in final["reason"]
    steps = steps_of(records)
    assert [r["step"] for r in steps] == list(range(len(steps)))
    # The command's last lines (one per step) are carried in the crash record, the last one last. Each
    # step's line is printed after its record is queued for the host, so the log holds no step past the
    # last line's + 1 (it may hold fewer: records still queued when the process died are lost).
    printed = [l for l in host.lines if l.startswith("e2e train: step ")]
    assert crash["message"].endswith(printed[-1]) and final["reason"].endswith(printed[-1])
    assert crash["message"].startswith("the command was killed by SIGKILL; its last lines:")
    last_printed = int(printed[-1].split()[3])
    assert steps[-1]["step"] <= last_printed + 1


@needs_node
@pytest.mark.slow
def test_when_the_host_is_killed_python_trains_on_and_writes_the_rest_of_the_log(tmp_path, assert_log_sound):
    steps_total = 60
    losses = tmp_path / "losses.json"
    host = Host(tmp_path, ["--steps", str(steps_total), "--sleep", "0.05", "--losses", str(losses)],
                env={"MUONSCOPE_HOST_TIMEOUT_S": "1"})
    try:
        pid = host.python_pid()
        wait_log(host.run_dir, lambda rs: len(steps_of(rs)) >= 5)
        host.proc.kill()  # SIGKILL of node: no final records from the host
        logged_by_host = len(steps_of(read_log(host.run_dir)))
        host.proc.wait()
        # Python goes on, waits 1 s for the host, then writes the log itself, to the end of the run.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        assert not _alive(pid), "the training process did not finish"
    finally:
        host.kill()
        if _alive(pid):
            kill(pid)
    records = read_log(host.run_dir)
    assert_log_sound(host.run_dir)  # the seq continues from the host's last without a hole
    steps = [r["step"] for r in steps_of(records)]
    assert records[-1]["kind"] == "state" and records[-1]["state"] == "finished"
    # Every step the host had logged is there, and every step after the kill but those Python sent into
    # the dying connection before it saw the host go (the channel has no record acks, docs/python.md §4:
    # sent into a socket whose peer is gone, or unread in the killed host's buffer, a line is lost).
    # With a step every 50 ms that is at most a step or two; usually none.
    assert steps[:logged_by_host] == list(range(logged_by_host))
    lost = sorted(set(range(steps_total)) - set(steps))
    assert steps == sorted(set(steps)) and steps[-1] == steps_total - 1 and len(lost) <= 2, lost
    # The losses logged are the ones the loop computed.
    computed = json.loads(losses.read_text())
    assert sorted(map(int, computed)) == list(range(steps_total))
    assert [r["loss"] for r in steps_of(records)] == [computed[str(s)] for s in steps]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (the host is gone, so nobody reaps it) counts as ended.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@needs_node
@pytest.mark.slow
def test_resume_from_a_checkpoint_continues_the_same_loss_trajectory(tmp_path, assert_log_sound, monkeypatch):
    steps_total, k = 30, 12
    # The uninterrupted run, in this process, written directly (no host: conftest sets MUONSCOPE_NO_HOST),
    # with a checkpoint after step k.
    full = tmp_path / "full.json"
    monkeypatch.setattr(sys, "argv", ["train.py", "--steps", str(steps_total), "--checkpoint-at", str(k),
                                      "--losses", str(full), "--out", str(tmp_path / "direct")])
    for var in ("MUONSCOPE_CHANNEL", "MUONSCOPE_RUN_DIR"):
        monkeypatch.delenv(var, raising=False)
    train.main()
    (direct_dir,) = (tmp_path / "direct").iterdir()
    ckpt = direct_dir / "checkpoints" / f"step-{k:08d}.pt"
    assert ckpt.exists()

    # The resumed run, under the host.
    resumed = tmp_path / "resumed.json"
    host = Host(tmp_path / "hosted", ["--steps", str(steps_total), "--resume", str(ckpt), "--losses", str(resumed)])
    try:
        assert host.wait() == 0, host.output()
    finally:
        host.kill()
    a, b = json.loads(full.read_text()), json.loads(resumed.read_text())
    assert sorted(map(int, b)) == list(range(k, steps_total))
    # Exactly equal: the same ops on the same CPU, one thread order, the same batches (seeded per step),
    # and the optimizer state (momentum, DynMuon's step and schedule) restored bit for bit.
    assert [b[str(s)] for s in range(k, steps_total)] == [a[str(s)] for s in range(k, steps_total)]

    records = read_log(host.run_dir)
    assert_log_sound(host.run_dir)
    started = records[0]
    assert started["kind"] == "run_started" and started["step"] == k and started["resumedFrom"] == str(ckpt.resolve())
    steps = steps_of(records)
    assert [r["step"] for r in steps] == list(range(k, steps_total))
    assert [r["loss"] for r in steps] == [a[str(s)] for s in range(k, steps_total)]
    assert all(r["p"] == pytest.approx(0.5 * (1 - r["step"] / steps_total), abs=1e-12) for r in steps)
    assert records[-1]["kind"] == "state" and records[-1]["state"] == "finished"


def test_a_bad_resume_checkpoint_is_refused_before_anything_is_created(tmp_path):
    import torch
    from torch import nn

    import muonscope

    def model_and_opt():
        torch.manual_seed(0)
        m = nn.Linear(4, 3, bias=False)
        return m, torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    out = tmp_path / "runs"
    m, o = model_and_opt()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        muonscope.watch(m, o, total_steps=5, out=str(out), resume=str(tmp_path / "missing.pt"))
    # A checkpoint of two optimizers for a run of one: refused, the model's weights untouched.
    other, _ = model_and_opt()
    with torch.no_grad():
        other.weight.add_(1.0)
    two = tmp_path / "two.pt"
    torch.save({"model": other.state_dict(), "optimizer": [o.state_dict(), o.state_dict()], "step": 3}, two)
    before = m.weight.detach().clone()
    with pytest.raises(ValueError, match="2 optimizer state"):
        muonscope.watch(m, o, total_steps=5, out=str(out), resume=str(two))
    assert torch.equal(m.weight, before)
    torch.save({"model": other.state_dict(), "step": 3}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="not a muonscope checkpoint"):
        muonscope.watch(m, o, total_steps=5, out=str(out), resume=str(tmp_path / "partial.pt"))
    assert not out.exists()  # no run folder was made for any of them
