"""One timed run of examples/torch/train.py, watched by Muonscope or not, for `npm run bench:torch`.

Usage: python test/bench/torch_watch_bench.py watch|plain --out DIR [train.py's args…]  → one JSON line on stdout.

`wall_s` is the wall time of the example's main() in this process: model, data, watch() (its run folder,
the first step's diagnostics) and every step, so the watched run's figure holds everything watching
costs at its default cadence (diagnostics every 100 steps within a 10% budget), records written straight
to a run folder (no host). Importing torch and muonscope happens before the clock starts, for both. The
example's own output is discarded.
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


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("watch", "plain"):
        raise SystemExit("usage: torch_watch_bench.py watch|plain [train.py args…]")
    mode, rest = sys.argv[1], sys.argv[2:]
    argv = rest + (["--no-watch"] if mode == "plain" else [])
    # watch's own cost: the watched run writes its run folder directly (--out), with no host to start or
    # talk to (MUONSCOPE_NO_HOST: watch does not start one even where it finds the CLI).
    os.environ.pop("MUONSCOPE_CHANNEL", None)
    os.environ["MUONSCOPE_NO_HOST"] = "1"
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        train.main(argv)
    wall = time.perf_counter() - start
    print(json.dumps({"mode": mode, "wall_s": wall, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))


if __name__ == "__main__":
    main()
