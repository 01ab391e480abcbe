"""Which parameters are matrices, as Muon treats them, and their matrix view.

The rule (the TS trainer's routing, trainer/optim/routing.ts, extended to conv kernels):

- a parameter of an ``nn.Embedding`` / ``nn.EmbeddingBag`` module, or of a normalisation module
  (``LayerNorm``, ``GroupNorm``, ``BatchNorm*``, ``RMSNorm``…), is not a matrix;
- a parameter whose name matches ``NON_MATRIX_NAME`` (embeddings ``embed``/``wte``/``wpe``/``pos``,
  output heads ``head``/``lm_head``, ``bias``, ``gain``, ``norm``, ``ln_``, ``scale``) is not a matrix;
- of the rest, a 2-D parameter is a matrix as it is (rows = out, cols = in, torch's ``nn.Linear`` layout),
  and a conv kernel of shape (out, in, kh, kw…) is the matrix (out, in·kh·kw…), as Muon flattens it;
- everything else (0-D and 1-D tensors) is not a matrix.

Routes in the ``run_started`` record: ``matrix`` for matrices, ``non-matrix`` for the rest. They describe
the shape Muon would see, not which optimizer updates the parameter (a torch run's optimizer is the
user's; this package does not route).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import List, Tuple

import torch
from torch import nn

# The same pattern as the TS trainer's ADAMW_NAME_PATTERN (trainer/optim/routing.ts).
NON_MATRIX_NAME = re.compile(r"embed|wte|wpe|pos|head|lm_head|bias|gain|norm|ln_|scale", re.IGNORECASE)

_NON_MATRIX_MODULES: Tuple[type, ...] = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())

ROUTE_MATRIX = "matrix"
ROUTE_OTHER = "non-matrix"


@dataclass(frozen=True)
class ParamInfo:
    name: str
    param: torch.nn.Parameter
    shape: Tuple[int, ...]
    route: str
    reason: str
    # The matrix view's shape, (rows, cols); None for non-matrices.
    rows: int = 0
    cols: int = 0

    @property
    def is_matrix(self) -> bool:
        return self.route == ROUTE_MATRIX

    def matrix(self, t: torch.Tensor) -> torch.Tensor:
        """`t` (this parameter's shape: the weight, its gradient or a buffer) as the (rows, cols) matrix."""
        return t.reshape(self.rows, self.cols)


def unwrapped(model: nn.Module) -> nn.Module:
    """The user's module inside torch's data-parallel wrappers (DistributedDataParallel, DataParallel), so that
    layers keep the names the user gave them (`blocks.0.attn.qkv.weight`, not `module.blocks.0…`) whether or
    not the run is data parallel."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def classify(model: nn.Module) -> List[ParamInfo]:
    """Every parameter of `model` (shared ones once, by their first name), with its route and why; a
    data-parallel wrapper's by the wrapped module's names."""
    model = unwrapped(model)
    owner = {}
    for mod_name, mod in model.named_modules():
        for p_name, p in mod.named_parameters(recurse=False):
            owner.setdefault(id(p), mod)
    out: List[ParamInfo] = []
    for name, p in model.named_parameters():
        shape = tuple(int(s) for s in p.shape)
        mod = owner.get(id(p))
        if isinstance(mod, _NON_MATRIX_MODULES):
            out.append(ParamInfo(name, p, shape, ROUTE_OTHER, f"parameter of {type(mod).__name__}"))
            continue
        if len(shape) < 2:
            out.append(ParamInfo(name, p, shape, ROUTE_OTHER, f"{len(shape)}-D tensor (not a matrix)"))
            continue
        match = NON_MATRIX_NAME.search(name)
        if match:
            out.append(ParamInfo(name, p, shape, ROUTE_OTHER, f'name matches "{match.group(0)}" (embedding, head, bias or gain)'))
            continue
        rows, cols = shape[0], math.prod(shape[1:])
        reason = "2-D weight" if len(shape) == 2 else f"{len(shape)}-D kernel flattened to (out, {'·'.join(str(s) for s in shape[1:])})"
        out.append(ParamInfo(name, p, shape, ROUTE_MATRIX, reason, rows, cols))
    return out
