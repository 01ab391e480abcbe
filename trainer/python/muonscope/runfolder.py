"""The direct run-folder writer: a run's folder and its log, as docs/run-folder.md defines them, for a
torch run with no host (or whose host went away, docs/python.md §4).

- ``create_run_dir``: ``<out>/<name>-<YYYYMMDD>-<HHMMSS>[-N]/`` (local time) with ``config.json``.
- ``LogWriter``: appends records to ``log.ndjson``, stamping ``seq`` (1, 2, 3, … without a hole) and ``t``
  (ms since the epoch). Opening an existing log continues its seq, after cutting a torn last line.
- ``atomic_write``: temporary file, fsync, rename, fsync of the folder (checkpoints).
- ``find_host_cli``: where the ``muonscope`` CLI is (docs/python.md §4; autostart.py finds and starts it).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from .records import Record, dumps

PathLike = Union[str, "os.PathLike[str]"]


def folder_base(name: str, now: Optional[_dt.datetime] = None) -> str:
    """`name` with characters outside [A-Za-z0-9._-] replaced by '-', then the local start time."""
    now = now or _dt.datetime.now()
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", name) or "run"
    return f"{safe}-{now.strftime('%Y%m%d-%H%M%S')}"


def create_run_dir(out: PathLike, name: str, config: Dict[str, Any], now: Optional[_dt.datetime] = None) -> Path:
    """Creates a new run folder (never reusing one: -2, -3, … when the name exists) with config.json."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    base = folder_base(name, now)
    n = 1
    while True:
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            break
        except FileExistsError:
            n += 1
    (path / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _last_valid_seq(log: Path) -> int:
    """Cuts a torn or unparsable tail back to the last complete line that parses, and returns its seq (0 if none)."""
    if not log.exists():
        return 0
    data = log.read_bytes()
    lines = data.split(b"\n")[:-1]  # the part after the last newline is torn (or empty)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    for i in range(len(lines) - 1, -1, -1):
        try:
            seq = json.loads(lines[i])["seq"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(seq, int):
            keep = offsets[i + 1]
            if keep < len(data):
                with open(log, "r+b") as f:
                    f.truncate(keep)
            return seq
    if data:
        with open(log, "r+b") as f:
            f.truncate(0)
    return 0


class LogWriter:
    """Appends records to a run folder's log.ndjson with seq and t; thread-safe."""

    def __init__(self, run_dir: PathLike, clock: Callable[[], float] = time.time):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "log.ndjson"
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = _last_valid_seq(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    @property
    def last_seq(self) -> int:
        return self._seq

    def append(self, record: Record) -> Record:
        with self._lock:
            stamped = {"seq": self._seq + 1, "t": int(self._clock() * 1000), **record}
            line = dumps(stamped)  # raises before anything is written or counted
            self._file.write(line + "\n")
            self._file.flush()
            self._seq += 1
            return stamped

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()


def atomic_write(path: PathLike, write: Callable[[Any], None]) -> Path:
    """Writes `path` atomically: `write(file)` into a temporary file beside it, fsync, rename, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some platforms cannot fsync a folder; the rename is still atomic
        pass
    return path


def find_host_cli(cwd: Optional[PathLike] = None) -> Optional[str]:
    """The `muonscope` CLI, as docs/python.md §4 looks for it: MUONSCOPE_CLI, then node_modules/.bin/muonscope
    (or node_modules/muonscope/dist/trainer/cli.js) upward from `cwd`, then `muonscope` on PATH; None when
    there is none or no Node to run it. The lookup is autostart.find_host_command's (which watch() uses)."""
    from .autostart import find_host_command

    command, _ = find_host_command(None if cwd is None else str(cwd))
    return None if command is None else command.argv[-1]


def how_to_open(run_dir: PathLike) -> str:
    """The stderr note watch() prints for a directly written run."""
    return (f"muonscope: writing the run to {run_dir}\n"
            f"muonscope: open it with `muonscope inspect {run_dir}` or in VS Code's Muonscope Runs view")
