"""One timed run of examples/torch/train.py, watched by Muonscope or not, for `npm run bench:torch`.

Usage: python test/bench/torch_watch_bench.py watch|plain --out DIR [train.py's args…]  → one JSON line on stdout.

`wall_s` is the wall time of the example's main() in this process: model, data, watch() (its run folder,
the first step's diagnostics) and every step, so the watched run's figure holds everything watching
costs at its default cadence (diagnostics every 100 steps within a 4% budget), records written straight
to a run folder (no host). Importing torch and muonscope happens before the clock starts, for both. The
example's own output is discarded.

A watched run also reports `own_s`, the time spent inside watch's own code: the Run's construction, its
optimizer step pre- and post-hooks (where the diagnostics run), `run.log` and `close`, timed by wrapping
those methods here (the package itself is not changed). Unlike the paired wall times it does not move with
the machine's load, so its ratio to the rest of the run is the overhead to a precision the pairs cannot
give; what it leaves out is any slowing of the training's own work by watch's memory and caches, which
the pairs bound.
"""
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "torch"))
import train  # noqa: E402  (examples/torch/train.py)


def time_watch_methods(total: list) -> None:
    """Adds the time inside Run's own entry points to total[0], the outermost call only (a stop closes the
    run from inside a hook). The hooks are registered from the class attributes at construction, so
    wrapping before watch() is enough."""
    from muonscope.watch import Run
    depth = [0]

    def timed(fn):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    total[0] += time.perf_counter() - started
        return wrapper

    for name in ("__init__", "_pre_hook", "_post_hook", "log", "close"):
        setattr(Run, name, timed(getattr(Run, name)))


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("watch", "plain"):
        raise SystemExit("usage: torch_watch_bench.py watch|plain [train.py args…]")
    mode, rest = sys.argv[1], sys.argv[2:]
    argv = rest + (["--no-watch"] if mode == "plain" else [])
    # watch's own cost: the watched run writes its run folder directly (--out), with no host to start or
    # talk to (MUONSCOPE_NO_HOST: watch does not start one even where it finds the CLI).
    os.environ.pop("MUONSCOPE_CHANNEL", None)
    os.environ["MUONSCOPE_NO_HOST"] = "1"
    own = [0.0]
    if mode == "watch":
        time_watch_methods(own)
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        train.main(argv)
    wall = time.perf_counter() - start
    print(json.dumps({"mode": mode, "wall_s": wall, "own_s": own[0] if mode == "watch" else None, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))


if __name__ == "__main__":
    main()
