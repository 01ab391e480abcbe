"""One error type for what DynMuon and its schedules refuse: a ValueError (so ordinary ``except ValueError``
catches it) that also carries the TS trainer's machine-readable code (common/errors.ts) and the field it
is about, so that watch() can answer a refused command with the protocol's code without parsing messages.
"""
from __future__ import annotations

from typing import Any, Optional


class MuonscopeValueError(ValueError):
    def __init__(self, code: str, message: str, field: Optional[str] = None, value: Any = None):
        super().__init__(message)
        self.code = code
        self.field = field
        self.value = value
