"""`python train.py` on its own (docs/python.md §4, "No host at all"): watch() finds the muonscope CLI and
Node, starts the host for itself (`muonscope run --attach-pid`), and says on stderr where the dashboard
is; without them (or with MUONSCOPE_NO_HOST=1) it writes the run folder directly and says how to open it.

The hosted tests run the checkout's CLI through tsx (a two-line wrapper given as MUONSCOPE_CLI) and a real
torch script in a subprocess: slow (node and torch start-up), marked `slow`.
"""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch

import muonscope
from muonscope import autostart
from muonscope.autostart import find_host_command, host_config
from muonscope.runfolder import how_to_open

REPO = Path(__file__).resolve().parents[3]
NODE = shutil.which("node")
DASHBOARD = re.compile(r"^muonscope: dashboard (http://127\.0\.0\.1:(\d+)/#token=([0-9a-f]{32}))$", re.M)


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No CLI from the environment: only what a test puts there is found; `node` is a stand-in."""
    for name in ("MUONSCOPE_CLI", "MUONSCOPE_NODE", "MUONSCOPE_NO_HOST", "MUONSCOPE_CHANNEL", "MUONSCOPE_CHANNEL_TOKEN", "MUONSCOPE_RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    bin_dir = tmp_path / "bin"
    node = _executable(bin_dir / "node", "#!/bin/sh\nexit 0\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    return node


# ---- where the CLI is found ----

def test_the_cli_is_found_in_the_documented_order(clean_env, tmp_path, monkeypatch):
    node = str(clean_env)
    work = tmp_path / "project" / "sub"
    work.mkdir(parents=True)
    cmd, why = find_host_command(str(work))
    assert cmd is None and "no muonscope CLI" in why

    # 3. `muonscope` on PATH (a link to a .js file runs with node, as npm's global links are).
    global_js = tmp_path / "global" / "lib" / "cli.js"
    _executable(global_js, "#!/usr/bin/env node\n")  # npm makes a bin executable
    (tmp_path / "bin" / "muonscope").symlink_to(global_js)
    cmd, _ = find_host_command(str(work))
    assert (cmd.argv, cmd.found_by) == ([node, str(global_js)], "PATH")

    # 2b. node_modules/muonscope/dist/trainer/cli.js upward from the working directory beats PATH.
    outer = tmp_path / "node_modules" / "muonscope" / "dist" / "trainer" / "cli.js"
    outer.parent.mkdir(parents=True)
    outer.write_text("")
    cmd, _ = find_host_command(str(work))
    assert (cmd.argv, cmd.found_by) == ([node, str(outer)], f"node_modules/muonscope/dist/trainer/cli.js in {tmp_path}")

    # 2a. In the same folder, node_modules/.bin/muonscope comes first; a nearer folder beats a farther one.
    nearer = tmp_path / "project" / "node_modules" / ".bin" / "muonscope"
    _executable(nearer, "#!/bin/sh\n")
    cmd, _ = find_host_command(str(work))
    assert (cmd.argv, cmd.found_by) == ([str(nearer)], f"node_modules/.bin/muonscope in {tmp_path / 'project'}")

    # 1. MUONSCOPE_CLI first: a .js file runs with node, an executable as it is; a missing one is a reason.
    explicit = tmp_path / "elsewhere" / "cli.js"
    explicit.parent.mkdir()
    explicit.write_text("")
    monkeypatch.setenv("MUONSCOPE_CLI", str(explicit))
    cmd, _ = find_host_command(str(work))
    assert (cmd.argv, cmd.found_by) == ([node, str(explicit)], "MUONSCOPE_CLI")
    monkeypatch.setenv("MUONSCOPE_CLI", str(nearer))
    assert find_host_command(str(work))[0].argv == [str(nearer)]
    monkeypatch.setenv("MUONSCOPE_CLI", str(tmp_path / "missing.js"))
    assert find_host_command(str(work)) == (None, f"MUONSCOPE_CLI={tmp_path / 'missing.js'} is not a file")

    # Node: MUONSCOPE_NODE over PATH; none → no host, whatever CLI there is.
    other_node = _executable(tmp_path / "node20" / "node", "#!/bin/sh\n")
    monkeypatch.setenv("MUONSCOPE_CLI", str(explicit))
    monkeypatch.setenv("MUONSCOPE_NODE", str(other_node))
    assert find_host_command(str(work))[0].argv == [str(other_node), str(explicit)]
    monkeypatch.setenv("MUONSCOPE_NODE", str(tmp_path / "no-node"))
    assert find_host_command(str(work)) == (None, "MUONSCOPE_NODE is not an executable file (Node runs the muonscope host)")
    monkeypatch.delenv("MUONSCOPE_NODE")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_host_command(str(work)) == (None, "no `node` on PATH (Node runs the muonscope host)")


def test_the_host_gets_only_the_config_keys_it_validates():
    config = {"name": "x" * 150, "steps": 40, "task": "my own task", "lr": 0.1,
              "diagnostics": {"every": 5, "adaptive": True, "budgetPct": 10.0, "curvature": True, "noise": False,
                              "microbatches": 8, "noiseWindowSteps": 1000, "mine": 1},
              "advisor": {"mode": "off"}}
    assert host_config(config) == {"name": "x" * 100, "steps": 40, "advisor": {"mode": "off"},
                                   "diagnostics": {"every": 5, "adaptive": True, "budgetPct": 10.0, "curvature": True,
                                                   "noise": False, "microbatches": 8, "noiseWindowSteps": 1000}}


# ---- no host: the direct writer and how to open it ----

def _tiny_run(out, **kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = muonscope.watch(model, opt, total_steps=2, name="auto", out=str(out), config={"diagnostics": {"every": 1000}}, **kw)
    for _ in range(2):
        loss = model(torch.ones(4, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        run.log(loss=loss)
        opt.step()
    run.close()
    return run


def _assert_direct(run, out, err):
    assert run.host is None and run.channel is None
    assert run.run_dir.parent == Path(out).resolve()
    kinds = [json.loads(l)["kind"] for l in (run.run_dir / "log.ndjson").read_text().splitlines()]
    assert [k for k in kinds if k in ("run_started", "step", "state")] == ["run_started", "step", "step", "state"]
    assert f"muonscope: open it with `muonscope inspect {run.run_dir}` or in VS Code's Muonscope Runs view" in err
    assert "dashboard" not in err


def test_opted_out_no_host_is_looked_for(clean_env, tmp_path, monkeypatch, capsys):
    # A CLI that would fail loudly if it were run: it is not even looked at.
    monkeypatch.setenv("MUONSCOPE_CLI", str(_executable(tmp_path / "cli", "#!/bin/sh\necho ran >&2\nexit 9\n")))
    monkeypatch.setenv("MUONSCOPE_NO_HOST", "1")
    run = _tiny_run(tmp_path / "runs")
    err = capsys.readouterr().err
    _assert_direct(run, tmp_path / "runs", err)
    assert err == how_to_open(run.run_dir) + "\n"  # nothing about a host: none was looked for
    monkeypatch.delenv("MUONSCOPE_NO_HOST")
    run = _tiny_run(tmp_path / "runs2", host=False)
    err = capsys.readouterr().err
    _assert_direct(run, tmp_path / "runs2", err)
    assert err == how_to_open(run.run_dir) + "\n"


def test_a_bogus_cli_falls_back_to_the_direct_writer_and_says_why(clean_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MUONSCOPE_CLI", str(tmp_path / "nowhere" / "cli.js"))
    run = _tiny_run(tmp_path / "runs")
    err = capsys.readouterr().err
    _assert_direct(run, tmp_path / "runs", err)
    assert f"muonscope: no host started: MUONSCOPE_CLI={tmp_path / 'nowhere' / 'cli.js'} is not a file\n" in err

    # A CLI that starts and fails (as `muonscope run` does on a config it refuses): its last words are said.
    monkeypatch.setenv("MUONSCOPE_CLI", str(_executable(tmp_path / "failing-cli", "#!/bin/sh\necho 'config: bad steps' >&2\nexit 2\n")))
    run = _tiny_run(tmp_path / "runs3")
    err = capsys.readouterr().err
    _assert_direct(run, tmp_path / "runs3", err)
    assert "muonscope: the host (MUONSCOPE_CLI) did not start: the host exited with code 2: config: bad steps\n" in err

    # A CLI that never prints its listening line: given up after the timeout, killed, direct writer.
    sleeper = _executable(tmp_path / "silent-cli", f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(30)'\n")
    command = autostart.HostCommand([str(sleeper)], "test")
    t0 = time.monotonic()
    started, why = autostart.start_host(command, {"name": "x", "steps": 2}, str(tmp_path / "runs4"), timeout_s=0.5)
    assert started is None and why == "the host printed nothing within 0.5 s"
    assert time.monotonic() - t0 < 5


# ---- a hosted run: the checkout's CLI through tsx ----

needs_node = pytest.mark.skipif(NODE is None or not (REPO / "node_modules" / "tsx").is_dir(), reason="needs node and the checkout's node_modules (tsx)")

SCRIPT = textwrap.dedent("""
    import faulthandler, os, signal, sys, time
    from pathlib import Path
    import torch, muonscope
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # Script.wait_exit asks for every thread's stack on a hang
    # Ctrl-C as a terminal's foreground job gets it: Python's KeyboardInterrupt. A test run started as a
    # background job (`cmd &` in a shell without job control, e.g. a harness script) passes SIGINT down
    # ignored, and Python keeps an inherited SIG_IGN: the SIGINT would be lost and the script would wait.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    steps = int(sys.argv[1])
    run = muonscope.watch(model, opt, total_steps=steps, name="auto-host", out=sys.argv[2], config={"diagnostics": {"every": 1000}, "advisor": {"mode": "off"}})
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    go = Path(sys.argv[3])
    for step in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(); loss.backward(); run.log(loss=loss); opt.step()
        if step == 4:  # wait for the test (it reads the dashboard, or kills this process)
            print("at step 4", flush=True)
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    run.close()
    print("done", flush=True)
""")


class Script:
    """The script above, run as `python train.py` with the CLI wrapper as MUONSCOPE_CLI; stderr collected."""

    def __init__(self, tmp_path: Path, steps: int, own_group: bool = False):
        wrapper = _executable(tmp_path / "muonscope-cli", f"#!/bin/sh\nexec {NODE} --import {(REPO / 'node_modules' / 'tsx' / 'dist' / 'loader.mjs').as_uri()} {REPO / 'trainer' / 'cli.ts'} \"$@\"\n")
        (tmp_path / "train.py").write_text(SCRIPT)
        self.go = tmp_path / "go"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUONSCOPE_")}
        env.update(MUONSCOPE_CLI=str(wrapper), PYTHONPATH=str(REPO / "trainer" / "python"))
        self.proc = subprocess.Popen([sys.executable, str(tmp_path / "train.py"), str(steps), str(tmp_path / "runs"), str(self.go)],
                                     cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=own_group)
        self.err, self.out = [], []
        for stream, into in ((self.proc.stderr, self.err), (self.proc.stdout, self.out)):
            threading.Thread(target=lambda s=stream, i=into: [i.append(l) for l in iter(s.readline, "")], daemon=True).start()

    def wait_for(self, what, pred, timeout=90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            if self.proc.poll() is not None and not pred():
                time.sleep(0.2)
                if not pred():
                    raise AssertionError(f"the script exited ({self.proc.returncode}) before {what}:\n{''.join(self.err)}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; stderr:\n{''.join(self.err)}")

    def stderr(self) -> str:
        return "".join(self.err)

    def wait_exit(self, timeout: float) -> int:
        """The script's exit code; on a hang, every Python thread's stack (faulthandler on SIGUSR1) in the failure."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            raise AssertionError(f"the script did not exit within {timeout:g} s; its threads and stderr:\n{self.stderr()}") from None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def _pid_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _records(run_dir: Path):
    return [json.loads(l) for l in (run_dir / "log.ndjson").read_text().splitlines()]


@needs_node
@pytest.mark.slow
def test_python_on_its_own_starts_the_host_serves_the_dashboard_and_the_host_ends_with_it(tmp_path):
    script = Script(tmp_path, steps=8)
    try:
        m = script.wait_for("the dashboard line", lambda: DASHBOARD.search(script.stderr()))
        url, port, token = m.group(1), int(m.group(2)), m.group(3)
        run_dir = Path(script.wait_for("the run folder line", lambda: re.search(r"^muonscope: run folder (.+)$", script.stderr(), re.M)).group(1))
        assert run_dir.parent == (tmp_path / "runs").resolve()
        assert f"found by MUONSCOPE_CLI" in script.stderr()
        script.wait_for("step 4", lambda: "at step 4\n" in script.out)
        # The host serves the dashboard page on the printed port while Python trains.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200 and b"<html" in page.read(2000).lower()
        trainer = json.loads((run_dir / "trainer.json").read_text())
        assert trainer["url"] == f"ws://127.0.0.1:{port}" and trainer["token"] == token
        host_pid = trainer["pid"]
        assert host_pid != script.proc.pid
        script.go.touch()
        assert script.proc.wait(timeout=60) == 0, script.stderr()
        assert "done\n" in script.out
        # The host ends with the run (Python waited for it after its bye), and takes trainer.json with it.
        assert _pid_gone(host_pid), "the host outlived the Python process"
        assert not (run_dir / "trainer.json").exists()
    finally:
        script.go.touch()
        script.kill()
    records = _records(run_dir)
    # The host stamped every record (seq without a hole) and set run_started's host fields.
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert [r["kind"] for r in records if r["kind"] in ("run_started", "step", "state")] == ["run_started"] + ["step"] * 8 + ["state"]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(8))
    assert records[-1]["state"] == "finished"
    assert records[0]["config"]["name"] == "auto-host" and records[0]["config"]["steps"] == 8
    assert re.fullmatch(r"[0-9a-f-]{36}", records[0]["runId"])  # the host's run id, not the folder's name
    assert json.loads((run_dir / "config.json").read_text())["steps"] == 8


@needs_node
@pytest.mark.slow
def test_python_killed_leaves_the_run_crashed_by_the_host(tmp_path):
    script = Script(tmp_path, steps=50)
    try:
        run_dir = Path(script.wait_for("the run folder line", lambda: re.search(r"^muonscope: run folder (.+)$", script.stderr(), re.M)).group(1))
        script.wait_for("step 4", lambda: "at step 4\n" in script.out)
        script.wait_for("step 4 in the log", lambda: (run_dir / "log.ndjson").exists() and any(r["kind"] == "step" and r["step"] == 4 for r in _records(run_dir)))
        host_pid = json.loads((run_dir / "trainer.json").read_text())["pid"]
        python_pid = script.proc.pid
        script.proc.send_signal(signal.SIGKILL)
        script.proc.wait(timeout=30)
        assert _pid_gone(host_pid), "the host outlived the killed Python process"
    finally:
        script.go.touch()
        script.kill()
    records = _records(run_dir)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(5))
    alert, state = records[-2], records[-1]
    assert (alert["kind"], alert["code"], alert["level"]) == ("alert", "CRASH", "error")
    assert (state["kind"], state["state"], state["step"]) == ("state", "crashed", 5)
    assert state["reason"] == alert["message"] == f"the Python process (pid {python_pid}) ended without saying bye"


@needs_node
@pytest.mark.slow
def test_ctrl_c_in_the_terminal_reaches_python_only_which_stops_the_run_and_the_host_with_it(tmp_path):
    # The script in a process group of its own, as a terminal's foreground job; Ctrl-C = SIGINT to that group.
    script = Script(tmp_path, steps=50, own_group=True)
    try:
        run_dir = Path(script.wait_for("the run folder line", lambda: re.search(r"^muonscope: run folder (.+)$", script.stderr(), re.M)).group(1))
        script.wait_for("step 4", lambda: "at step 4\n" in script.out)
        host_pid = json.loads((run_dir / "trainer.json").read_text())["pid"]
        assert os.getpgid(host_pid) != script.proc.pid, "the host is not in the script's process group"
        os.killpg(script.proc.pid, signal.SIGINT)
        assert script.wait_exit(60) != 0  # KeyboardInterrupt out of the loop
        assert "KeyboardInterrupt" in script.stderr()
        assert _pid_gone(host_pid), "the host outlived the interrupted Python process"
    finally:
        script.go.touch()
        script.kill()
    records = _records(run_dir)
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(5))
    # Python's own end (atexit closed the run: stopped), written through the host; the host added nothing.
    assert records[-1]["kind"] == "state" and records[-1]["state"] == "stopped", records[-1]
    assert records[-1]["reason"] == "the script ended after 5 of 50 steps"
    assert not any(r["kind"] == "alert" and r["code"] in ("CRASH", "PROCESS_EXIT") for r in records)
