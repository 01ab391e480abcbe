"""The direct run-folder writer (docs/run-folder.md): folder names, config.json, seq and t in the log,
reopening a torn log, atomic writes."""
import datetime as dt
import json
from pathlib import Path

import pytest

from muonscope.runfolder import LogWriter, atomic_write, create_run_dir, folder_base

NOW = dt.datetime(2026, 12, 1, 3, 4, 5)


def test_folder_name_is_sanitised_name_then_local_time_and_never_reused(tmp_path):
    assert folder_base("my run/α", NOW) == "my-run---20261201-030405"  # " ", "/", "α" each become "-"
    a = create_run_dir(tmp_path, "exp", {"name": "exp", "x": [1, 2]}, NOW)
    b = create_run_dir(tmp_path, "exp", {"name": "exp"}, NOW)
    c = create_run_dir(tmp_path, "exp", {"name": "exp"}, NOW)
    assert [p.name for p in (a, b, c)] == ["exp-20261201-030405", "exp-20261201-030405-2", "exp-20261201-030405-3"]
    text = (a / "config.json").read_text()
    assert json.loads(text) == {"name": "exp", "x": [1, 2]} and text.startswith("{\n  ")  # pretty-printed


def test_log_stamps_seq_from_one_without_holes_and_t_in_ms(tmp_path):
    clock = iter([1.0, 1.0015, 2.5])
    log = LogWriter(tmp_path, clock=lambda: next(clock))
    for i in range(3):
        log.append({"kind": "eval", "step": i, "valLoss": 1.0})
    log.close()
    lines = [json.loads(l) for l in (tmp_path / "log.ndjson").read_text().splitlines()]
    assert [l["seq"] for l in lines] == [1, 2, 3]
    assert [l["t"] for l in lines] == [1000, 1001, 2500]
    assert list(lines[0]) == ["seq", "t", "kind", "step", "valLoss"]


def test_a_non_finite_number_is_refused_and_nothing_is_written(tmp_path):
    log = LogWriter(tmp_path)
    with pytest.raises(ValueError):
        log.append({"kind": "eval", "step": 0, "valLoss": float("nan")})
    log.append({"kind": "eval", "step": 0, "valLoss": 1.0})
    log.close()
    lines = (tmp_path / "log.ndjson").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["seq"] == 1


def test_reopening_cuts_a_torn_last_line_and_continues_the_seq(tmp_path):
    log = LogWriter(tmp_path)
    log.append({"kind": "eval", "step": 0, "valLoss": 1.0})
    log.append({"kind": "eval", "step": 1, "valLoss": 1.0})
    log.close()
    with open(tmp_path / "log.ndjson", "a") as f:
        f.write('{"seq":3,"t":1,"kind":"ev')  # a process killed mid-write
    again = LogWriter(tmp_path)
    assert again.last_seq == 2
    again.append({"kind": "eval", "step": 2, "valLoss": 1.0})
    again.close()
    lines = [json.loads(l) for l in (tmp_path / "log.ndjson").read_text().splitlines()]
    assert [l["seq"] for l in lines] == [1, 2, 3] and lines[2]["step"] == 2


def test_atomic_write_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "checkpoints" / "step-00000001.pt"
    atomic_write(target, lambda f: f.write(b"old"))

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["step-00000001.pt"]  # no temporary left


def test_find_host_cli_looks_where_docs_python_md_says(tmp_path, monkeypatch):
    import shutil

    from muonscope.runfolder import find_host_cli
    if shutil.which("node") is None:
        pytest.skip("needs node on PATH")
    monkeypatch.delenv("MUONSCOPE_CLI", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing") + ":" + str(Path(shutil.which("node")).parent))
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_host_cli(deep) is None
    local = tmp_path / "node_modules" / ".bin" / "muonscope"
    local.parent.mkdir(parents=True)
    local.write_text("")
    assert find_host_cli(deep) == str(local)  # upward from the working folder
    explicit = tmp_path / "cli.js"
    explicit.write_text("")
    monkeypatch.setenv("MUONSCOPE_CLI", str(explicit))
    assert find_host_cli(deep) == str(explicit)  # the variable first
