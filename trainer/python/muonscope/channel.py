"""The channel client: NDJSON over a loopback TCP connection to the Node host (docs/python.md §3, §4).

Python → host: ``hello`` (first, with the token), ``record`` (without seq and t: the host stamps them),
``ack``, ``refused``, ``measured``, ``bye``. Host → Python: ``welcome``, ``command``, ``measure``,
``error``. Commands and measures are put on ``commands`` (a queue the run drains at step boundaries).

When the host goes away, training goes on: messages wait in a bounded queue (``max_queue`` records; past
it the oldest diagnostics records are dropped first, never step, control, state or the other kinds in
records.KEPT_KINDS) while the client reconnects; when the host is not back within ``grace_s`` (30 s), the
queued records and all later ones are written straight to the run folder's log (``LogWriter``, which
continues its seq), and the Python side owns the log until the run ends. Acks and refusals queued for a
host that never came back are dropped (nobody is there to read them).
"""
from __future__ import annotations

import collections
import json
import os
import queue
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

from .records import KEPT_KINDS, Record, dumps
from .runfolder import LogWriter

MAX_LINE_BYTES = 4 * 1024 * 1024


class ChannelError(RuntimeError):
    pass


def parse_address(address: str) -> Tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ChannelError(f"MUONSCOPE_CHANNEL must be HOST:PORT, got {address!r}")
    return host or "127.0.0.1", int(port)


class ChannelClient:
    def __init__(self, address: str, token: str, run_dir: Optional[str] = None, grace_s: float = 30.0,
                 max_queue: int = 10_000, connect_timeout: float = 10.0, retry_s: float = 0.5):
        self.address = parse_address(address)
        self.token = token
        self.grace_s = grace_s
        self.max_queue = max_queue
        self.connect_timeout = connect_timeout
        self.retry_s = retry_s
        self.commands: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        self.errors: List[Dict[str, Any]] = []
        self.dropped = 0
        self.welcome: Dict[str, Any] = {}
        self.run_dir = run_dir
        self.direct: Optional[LogWriter] = None
        self._out: Deque[Dict[str, Any]] = collections.deque()
        self._cv = threading.Condition()
        self._sock: Optional[socket.socket] = None
        self._closing = False
        self._down_since: Optional[float] = None
        self._connect()
        self._writer = threading.Thread(target=self._write_loop, name="muonscope-channel-writer", daemon=True)
        self._writer.start()

    # ---- connection ----

    def _connect(self) -> None:
        sock = socket.create_connection(self.address, timeout=self.connect_timeout)
        try:
            hello = {"type": "hello", "token": self.token, "protocol": 1, "pid": os.getpid(),
                     "rank": int(os.environ.get("RANK", 0)), "worldSize": int(os.environ.get("WORLD_SIZE", 1))}
            sock.sendall((dumps(hello) + "\n").encode())
            reader = sock.makefile("rb")
            line = reader.readline(MAX_LINE_BYTES)
            if not line:
                raise ChannelError("the host closed the channel without a welcome (wrong token?)")
            msg = json.loads(line)
            if msg.get("type") != "welcome":
                raise ChannelError(f"the host answered the hello with {msg.get('type')!r}: {msg.get('message', '')}")
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        self.welcome = msg
        self.run_dir = msg.get("runDir") or self.run_dir
        self._sock = sock
        threading.Thread(target=self._read_loop, args=(sock, reader), name="muonscope-channel-reader", daemon=True).start()

    def _read_loop(self, sock: socket.socket, reader) -> None:
        try:
            while True:
                line = reader.readline(MAX_LINE_BYTES)
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                kind = msg.get("type")
                if kind == "command":
                    self.commands.put(msg)
                elif kind == "measure":
                    # Taken at the next step boundary, with the commands, in order (watch.Run._apply, measure.py).
                    self.commands.put(msg)
                elif kind == "error":
                    self.errors.append(msg)
                    _note(f"muonscope: the host refused a message: {msg.get('code')}: {msg.get('message')}")
        except OSError:
            pass
        with self._cv:
            if self._sock is sock:
                self._sock = None
                sock.close()
            self._cv.notify_all()

    # ---- sending ----

    def send_record(self, record: Record) -> None:
        self.send({"type": "record", "record": record})

    def send(self, msg: Dict[str, Any]) -> None:
        dumps(msg)  # a non-finite number fails here, in the caller, not in the writer thread
        with self._cv:
            if self.direct is not None:
                if msg["type"] == "record":
                    self.direct.append(msg["record"])
                return
            self._out.append(msg)
            if len(self._out) > self.max_queue:
                self._drop_oldest_diagnostic()
            self._cv.notify_all()

    def _drop_oldest_diagnostic(self) -> None:
        for i, m in enumerate(self._out):
            if m["type"] == "record" and m["record"].get("kind") not in KEPT_KINDS:
                del self._out[i]
                self.dropped += 1
                return

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._out and not self._closing:
                    self._cv.wait()
                if not self._out and self._closing:
                    return
                if self.direct is not None:
                    return
                msg = self._out[0]
                sock = self._sock
            if sock is None:
                self._reconnect_or_fall_back()
                continue
            try:
                sock.sendall((dumps(msg) + "\n").encode())
                with self._cv:
                    if self._out and self._out[0] is msg:
                        self._out.popleft()
                    self._cv.notify_all()
            except OSError:
                with self._cv:
                    if self._sock is sock:
                        self._sock = None
                        sock.close()

    def _reconnect_or_fall_back(self) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            _note("muonscope: the host went away; training goes on, records are queued")
        try:
            self._connect()
            self._down_since = None
            _note("muonscope: reconnected to the host")
            return
        except (OSError, ChannelError, ValueError):
            pass
        if now - self._down_since >= self.grace_s or self._closing:
            self._fall_back()
        else:
            time.sleep(self.retry_s)

    def _fall_back(self) -> None:
        """Writes everything queued, then everything later, straight to the run folder's log."""
        with self._cv:
            if self.run_dir is None or not Path(self.run_dir).is_dir():
                _note(f"muonscope: the host is gone and there is no run folder to write to ({self.run_dir!r}); records are lost")
                self._out.clear()
                self.direct = _Discard()
                self._cv.notify_all()
                return
            self.direct = LogWriter(self.run_dir)
            while self._out:
                m = self._out.popleft()
                if m["type"] == "record":
                    self.direct.append(m["record"])
            self._cv.notify_all()
        _note(f"muonscope: the host did not come back within {self.grace_s:g} s; writing the log directly to {self.run_dir}")

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self, reason: str, timeout: float = 5.0) -> None:
        """Sends `bye` after everything queued, waits up to `timeout` s for the queue to drain, and closes."""
        self.send({"type": "bye", "reason": reason[:1000]})
        deadline = time.monotonic() + timeout
        with self._cv:
            self._closing = True
            self._cv.notify_all()
            while self._out and self.direct is None and time.monotonic() < deadline:
                self._cv.wait(timeout=0.05)
        self._writer.join(timeout=max(0.0, deadline - time.monotonic()) + 0.1)
        with self._cv:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._sock.close()
                self._sock = None
            if isinstance(self.direct, LogWriter):
                self.direct.close()


def _note(text: str) -> None:
    """A line on stderr that cannot fail: under `muonscope run` stderr is a pipe to the host, and when the
    host is gone writing to it raises BrokenPipeError, which must not end the writer thread that is about
    to take the log over (docs/python.md §4)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class _Discard:
    def append(self, record: Record) -> None:
        pass

    def close(self) -> None:
        pass
