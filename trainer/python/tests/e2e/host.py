"""Helpers for the end-to-end tests: the Node host (`muonscope run`, started with tsx from the checkout, so
no build is needed), a WebSocket client written on the standard library (docs/protocol.md: Authorization
Bearer, hello, subscribe, events, command → ack/error), and the protocol's own record validator.

Why a hand-written WebSocket client: the package's test extra stays torch + numpy + pytest (the venv is
shared and offline), and the tests need only text frames from a loopback server — about 60 lines.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[4]
TRAIN = Path(__file__).resolve().with_name("train.py")


# ---------- the protocol's validator ----------

class Validator:
    """One node process running common/protocol.ts's validateLogRecord over log files, kept for the whole
    session (tsx's start costs seconds): `issues(log)` → [(line number, issues)] for every line of the
    log.ndjson that fails, or is not JSON; [] when every record validates as written (seq, t and all)."""

    SCRIPT = (
        "import {{ validateLogRecord }} from {protocol};\n"
        "import {{ readFileSync }} from 'node:fs';\n"
        "import {{ createInterface }} from 'node:readline';\n"
        "for await (const path of createInterface({{ input: process.stdin }})) {{\n"
        "  const out: unknown[] = [];\n"
        "  readFileSync(path, 'utf8').split('\\n').forEach((line, i, all) => {{\n"
        "    if (i === all.length - 1 && line === '') return;\n"
        "    let r: unknown; try {{ r = JSON.parse(line); }} catch (e) {{ out.push([i + 1, String(e)]); return; }}\n"
        "    const v = validateLogRecord(r); if (!v.ok) out.push([i + 1, v.issues]);\n"
        "  }});\n"
        "  process.stdout.write(JSON.stringify(out) + '\\n');\n"
        "}}\n")

    def __init__(self):
        fd, name = tempfile.mkstemp(suffix=".mts")  # an ES module: top-level await
        os.close(fd)
        self.script = Path(name)
        self.script.write_text(self.SCRIPT.format(protocol=json.dumps((REPO / "common" / "protocol.ts").as_uri())))
        self.proc = subprocess.Popen(["node", "--import", "tsx", str(self.script)], cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def issues(self, log: Path) -> List[Any]:
        self.proc.stdin.write(f"{Path(log).resolve()}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the validator died: {self.proc.stderr.read()}"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.script.unlink()


def read_log(run_dir: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (Path(run_dir) / "log.ndjson").read_text().splitlines()]


# ---------- the host ----------

class Host:
    """`node --import tsx trainer/cli.ts run --out OUT -- python train.py ARGS`; its output kept in `lines`."""

    def __init__(self, out: Path, args: List[str], env: Optional[Dict[str, str]] = None, command: Optional[List[str]] = None):
        """`command` replaces `python train.py ARGS` (e.g. a torchrun launch)."""
        cmd = ["node", "--import", "tsx", str(REPO / "trainer" / "cli.ts"), "run", "--out", str(out), "--",
               *(command or [sys.executable, str(TRAIN), *args])]
        full_env = {**os.environ, **(env or {})}
        for k in ("MUONSCOPE_CHANNEL", "MUONSCOPE_CHANNEL_TOKEN", "MUONSCOPE_RUN_DIR", "MUONSCOPE_CONFIG"):
            full_env.pop(k, None)
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: List[str] = []
        self._listening: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.info = self._listening.get(timeout=60)
        except queue.Empty:
            self.kill()
            raise AssertionError("the host printed no listening line:\n" + "\n".join(self.lines))
        self.run_dir = Path(self.info["runDir"])

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith('{"event":"listening"'):
                self._listening.put(json.loads(line))

    def output(self) -> str:
        return "\n".join(self.lines)

    def python_pid(self, timeout: float = 30) -> int:
        """The training process's pid, from the host's "python process PID connected" line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith("python process ") and " connected" in line:
                    return int(line.split()[2])
            time.sleep(0.05)
        raise AssertionError("the training process never connected:\n" + self.output())

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("the host did not exit in time:\n" + self.output())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_log(run_dir: Path, pred: Callable[[List[Dict[str, Any]]], bool], timeout: float = 30) -> List[Dict[str, Any]]:
    """Polls the run folder's log (complete lines only) until `pred(records)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        text = (Path(run_dir) / "log.ndjson").read_text() if (Path(run_dir) / "log.ndjson").exists() else ""
        records = [json.loads(l) for l in text.split("\n")[:-1] if l]
        if pred(records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on the log; last records: {records[-5:]}")
        time.sleep(0.05)


# ---------- a WebSocket client (RFC 6455, text frames, client side) ----------

class WsClient:
    def __init__(self, url: str, token: str):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise AssertionError(f"the server closed the handshake: {head!r}")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sock.settimeout(None)
        self.messages: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        self.records: List[Dict[str, Any]] = []
        self.answers: Dict[str, Dict[str, Any]] = {}
        self._cv = threading.Condition()
        self._n = 0
        threading.Thread(target=self._read_loop, daemon=True).start()

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _frame(self):
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(8))[0]
        mask = self._exact(4) if b1 & 0x80 else None
        data = self._exact(n)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return b0 & 0x80, b0 & 0x0F, data

    def _read_loop(self) -> None:
        parts: List[bytes] = []
        try:
            while True:
                fin, op, data = self._frame()
                if op == 8:
                    break
                if op == 9:
                    self._send_frame(0xA, data)
                    continue
                if op in (0, 1, 2):
                    parts.append(data)
                    if not fin:
                        continue
                    msg = json.loads(b"".join(parts))
                    parts = []
                    with self._cv:
                        if msg.get("type") == "events":
                            self.records.extend(msg["records"])
                        elif msg.get("type") in ("ack", "error") and msg.get("id"):
                            self.answers[msg["id"]] = msg
                        self._cv.notify_all()
                    self.messages.put(msg)
        except (EOFError, OSError):
            pass

    def _send_frame(self, op: int, data: bytes) -> None:
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))

    def send(self, msg: Dict[str, Any]) -> None:
        self._send_frame(1, json.dumps(msg).encode())

    def subscribe(self, after_seq: int = 0) -> None:
        self.send({"type": "subscribe", "afterSeq": after_seq})

    def command(self, command: Dict[str, Any], timeout: float = 30) -> Dict[str, Any]:
        """Sends a command and returns its answer (an ack or an error)."""
        self._n += 1
        cid = f"e2e-{self._n}"
        self.send({"type": "command", "id": cid, "command": command, "source": "e2e-test"})
        with self._cv:
            if not self._cv.wait_for(lambda: cid in self.answers, timeout=timeout):
                raise AssertionError(f"no answer to {command}")
            return self.answers[cid]

    def wait_records(self, pred: Callable[[List[Dict[str, Any]]], bool], timeout: float = 30) -> List[Dict[str, Any]]:
        with self._cv:
            if not self._cv.wait_for(lambda: pred(self.records), timeout=timeout):
                raise AssertionError(f"timed out waiting on the records; last: {self.records[-5:]}")
            return list(self.records)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def steps_of(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in records if r["kind"] == "step"]


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
