"""muonscope.watch on small CPU models: the records (checked by the protocol's own validator), the run
folder, matrices as Muon sees them, and commands from a fake host over a real TCP channel."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import muonscope
from muonscope.channel import ChannelClient
from muonscope.matrices import classify

REPO = Path(__file__).resolve().parents[3]


# ---------- helpers ----------

def run_ts(module, names, body, payload):
    """`body` (TypeScript, with the JSON `payload` as `input`) run by node with tsx, `names` imported from the
    repository's `module`; what it prints, parsed as JSON. Skips where node with tsx is missing."""
    if shutil.which("node") is None or not (REPO / "node_modules" / "tsx").exists():
        pytest.skip("node with tsx is needed to run the TypeScript validators")
    fd, name = tempfile.mkstemp(suffix=".ts")
    os.close(fd)
    script = Path(name)
    script.write_text(
        f"import {{ {', '.join(names)} }} from {json.dumps((REPO / module).as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        "const input = JSON.parse(readFileSync(0, 'utf8'));\n" + body)
    try:
        out = subprocess.run(["node", "--import", "tsx", str(script)], input=json.dumps(payload), capture_output=True, text=True, cwd=REPO, timeout=60)
    finally:
        script.unlink()
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def protocol_issues(records):
    """Every record through common/protocol.ts's validateLogRecord (seq and t added where the host would)."""
    stamped = [{"seq": i + 1, "t": 1, **r} if "seq" not in r else r for i, r in enumerate(records)]
    issues = run_ts("common/protocol.ts", ["validateLogRecord"],
                    "console.log(JSON.stringify(input.map((r: unknown) => { const v = validateLogRecord(r); return v.ok ? null : v.issues; })));\n", stamped)
    return [(r.get("kind"), i) for r, i in zip(stamped, issues) if i]


def channel_issues(hello, messages):
    """The hello and every Python → host message through the host's own validators (trainer/host/channel-messages.ts)."""
    return run_ts("trainer/host/channel-messages.ts", ["validateHello", "validatePythonMessage"],
                  "const out: unknown[] = [];\n"
                  "const h = validateHello(input.hello); if (!h.ok) out.push(['hello', h.issues]);\n"
                  "for (const m of input.messages) { const v = validatePythonMessage(m); if (!v.ok) out.push([m.type, v.issues]); }\n"
                  "console.log(JSON.stringify(out));\n", {"hello": hello, "messages": messages})


def read_log(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "log.ndjson").read_text().splitlines()]


class FakeHost:
    """The host's side of the channel, in a thread: welcomes the hello, collects what arrives, sends commands."""

    def __init__(self, run_dir):
        self.run_dir = str(run_dir)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.messages = []
        self.hello = None
        self.conn = None
        self.ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.conn, _ = self.server.accept()
        f = self.conn.makefile("rb")
        self.hello = json.loads(f.readline())
        self._send({"type": "welcome", "runId": "fake-run", "runDir": self.run_dir, "config": {}})
        self.ready.set()
        for line in f:
            self.messages.append(json.loads(line))

    def _send(self, msg):
        self.conn.sendall((json.dumps(msg) + "\n").encode())

    def command(self, run, cid, command, **extra):
        """Sends a command and waits until the client has it (so the next step boundary sees it)."""
        self.ready.wait(5)
        queued = run.channel.commands.qsize()
        self._send({"type": "command", "id": cid, "command": command, "source": "test", **extra})
        # Queued, or already taken by a paused step (which answers it).
        assert self.wait_for(lambda: run.channel.commands.qsize() > queued or self.replies(cid))

    def records(self, kind=None):
        rs = [m["record"] for m in list(self.messages) if m["type"] == "record"]
        return [r for r in rs if kind is None or r["kind"] == kind]

    def replies(self, cid):
        return [m for m in list(self.messages) if m["type"] in ("ack", "refused") and m.get("id") == cid]

    def wait_for(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.01)
        return False

    def finish(self, run):
        """Ends the run and waits for its bye: everything it sent has arrived."""
        run.close()
        assert self.wait_for(lambda: any(m["type"] == "bye" for m in self.messages))

    def close(self):
        if self.conn:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.conn.close()
        self.server.close()


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8, bias=False), nn.Tanh(), nn.Linear(8, 3, bias=False))


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 4, generator=g), torch.randn(32, 3, generator=g)


def train_step(run, model, opt, x, y, log_before=True):
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    if log_before:
        run.log(loss=loss)
    opt.step()
    if not log_before:
        run.log(loss=loss)
    return loss.item()


@pytest.fixture
def host(tmp_path):
    run_dir = tmp_path / "hosted-run"
    run_dir.mkdir()
    h = FakeHost(run_dir)
    yield h
    h.close()


def hosted(host, model, opt, **kw):
    run = muonscope.watch(model, opt, total_steps=kw.pop("total_steps", 20), name="t", channel=host.address, **kw)
    assert host.ready.wait(5)
    return run


def in_thread(fn):
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


# ---------- matrices ----------

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.conv = nn.Conv2d(2, 3, kernel_size=(3, 2))
        self.proj = nn.Linear(6, 5)
        self.norm = nn.LayerNorm(5)
        self.lm_head = nn.Linear(5, 10, bias=False)


def test_matrices_as_muon_sees_them_conv_kernels_flattened():
    routes = {p.name: (p.route, p.rows, p.cols) for p in classify(Net())}
    assert routes == {
        "embed.weight": ("non-matrix", 0, 0),
        "conv.weight": ("matrix", 3, 2 * 3 * 2),
        "conv.bias": ("non-matrix", 0, 0),
        "proj.weight": ("matrix", 5, 6),
        "proj.bias": ("non-matrix", 0, 0),
        "norm.weight": ("non-matrix", 0, 0),
        "norm.bias": ("non-matrix", 0, 0),
        "lm_head.weight": ("non-matrix", 0, 0),
    }


def test_a_conv_kernel_gets_spectra_of_its_flattened_matrix(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(4, 2, 6, 6), torch.randn(4, 2)
    with muonscope.watch(model, opt, total_steps=2, out=str(tmp_path), config={"diagnostics": {"every": 1}}) as run:
        for _ in range(2):
            train_step(run, model, opt, x, y)
    log = read_log(run.run_dir)
    conv = [r for r in log if r["kind"] == "spectra" and r["layer"] == "0.weight"]
    assert len(conv) == 2 and len(conv[0]["G"]) == 3  # (3, 18): three singular values
    g = model[0].weight.grad.reshape(3, 18).double()  # step 1's gradient, still in .grad
    torch.testing.assert_close(torch.tensor(conv[1]["G"], dtype=torch.float64), torch.linalg.svdvals(g), rtol=1e-6, atol=1e-9)
    started = log[0]
    assert {p["name"]: p["route"] for p in started["params"]} == {"0.weight": "matrix", "0.bias": "non-matrix", "2.weight": "matrix", "2.bias": "non-matrix"}
    assert not [r for r in log if r["kind"] == "layer_stats"]  # SGD has no p: spectra only


# ---------- the direct writer ----------

def test_direct_run_folder_and_every_record_valid(tmp_path, capsys):
    model = mlp()
    matrices = [p for p in model.parameters()]
    opt = torch.optim.Muon(matrices, lr=0.02)
    x, y = batch()
    hx, hy = batch(2)
    probe = lambda: nn.functional.mse_loss(model(hx), hy)
    noise = lambda i: nn.functional.mse_loss(model(hx[i * 8:(i + 1) * 8]), hy[i * 8:(i + 1) * 8])
    with muonscope.watch(model, opt, total_steps=4, name="muon run", out=str(tmp_path), probe=probe, noise_probe=noise,
                         microbatch_size=8, config={"diagnostics": {"every": 1, "adaptive": False, "microbatches": 4}}) as run:
        for s in range(4):
            run.log(tokens=32)
            train_step(run, model, opt, x, y, log_before=(s % 2 == 0))  # both orders
            run.log(val_loss=probe().item())
    err = capsys.readouterr().err
    assert str(run.run_dir) in err and "muonscope inspect" in err
    assert run.run_dir.name.startswith("muon-run-") and (run.run_dir / "config.json").exists()
    log = read_log(run.run_dir)
    assert [r["seq"] for r in log] == list(range(1, len(log) + 1))
    assert all(b["t"] >= a["t"] for a, b in zip(log, log[1:]))
    kinds = {r["kind"] for r in log}
    assert kinds >= {"run_started", "step", "eval", "spectra", "layer_stats", "curvature", "noise", "diagnostics_cost", "state"}
    assert protocol_issues(log) == []
    steps = [r for r in log if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [0, 1, 2, 3] and all(r["p"] == 0.0 and r["lr"] == 0.02 for r in steps)
    assert all(r["tokensPerS"] == pytest.approx(32 * 1000 / r["stepMs"], rel=1e-12) for r in steps)
    assert [r["step"] for r in log if r["kind"] == "eval"] == [0, 1, 2, 3]
    stats = [r for r in log if r["kind"] == "layer_stats"][-1]["layers"][0]
    assert stats["method"] == "ns" and "updateCosine" in stats and stats["updateCosineLag"] == 1
    assert 0 <= stats["nsNearOne"] <= min(stats["rows"], stats["cols"]) and stats["nsPolarError"] >= 0
    # Muon's O is Newton–Schulz output: its singular values sit near 1, far from an Adam-like direction's.
    assert 0.5 < stats["O"]["sigmaMax"] < 1.5
    assert log[-1]["kind"] == "state" and log[-1]["state"] == "finished"


def test_layer_stats_recover_muons_direction_exactly(tmp_path):
    """O from the weight change equals Newton–Schulz of the update Muon formed (recomputed here)."""
    model = mlp()
    opt = torch.optim.Muon(model.parameters(), lr=0.05, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    x, y = batch()
    with muonscope.watch(model, opt, total_steps=1, out=str(tmp_path), config={"diagnostics": {"every": 1}}) as run:
        w0 = model[2].weight.detach().clone()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        g = model[2].weight.grad.detach().clone()
        run.log(loss=loss)
        opt.step()
    from torch.optim._muon import _zeropower_via_newtonschulz
    # torch's first Muon step, operation for operation (Newton–Schulz runs in bfloat16, so the input's
    # rounding matters): the buffer lerps from zero, the nesterov update lerps g towards it.
    buf = torch.zeros_like(g).lerp_(g, 1 - 0.95)
    update = g.lerp(buf, 0.95)
    o = _zeropower_via_newtonschulz(update, (3.4445, -4.775, 2.0315), 5, 1e-7)
    spectra = [r for r in read_log(run.run_dir) if r["kind"] == "spectra" and r["layer"] == "2.weight"][0]
    torch.testing.assert_close(torch.tensor(spectra["O"], dtype=torch.float64), torch.linalg.svdvals(o.double()), rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(torch.tensor(spectra["W"], dtype=torch.float64), torch.linalg.svdvals(model[2].weight.detach().double()), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(torch.tensor(spectra["G"], dtype=torch.float64), torch.linalg.svdvals(g.double()), rtol=1e-6, atol=1e-9)
    assert not torch.equal(w0, model[2].weight)


def test_loss_and_tokens_logged_after_the_step_belong_to_it(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    with muonscope.watch(model, opt, total_steps=2, out=str(tmp_path), config={"task": {"type": "regression"}}) as run:
        for i in range(2):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.log(loss=loss.item() + i, tokens=100 * (i + 1), val_loss=float("nan") if i == 1 else 0.5)
    log = read_log(run.run_dir)
    steps = [r for r in log if r["kind"] == "step"]
    assert [r["tokensPerS"] * r["stepMs"] / 1000 for r in steps] == pytest.approx([100, 200], rel=1e-12)
    assert log[0]["task"]["name"] == "regression"
    assert [(r["kind"], r["step"]) for r in log if r["kind"] in ("eval", "alert")] == [("eval", 0), ("alert", 1)]
    assert protocol_issues(log) == []


def test_no_loss_logged_gives_no_step_record_and_one_warning(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    with muonscope.watch(model, opt, total_steps=3, out=str(tmp_path)) as run:
        for _ in range(3):
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    log = read_log(run.run_dir)
    assert not [r for r in log if r["kind"] == "step"]
    assert [r["code"] for r in log if r["kind"] == "alert"] == ["NO_LOSS"]


def test_bad_arguments_are_refused_clearly(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="total_steps"):
        muonscope.watch(model, opt, total_steps=0, out=str(tmp_path))
    with pytest.raises(ValueError, match="every"):
        muonscope.watch(model, opt, total_steps=3, out=str(tmp_path), config={"diagnostics": {"every": 0}})
    with pytest.raises(ValueError, match="microbatch_size"):
        muonscope.watch(model, opt, total_steps=3, out=str(tmp_path), noise_probe=lambda i: None)
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_the_hosts_run_config_sets_the_diagnostics_unless_the_script_does(tmp_path, monkeypatch):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"name": "hosted", "diagnostics": {"every": 7, "budgetPct": 25, "topK": 2}}))
    monkeypatch.setenv("MUONSCOPE_CONFIG", str(cfg))
    out = tmp_path / "runs"
    with muonscope.watch(model, opt, total_steps=1, out=str(out)) as run:
        assert (run.config["diagnostics"]["every"], run.config["diagnostics"]["budgetPct"]) == (7, 25)
        assert "topK" not in run.config["diagnostics"]  # only what the Python side uses
    with muonscope.watch(model, opt, total_steps=1, out=str(out), config={"diagnostics": {"every": 5}}) as run:
        assert (run.config["diagnostics"]["every"], run.config["diagnostics"]["budgetPct"]) == (5, 25)
    cfg.write_text("not json")
    with pytest.raises(ValueError, match="MUONSCOPE_CONFIG"):
        muonscope.watch(model, opt, total_steps=1, out=str(out))


def test_run_started_names_the_optimizer_that_runs_as_the_label_and_the_advisor_read_it(tmp_path):
    # The optimizer section comes from the optimizer, not from the caller's config (which could name another).
    model = mlp()
    matrices = [p for p in model.parameters() if p.ndim == 2]
    dyn = muonscope.DynMuon(matrices, total_steps=5, lr=0.01, schedule={"type": "constant", "p": -0.25})
    with muonscope.watch(model, dyn, total_steps=5, out=str(tmp_path), batch_size=16, config={"optimizer": {"type": "adamw"}}) as run:
        section = run.config["optimizer"]
    assert section == {"type": "dynmuon", "lr": 0.01, "mode": "exact", "normalization": "frobenius", "schedule": {"type": "constant", "p": -0.25}}
    assert run.config["batchSize"] == 16
    started = read_log(run.run_dir)[0]
    assert started["kind"] == "run_started" and started["config"]["optimizer"] == section
    for opt, expected in ((torch.optim.AdamW(model.parameters(), lr=0.003), {"type": "adamw", "lr": 0.003}),
                          (torch.optim.SGD(model.parameters(), lr=0.1), {"type": "sgd", "lr": 0.1}),
                          (torch.optim.Muon(matrices, lr=0.02), {"type": "muon", "lr": 0.02})):
        with muonscope.watch(model, opt, total_steps=1, out=str(tmp_path)) as run:
            assert run.config["optimizer"] == expected and "batchSize" not in run.config


# ---------- commands over the channel ----------

def test_hello_carries_the_token_and_records_come_without_seq(host, monkeypatch):
    monkeypatch.setenv("MUONSCOPE_CHANNEL_TOKEN", "s3cret")
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    run = hosted(host, model, opt, total_steps=1)
    train_step(run, model, opt, *batch())
    run.close()
    assert host.wait_for(lambda: any(m["type"] == "bye" for m in host.messages))
    assert host.hello["token"] == "s3cret" and host.hello["protocol"] == 1
    rs = host.records()
    assert [r["kind"] for r in rs] == ["run_started", "step", "spectra", "spectra", "diagnostics_cost", "state"]
    assert all("seq" not in r and "t" not in r for r in rs)
    assert rs[0]["runId"] == "fake-run" and protocol_issues(rs) == []


def test_every_channel_message_passes_the_hosts_validators(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = hosted(host, model, opt)
    host.command(run, "ok", {"kind": "set_lr", "lr": 0.2})
    host.command(run, "no", {"kind": "resume"})
    train_step(run, model, opt, *batch())
    host.finish(run)
    types = [m["type"] for m in host.messages]
    assert {"record", "ack", "refused", "bye"} <= set(types)
    assert channel_issues(host.hello, host.messages) == []


def test_pause_blocks_the_step_until_resume(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = hosted(host, model, opt)
    x, y = batch()
    train_step(run, model, opt, x, y)
    host.command(run, "c1", {"kind": "pause", "reason": "look"})
    w = model[0].weight.detach().clone()
    t, out = in_thread(lambda: train_step(run, model, opt, x, y))
    time.sleep(0.3)
    assert t.is_alive() and torch.equal(w, model[0].weight)  # blocked before the update
    assert host.wait_for(lambda: host.replies("c1"))
    host.command(run, "c2", {"kind": "resume"})
    t.join(5)
    assert not t.is_alive() and "error" not in out and not torch.equal(w, model[0].weight)
    host.finish(run)
    assert host.replies("c1")[0] == {"type": "ack", "id": "c1", "step": 1}
    assert host.replies("c2")[0] == {"type": "ack", "id": "c2", "step": 1}
    controls = [(r["command"], r["old"], r["new"], r["step"], r["commandId"], r["reason"]) for r in host.records("control")]
    assert controls == [("pause", "running", "paused", 1, "c1", "look"), ("resume", "paused", "running", 1, "c2", "")]
    assert [(r["state"], r["step"]) for r in host.records("state")][:2] == [("paused", 1), ("running", 1)]
    assert protocol_issues(host.records()) == []


def test_step_n_runs_n_steps_then_pauses_again(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = hosted(host, model, opt)
    x, y = batch()
    host.command(run, "p", {"kind": "pause"})
    host.command(run, "s", {"kind": "step", "n": 2})
    t, out = in_thread(lambda: [train_step(run, model, opt, x, y) for _ in range(3)])
    assert host.wait_for(lambda: run.steps_done == 2)
    time.sleep(0.2)
    assert t.is_alive() and run.steps_done == 2 and run.state == "paused"
    host.command(run, "r", {"kind": "resume"})
    t.join(5)
    assert run.steps_done == 3 and host.replies("s")[0]["detail"] == "running 2 step(s), then pausing"
    run.close()


def test_set_lr_takes_effect_at_the_acked_step(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = hosted(host, model, opt)
    x, y = batch()
    train_step(run, model, opt, x, y)
    train_step(run, model, opt, x, y)
    host.command(run, "lr", {"kind": "set_lr", "lr": 0.5, "reason": "faster"})
    w0 = model[0].weight.detach().clone()
    model.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    g = model[0].weight.grad.detach().clone()
    model.zero_grad()
    train_step(run, model, opt, x, y)
    host.finish(run)
    # Plain SGD: the acked step moved the weights by exactly −0.5·g.
    torch.testing.assert_close(model[0].weight.detach(), w0 - 0.5 * g, rtol=0, atol=1e-7)
    assert host.replies("lr")[0] == {"type": "ack", "id": "lr", "step": 2}
    assert [(r["step"], r["lr"]) for r in host.records("step")] == [(0, 0.1), (1, 0.1), (2, 0.5)]
    (c,) = host.records("control")
    assert (c["command"], c["field"], c["old"], c["new"], c["step"]) == ("set_lr", "lr", 0.1, 0.5, 2)
    run.close()


def test_set_lr_keeps_the_ratio_between_param_groups(host):
    model = mlp()
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1}, {"params": model[2].parameters(), "lr": 0.01}])
    run = hosted(host, model, opt)
    host.command(run, "lr", {"kind": "set_lr", "lr": 0.3})
    train_step(run, model, opt, *batch())
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.3, 0.03], rel=1e-12)
    run.close()


def test_set_schedule_on_adamw_is_refused_and_nothing_changes(host):
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    run = hosted(host, model, opt)
    x, y = batch()
    train_step(run, model, opt, x, y)
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    host.command(run, "sch", {"kind": "set_schedule", "schedule": {"type": "constant", "p": 0.5}})
    train_step(run, model, opt, x, y)
    host.finish(run)
    (reply,) = host.replies("sch")
    assert reply["type"] == "refused" and reply["code"] == "NOT_ALLOWED_NOW" and "no p schedule" in reply["message"]
    assert groups == [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    assert host.records("control") == [] and [r["p"] for r in host.records("step")] == [None, None]
    run.close()


def test_an_unknown_or_malformed_command_is_refused(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = hosted(host, model, opt)
    host.command(run, "bad", {"kind": "set_lr", "lr": -1})
    host.command(run, "odd", {"kind": "teleport"})
    host.command(run, "diag", {"kind": "set_diagnostics", "every": 5, "adaptive": "yes"})
    host.command(run, "res", {"kind": "resume"})
    train_step(run, model, opt, *batch())
    host.finish(run)
    assert [host.replies(i)[0]["code"] for i in ("bad", "odd", "diag", "res")] == ["INVALID_COMMAND", "INVALID_COMMAND", "INVALID_COMMAND", "NOT_ALLOWED_NOW"]
    assert opt.param_groups[0]["lr"] == 0.1 and host.records("control") == [] and run.diagnostics_settings()["every"] == 100


def test_set_diagnostics_changes_the_cadence_from_the_acked_step(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    run = hosted(host, model, opt, config={"diagnostics": {"every": 100}})
    x, y = batch()
    train_step(run, model, opt, x, y)  # step 0: spectra (0 % 100 == 0)
    host.command(run, "d", {"kind": "set_diagnostics", "every": 2, "adaptive": False})
    for _ in range(4):
        train_step(run, model, opt, x, y)
    host.finish(run)
    assert sorted({r["step"] for r in host.records("spectra")}) == [0, 2, 4]
    (c,) = host.records("control")
    assert (c["step"], c["old"]["every"], c["new"]) == (1, 100, {"every": 2, "adaptive": False, "budgetPct": 4.0})
    run.close()


def test_suggestion_commands_are_the_hosts_and_refused_here(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = hosted(host, model, opt)
    host.command(run, "a", {"kind": "apply_suggestion", "id": "s-1"})
    host.command(run, "d", {"kind": "dismiss_suggestion", "id": "s-1"})
    host.command(run, "r", {"kind": "race", "id": "s-1", "steps": 3})
    train_step(run, model, opt, *batch())
    host.finish(run)
    assert [host.replies(i)[0]["code"] for i in ("a", "d", "r")] == ["NOT_ALLOWED_NOW"] * 3
    assert "host's" in host.replies("a")[0]["message"] and opt.param_groups[0]["lr"] == 0.1
    assert host.records("control") == [] and host.records("suggestion_outcome") == []


def test_ctrl_c_in_the_loop_stops_the_run_with_a_final_checkpoint(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    with pytest.raises(KeyboardInterrupt):
        with muonscope.watch(model, opt, total_steps=5, out=str(tmp_path)) as run:
            train_step(run, model, opt, x, y)
            raise KeyboardInterrupt
    log = read_log(run.run_dir)
    assert [r["kind"] for r in log][-2:] == ["checkpoint", "state"]
    assert (log[-1]["state"], log[-1]["reason"], log[-2]["step"]) == ("stopped", "interrupted (SIGINT)", 1)
    assert (run.run_dir / "checkpoints" / "step-00000001.pt").exists()


def test_non_finite_gradient_pauses_with_an_alert_naming_the_layer(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = hosted(host, model, opt)
    x, y = batch()
    train_step(run, model, opt, x, y)
    w = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    model[2].weight.grad[0, 1] = float("nan")
    run.log(loss=loss)
    t, out = in_thread(lambda: opt.step())
    assert host.wait_for(lambda: host.records("alert"))
    (alert,) = host.records("alert")
    assert (alert["code"], alert["layer"], alert["level"], alert["step"]) == ("NON_FINITE_GRADIENT", "2.weight", "error", 1)
    assert t.is_alive() and run.state == "paused"
    host.command(run, "go", {"kind": "resume"})
    t.join(5)
    assert all(torch.equal(a, b) for a, b in zip(w, model.parameters()))  # the update was skipped
    assert run.steps_done == 1
    train_step(run, model, opt, x, y)
    host.finish(run)
    assert [r["step"] for r in host.records("step")] == [0, 1]
    assert protocol_issues(host.records()) == []


def test_checkpoint_command_writes_a_file_that_loads(host):
    model = mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    run = hosted(host, model, opt)
    x, y = batch()
    train_step(run, model, opt, x, y)
    host.command(run, "ck", {"kind": "checkpoint", "reason": "keep"})
    train_step(run, model, opt, x, y)
    host.finish(run)
    file = host.replies("ck")[0]["detail"]
    assert file.endswith("checkpoints/step-00000001.pt") and Path(file).parent.parent == Path(host.run_dir)
    (rec,) = host.records("checkpoint")
    assert (rec["file"], rec["step"], rec["reason"]) == (file, 1, "keep")
    saved = torch.load(file, weights_only=True)
    fresh = mlp(seed=9)
    fresh.load_state_dict(saved["model"])
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.01)
    fresh_opt.load_state_dict(saved["optimizer"])
    assert saved["step"] == 1 and int(fresh_opt.state[fresh[0].weight]["step"]) == 1
    assert not [f for f in Path(file).parent.iterdir() if f.name.endswith(".tmp")]
    run.close()


def test_stop_raises_stop_training_after_a_final_checkpoint(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    with hosted(host, model, opt) as run:
        for i in range(10):
            if i == 2:
                host.command(run, "st", {"kind": "stop", "reason": "enough"})
            train_step(run, model, opt, x, y)
    assert run.steps_done == 2 and run.should_stop
    assert host.wait_for(lambda: any(m["type"] == "bye" for m in host.messages))
    kinds = [r["kind"] for r in host.records()][-3:]
    assert kinds == ["control", "checkpoint", "state"] and host.records("state")[-1]["state"] == "stopped"
    assert host.replies("st")[0] == {"type": "ack", "id": "st", "step": 2}


def test_host_away_then_records_go_to_the_run_folder(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "log.ndjson").write_text('{"seq":1,"t":1,"kind":"eval","step":0,"valLoss":1}\n')
    h = FakeHost(run_dir)
    client = ChannelClient(h.address, "tok", grace_s=0.2, retry_s=0.02)
    assert h.ready.wait(5)
    client.send_record({"kind": "eval", "step": 1, "valLoss": 2.0})
    assert h.wait_for(lambda: len(h.records()) == 1)
    h.close()  # the host goes away and does not come back
    # Once the client has seen it go. (A record sent in the instant before that goes into a dead socket and
    # is lost: the channel has no record acknowledgements.)
    assert h.wait_for(lambda: not client.connected)
    for i in range(3):
        client.send_record({"kind": "eval", "step": 2 + i, "valLoss": 3.0})
        time.sleep(0.05)
    assert h.wait_for(lambda: client.direct is not None, timeout=5)
    client.send_record({"kind": "eval", "step": 9, "valLoss": 4.0})
    client.close("finished")
    log = read_log(run_dir)
    assert [r["seq"] for r in log] == [1, 2, 3, 4, 5] and [r["step"] for r in log] == [0, 2, 3, 4, 9]


def test_the_queue_drops_the_oldest_diagnostics_never_steps(tmp_path):
    h = FakeHost(tmp_path)
    client = ChannelClient(h.address, "tok", grace_s=60, retry_s=0.02, max_queue=3)
    assert h.ready.wait(5)
    h.close()
    with client._cv:  # hold the writer so the queue fills
        client._sock = None
        client._out.extend({"type": "record", "record": r} for r in [
            {"kind": "spectra", "step": 0}, {"kind": "step", "step": 0}, {"kind": "noise", "step": 0}])
        client._out.append({"type": "record", "record": {"kind": "state", "step": 1}})
        client._drop_oldest_diagnostic()
        kinds = [m["record"]["kind"] for m in client._out]
        client._out.clear()
    assert kinds == ["step", "noise", "state"] and client.dropped == 1


def test_dynmuon_shows_p_takes_set_schedule_and_gets_layer_stats(host):
    optim = pytest.importorskip("muonscope.optim")  # DynMuon (another part of the package)
    model = mlp()
    opt = optim.DynMuon(model.parameters(), total_steps=20, lr=0.02, schedule={"type": "constant", "p": 0.5})
    run = hosted(host, model, opt, config={"diagnostics": {"every": 1}})
    x, y = batch()
    train_step(run, model, opt, x, y)
    host.command(run, "sch", {"kind": "set_schedule", "schedule": {"type": "constant", "p": -0.25}, "reason": "try"})
    train_step(run, model, opt, x, y)
    host.finish(run)
    assert [r["p"] for r in host.records("step")] == [0.5, -0.25]  # the p each step used
    (c,) = host.records("control")
    assert (c["command"], c["step"], c["old"], c["new"]) == ("set_schedule", 1, {"type": "constant", "p": 0.5},
                                                             {"fromStep": 1, "schedule": {"type": "constant", "p": -0.25}})
    assert host.replies("sch")[0]["step"] == 1
    stats = host.records("layer_stats")
    assert [l["p"] for l in stats[-1]["layers"]] == [-0.25, -0.25]
    # The recovered direction's RMS equals what DynMuon reports for its own step.
    info = opt.step_info(model[0].weight)
    assert stats[-1]["layers"][0]["updateRms"] == pytest.approx(info["updateRms"], rel=1e-5)
    assert protocol_issues(host.records()) == []


def test_a_loop_that_breaks_on_should_stop_gets_the_stop_carried_out(host):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    run = hosted(host, model, opt)
    train_step(run, model, opt, x, y)
    assert not run.should_stop
    host.command(run, "st", {"kind": "stop"})
    assert run.should_stop  # seen before any step boundary applied it
    host.finish(run)
    assert host.replies("st")[0] == {"type": "ack", "id": "st", "step": 1}
    assert [r["kind"] for r in host.records()][-3:] == ["control", "checkpoint", "state"]
    assert host.records("state")[-1]["state"] == "stopped" and (Path(host.run_dir) / "checkpoints" / "step-00000001.pt").exists()


def test_without_a_host_a_non_finite_loss_skips_the_update_and_goes_on(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch()
    with muonscope.watch(model, opt, total_steps=2, out=str(tmp_path)) as run:
        train_step(run, model, opt, x, y)
        w = [p.detach().clone() for p in model.parameters()]
        nn.functional.mse_loss(model(x), y).backward()
        run.log(loss=float("inf"))
        opt.step()  # does not block: nobody could resume it
        assert all(torch.equal(a, b) for a, b in zip(w, model.parameters()))
        train_step(run, model, opt, x, y)
    log = read_log(run.run_dir)
    (alert,) = [r for r in log if r["kind"] == "alert"]
    assert alert["code"] == "NON_FINITE_LOSS" and "skipped" in alert["message"] and "goes on" in alert["message"] and "layer" not in alert
    assert [r["step"] for r in log if r["kind"] == "step"] == [0, 1] and log[-1]["state"] == "finished"
    assert not [r for r in log if r["kind"] == "state" and r["state"] == "paused"]


def test_a_channel_nobody_listens_on_falls_back_to_the_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MUONSCOPE_RUN_DIR", raising=False)
    closed = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with muonscope.watch(model, opt, total_steps=1, out=str(tmp_path), channel=address) as run:
        train_step(run, model, opt, *batch())
    assert run.channel is None and f"no host at {address}" in capsys.readouterr().err
    # Plain SGD keeps no momentum: no spectra (M is required), only their cost.
    assert [r["kind"] for r in read_log(run.run_dir)] == ["run_started", "step", "diagnostics_cost", "state"]


def test_muon_for_matrices_and_adamw_for_the_rest_make_one_run(host):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    matrices = [p for p in model.parameters() if p.dim() == 2]
    others = [p for p in model.parameters() if p.dim() != 2]
    muon = torch.optim.Muon(matrices, lr=0.02)
    adamw = torch.optim.AdamW(others, lr=0.001)
    run = hosted(host, model, [muon, adamw], config={"diagnostics": {"every": 1}})
    x, y = batch()
    for i in range(3):
        if i == 2:
            host.command(run, "lr", {"kind": "set_lr", "lr": 0.04})
            host.command(run, "ck", {"kind": "checkpoint"})
        loss = nn.functional.mse_loss(model(x), y)
        muon.zero_grad(); adamw.zero_grad()
        loss.backward()
        run.log(loss=loss)
        muon.step()
        adamw.step()
    host.finish(run)
    assert [(r["step"], r["lr"], r["p"]) for r in host.records("step")] == [(0, 0.02, 0.0), (1, 0.02, 0.0), (2, 0.04, 0.0)]
    assert muon.param_groups[0]["lr"] == 0.04 and adamw.param_groups[0]["lr"] == pytest.approx(0.002, rel=1e-12)
    assert [len(r["layers"]) for r in host.records("layer_stats")] == [2, 2, 2]
    assert {r["layer"] for r in host.records("spectra")} == {"0.weight", "2.weight"}
    saved = torch.load(host.replies("ck")[0]["detail"], weights_only=True)
    assert isinstance(saved["optimizer"], list) and len(saved["optimizer"]) == 2
    assert protocol_issues(host.records()) == []


def test_watch_refuses_what_is_not_an_optimizer(tmp_path):
    model = mlp()
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        muonscope.watch(model, "adam", total_steps=3, out=str(tmp_path))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        muonscope.watch(model, [opt, opt], total_steps=3, out=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_watching_with_every_diagnostic_does_not_change_the_training(tmp_path):
    def train(watched):
        torch.manual_seed(7)
        model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 3))
        muon = torch.optim.Muon([p for p in model.parameters() if p.dim() == 2], lr=0.02)
        adamw = torch.optim.AdamW([p for p in model.parameters() if p.dim() != 2], lr=0.01)
        x, y = batch()
        hx, hy = batch(5)
        probe = lambda: nn.functional.mse_loss(model(hx), hy)  # dropout active: it draws random numbers
        noise = lambda i: nn.functional.mse_loss(model(hx[i * 8:(i + 1) * 8]), hy[i * 8:(i + 1) * 8])
        run = muonscope.watch(model, [muon, adamw], total_steps=4, out=str(tmp_path), probe=probe, noise_probe=noise, microbatch_size=8,
                              config={"diagnostics": {"every": 1, "adaptive": False, "microbatches": 4}}) if watched else None
        for _ in range(4):
            loss = nn.functional.mse_loss(model(x), y)
            muon.zero_grad(); adamw.zero_grad()
            loss.backward()
            if run:
                run.log(loss=loss)
            muon.step(); adamw.step()
        if run:
            run.close()
            kinds = {r["kind"] for r in read_log(run.run_dir)}
            assert {"curvature", "noise", "layer_stats"} <= kinds
        return [p.detach().clone() for p in model.parameters()], torch.rand(3)

    plain, plain_rng = train(False)
    watched, watched_rng = train(True)
    assert all(torch.equal(a, b) for a, b in zip(plain, watched)) and torch.equal(plain_rng, watched_rng)


def test_the_default_budget_is_the_hosts_for_a_torch_run():
    """watch's own default and the one `muonscope run` fills into a config without one are one number."""
    from muonscope.watch import DIAGNOSTICS_DEFAULTS
    host = run_ts("trainer/run/config-defaults.ts", ["TORCH_DIAGNOSTICS_BUDGET_PCT"],
                  "console.log(JSON.stringify(TORCH_DIAGNOSTICS_BUDGET_PCT));\n", None)
    assert DIAGNOSTICS_DEFAULTS["budgetPct"] == host == 4


def test_the_budget_is_charged_with_all_of_watchs_time_in_the_hooks(tmp_path, monkeypatch):
    """What the scheduler spent (the diagnostics' runs and the rest of watch's hooks) is the time inside
    watch's optimizer hooks, measured from outside them."""
    from muonscope.watch import Run
    inside = [0.0]
    for name in ("_pre_hook", "_post_hook"):  # registered from the class at watch(): patched before it
        def timed(self, *args, _inner=getattr(Run, name), **kwargs):
            started = time.perf_counter()
            try:
                return _inner(self, *args, **kwargs)
            finally:
                inside[0] += (time.perf_counter() - started) * 1000
        monkeypatch.setattr(Run, name, timed)
    model = mlp()
    opt = torch.optim.Muon(list(model.parameters()), lr=0.02)
    x, y = batch()
    with muonscope.watch(model, opt, total_steps=30, out=str(tmp_path), config={"diagnostics": {"every": 10}}) as run:
        for _ in range(30):
            train_step(run, model, opt, x, y)
    spent = run.observer.scheduler
    assert spent.total_hooks_ms > 0 and spent.total_diag_ms > 0
    assert spent.total_hooks_ms + spent.total_diag_ms == pytest.approx(inside[0], rel=0.05)  # the wrappers themselves: ~2% here
    # Without the hooks' share the gap is what they cost.
    assert spent.total_hooks_ms > 0.1 * inside[0], (spent.total_hooks_ms, inside[0])
    last = [r for r in read_log(run.run_dir) if r["kind"] == "diagnostics_cost"][-1]
    assert last["overheadPct"] > 100 * spent.total_diag_ms / spent.total_step_ms


def test_the_fused_gradient_check_finds_every_non_finite_value_and_nothing_else(tmp_path):
    """The per-step check reads one infinity norm per device and dtype: NaN, +inf and −inf in any tensor of
    any dtype are found and named, and huge finite gradients (whose 2-norm overflows) are not."""
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    model[2].to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with muonscope.watch(model, opt, total_steps=1, out=str(tmp_path)) as run:
        names = [n for n, _ in model.named_parameters()]
        for p in model.parameters():
            p.grad = torch.full_like(p, 3e38 if p.dtype == torch.float32 else 1e38)
        assert run._non_finite_layer() is None
        for bad in (float("nan"), float("inf"), -float("inf")):
            for name, p in model.named_parameters():
                keep = p.grad.clone()
                p.grad.view(-1)[-1] = bad
                assert run._non_finite_layer() == name, (bad, name)
                p.grad = keep
        model[0].weight.grad = None  # a parameter without a gradient is skipped
        assert run._non_finite_layer() is None
        assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
        opt.zero_grad(set_to_none=True)
