"""Reads the reference fixture sets written by test/fixtures/fixture_io.py (the format the TS tests read,
test/helpers/fixtures.ts): `index.json` plus raw little-endian float32/float64 `.bin` arrays."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

import torch

FIXTURES_DIR = Path(__file__).resolve().parents[3] / "test" / "fixtures"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def load_index(set_name: str) -> Dict[str, Any]:
    with open(FIXTURES_DIR / set_name / "index.json", encoding="utf-8") as f:
        return json.load(f)


def load_array(set_name: str, ref: Dict[str, Any]) -> torch.Tensor:
    """The array `ref` ({"file", "dtype", "shape"}) as a tensor of its dtype and shape."""
    dtype = _DTYPES[ref["dtype"]]
    data = bytearray((FIXTURES_DIR / set_name / ref["file"]).read_bytes())
    count = 1
    for d in ref["shape"]:
        count *= d
    width = torch.tensor([], dtype=dtype).element_size()
    if len(data) != count * width:
        raise ValueError(f"{set_name}/{ref['file']}: {len(data) // width} values, shape says {count}")
    if sys.byteorder != "little":
        raise RuntimeError("the fixtures are little-endian; this reader does not swap bytes")
    t = torch.frombuffer(data, dtype=dtype)
    return t.reshape(ref["shape"]).clone()
