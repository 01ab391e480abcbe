"""Muonscope for PyTorch: DynMuon as a torch optimizer, and watch() to stream a training run to Muonscope.

See docs/python.md in the Muonscope repository for the design (the channel to the Node host, the run folder).
"""

__version__ = "0.1.0"

from .watch import Run, StopTraining, watch  # noqa: E402

__all__ = ["watch", "Run", "StopTraining"]
