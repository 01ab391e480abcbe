"""Muonscope for PyTorch: DynMuon as a torch optimizer, and watch() to stream a training run to Muonscope.

See docs/python.md in the Muonscope repository for the design (the channel to the Node host, the run folder).
"""

__version__ = "0.1.0"

from .watch import Run, StopTraining, watch  # noqa: E402
from .errors import MuonscopeValueError  # noqa: E402
from .optim import DynMuon  # noqa: E402
from .schedules import ScheduleTimeline, evaluate as schedule_value, validate_schedule  # noqa: E402

__all__ = ["watch", "Run", "StopTraining", "DynMuon", "MuonscopeValueError", "ScheduleTimeline", "schedule_value", "validate_schedule"]
