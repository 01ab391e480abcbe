"""Starting the host from the training script itself (docs/python.md §4, "No host at all").

``python train.py`` with no ``MUONSCOPE_CHANNEL`` looks for the ``muonscope`` CLI and Node, in this order:

1. ``MUONSCOPE_CLI``: a path to ``cli.js`` (run with Node) or to an executable;
2. upward from the working directory, in each folder: ``node_modules/.bin/muonscope``, then
   ``node_modules/muonscope/dist/trainer/cli.js``;
3. ``muonscope`` on ``PATH``.

Node is ``MUONSCOPE_NODE`` or ``node`` on ``PATH`` (a ``.js`` CLI, or a link to one, is run with it, so a
``#!/usr/bin/env node`` shim works without ``node`` on ``PATH``). ``MUONSCOPE_NO_HOST=1`` (or
``watch(..., host=False)``) turns this off.

The host is started as ``muonscope run CONFIG --out DIR --attach-pid <this pid>`` in its own session
(a Ctrl-C in the terminal reaches Python only; Python's own stop then ends the run and the host), with
no stdin and its output piped here: its first stdout line is the JSON listening line with the channel
address and token, read within ``timeout_s``. The host ends when this process says bye or dies (then it
marks the run crashed). Anything else goes wrong → None and a reason: watch() writes the run itself.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

#: How long the host may take to print its listening line (Node's start-up on a loaded machine).
START_TIMEOUT_S = 20.0

#: The run config keys the host's validator knows (trainer/run/config.ts): a Python config may hold any
#: others (they stay in Python's own run_started), so only these are passed on.
_DIAGNOSTICS_KEYS = ("every", "adaptive", "budgetPct", "curvature", "noise", "microbatches", "noiseWindowSteps", "topK")


@dataclass
class HostCommand:
    argv: List[str]
    #: How it was found, for the stderr note (e.g. "MUONSCOPE_CLI", "node_modules/.bin upward", "PATH").
    found_by: str


@dataclass
class StartedHost:
    process: subprocess.Popen
    url: str
    token: str
    run_dir: str
    channel: str
    channel_token: str

    @property
    def dashboard_url(self) -> str:
        """The same URL `muonscope train` prints: http, with the token in the fragment."""
        return ("http" + self.url[2:] if self.url.startswith("ws") else self.url) + f"/#token={self.token}"

    def stop(self) -> None:
        """Ends a host that started but cannot be used: SIGTERM makes an attached host close without
        writing anything (the run folder is then this process's), SIGKILL if it does not go."""
        if self.process.poll() is None:
            try:
                self.process.terminate()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                _kill(self.process)

    def wait(self, timeout: float) -> bool:
        """Waits for the host to end (it does once this process has said bye); True when it has."""
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False


def host_disabled(host: Optional[bool] = None) -> bool:
    if host is not None:
        return not host
    return os.environ.get("MUONSCOPE_NO_HOST", "").strip() not in ("", "0")


def find_node() -> Optional[str]:
    env = os.environ.get("MUONSCOPE_NODE")
    if env:
        return env if Path(env).is_file() and os.access(env, os.X_OK) else None
    return shutil.which("node")


def _as_argv(path: Path, node: str) -> List[str]:
    """A JS file (or a link to one, as npm's .bin links are) runs with `node`; anything else as it is."""
    real = Path(os.path.realpath(path))
    if real.suffix in (".js", ".mjs", ".cjs"):
        return [node, str(real)]
    return [str(path)]


def find_host_command(cwd: Optional[str] = None) -> Tuple[Optional[HostCommand], str]:
    """The command that runs the `muonscope` CLI, and how it was found; (None, why not) when there is none."""
    node = find_node()
    if node is None:
        which = "MUONSCOPE_NODE is not an executable file" if os.environ.get("MUONSCOPE_NODE") else "no `node` on PATH"
        return None, f"{which} (Node runs the muonscope host)"
    env = os.environ.get("MUONSCOPE_CLI")
    if env:
        p = Path(env)
        if not p.is_file():
            return None, f"MUONSCOPE_CLI={env} is not a file"
        if p.suffix not in (".js", ".mjs", ".cjs") and not os.access(p, os.X_OK) and Path(os.path.realpath(p)).suffix != ".js":
            return None, f"MUONSCOPE_CLI={env} is neither a .js file nor an executable"
        return HostCommand(_as_argv(p, node), "MUONSCOPE_CLI"), ""
    start = Path(cwd or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        for rel in (Path("node_modules", ".bin", "muonscope"), Path("node_modules", "muonscope", "dist", "trainer", "cli.js")):
            candidate = folder / rel
            if candidate.is_file():
                return HostCommand(_as_argv(candidate, node), f"{rel.as_posix()} in {folder}"), ""
    on_path = shutil.which("muonscope")
    if on_path:
        return HostCommand(_as_argv(Path(on_path), node), "PATH"), ""
    return None, "no muonscope CLI (MUONSCOPE_CLI, node_modules/.bin/muonscope upward from here, or `muonscope` on PATH)"


def host_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The part of the run's config the host validates and writes to config.json: name, steps, the
    diagnostics settings and the advisor's (the rest is Python's and stays in its run_started record)."""
    out: Dict[str, Any] = {"name": str(config.get("name") or "run")[:100], "steps": config["steps"]}
    diag = config.get("diagnostics")
    if isinstance(diag, dict):
        out["diagnostics"] = {k: diag[k] for k in _DIAGNOSTICS_KEYS if k in diag}
    if isinstance(config.get("advisor"), dict):
        out["advisor"] = config["advisor"]
    return out


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except OSError:
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def start_host(command: HostCommand, config: Dict[str, Any], out: str, timeout_s: float = START_TIMEOUT_S) -> Tuple[Optional[StartedHost], str]:
    """Starts the host for this process and reads its listening line; (None, why) when that fails."""
    fd, config_file = tempfile.mkstemp(prefix="muonscope-", suffix=".muonscope.json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(host_config(config), f)
        argv = [*command.argv, "run", config_file, "--out", str(Path(out).resolve()), "--attach-pid", str(os.getpid())]
        kwargs: Dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
        except OSError as e:
            return None, f"could not start {argv[0]}: {e}"
        first: List[bytes] = []
        errors: List[str] = []
        got = threading.Event()

        def read_stdout() -> None:
            # The first line is the listening line; the rest is drained so the host never blocks on a full pipe.
            for i, line in enumerate(iter(process.stdout.readline, b"")):
                if i == 0:
                    first.append(line)
                    got.set()
            got.set()

        def relay_stderr() -> None:
            for line in iter(process.stderr.readline, b""):
                text = line.decode("utf-8", "replace").rstrip("\n")
                errors.append(text)
                del errors[:-20]
                if got.is_set() and first:
                    try:
                        print(f"muonscope host: {text}", file=sys.stderr)
                    except (OSError, ValueError):  # stderr closed at interpreter exit
                        pass

        threading.Thread(target=read_stdout, name="muonscope-host-stdout", daemon=True).start()
        err_reader = threading.Thread(target=relay_stderr, name="muonscope-host-stderr", daemon=True)
        err_reader.start()
        if not got.wait(timeout_s):
            _kill(process)
            return None, f"the host printed nothing within {timeout_s:g} s"
        if not first:
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                _kill(process)
            err_reader.join(timeout=2)  # its last words, read to the end
            tail = "; ".join(e for e in errors[-3:] if e.strip())
            return None, f"the host exited with code {process.returncode}" + (f": {tail}" if tail else "")
        try:
            info = json.loads(first[0])
            started = StartedHost(process, info["url"], info["token"], info["runDir"], info["channel"], info["channelToken"])
        except (ValueError, KeyError, TypeError):
            _kill(process)
            return None, f"the host's first line is not its listening line: {first[0][:200]!r}"
        return started, ""
    finally:
        try:
            os.unlink(config_file)
        except OSError:
            pass


def start_for_run(config: Dict[str, Any], out: str, host: Optional[bool] = None) -> Optional[StartedHost]:
    """watch()'s side: finds and starts the host, saying on stderr what happened; None (and why, on
    stderr) when the run must be written directly."""
    if host_disabled(host):
        return None
    command, why = find_host_command()
    if command is None:
        print(f"muonscope: no host started: {why}", file=sys.stderr)
        return None
    started, why = start_host(command, config, out)
    if started is None:
        print(f"muonscope: the host ({command.found_by}) did not start: {why}", file=sys.stderr)
        return None
    print(f"muonscope: started the host ({' '.join(command.argv)}, found by {command.found_by})\n"
          f"muonscope: dashboard {started.dashboard_url}\n"
          f"muonscope: run folder {started.run_dir}", file=sys.stderr)
    return started
