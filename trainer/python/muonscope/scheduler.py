"""Which diagnostics run at a step: a simple version of the TS trainer's scheduler
(trainer/diagnostics/scheduler.ts).

- The cheap one (``spectra``: spectra and layer stats) runs every K = ``every`` steps.
- The expensive ones (``curvature``, ``noise``) are considered at the same K-step points. Not adaptive:
  they run every K steps. Adaptive (the default): a due one runs only if its expected cost (an EMA of
  its measured cost) fits in what the budget has left, budgetPct·(training time so far) minus watch's
  time so far; otherwise it waits. The first run of each is a probe of its cost, at the first
  K-step point where it is the only unmeasured one probed, and none waits longer than ``max_spacing``·K
  steps.
- The budget is watch's whole cost, not the diagnostics' alone: watch's time outside the diagnostics' runs
  (its hooks on every step, the records, a data-parallel run's step boundary, the gathers of the shares:
  ``record_hooks``) is spent from it as the runs are, so that ``budgetPct`` is what a user's loop pays
  all told, but for the first probes and the ``max_spacing`` runs.

Unlike the TS scheduler there is no water-filling plan and no spread of the first probes inside the
first K steps.

Pure bookkeeping: it times nothing itself.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

CHEAP = ("spectra",)
EXPENSIVE = ("noise", "curvature")


def check_settings(every: int, adaptive: bool, budget_pct: float) -> Dict[str, object]:
    if not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
        raise ValueError(f"diagnostics.every must be an integer ≥ 1, got {every!r}")
    if not (isinstance(budget_pct, (int, float)) and 0 < budget_pct <= 100):
        raise ValueError(f"diagnostics.budgetPct must be in (0, 100], got {budget_pct!r}")
    return {"every": every, "adaptive": bool(adaptive), "budgetPct": float(budget_pct)}


class Scheduler:
    def __init__(self, every: int = 100, adaptive: bool = True, budget_pct: float = 10.0,
                 expensive: Sequence[str] = EXPENSIVE, max_spacing: int = 32, ema_beta: float = 0.9):
        self.settings = check_settings(every, adaptive, budget_pct)
        self.expensive = [n for n in EXPENSIVE if n in expensive]
        self.max_spacing = max_spacing
        self.beta = ema_beta
        self.cost_ema: Dict[str, float] = {}
        self.last_run: Dict[str, int] = {}
        self.total_step_ms = 0.0
        self.total_diag_ms = 0.0
        self.total_hooks_ms = 0.0

    def configure(self, every: int, adaptive: bool, budget_pct: float) -> None:
        self.settings = check_settings(every, adaptive, budget_pct)

    def record_step(self, ms: float) -> None:
        self.total_step_ms += ms

    def record_run(self, name: str, step: int, ms: float) -> None:
        prev = self.cost_ema.get(name)
        self.cost_ema[name] = ms if prev is None else self.beta * prev + (1 - self.beta) * ms
        self.last_run[name] = step
        self.total_diag_ms += ms

    def record_hooks(self, ms: float) -> None:
        """watch's own time outside the diagnostics' runs, charged to the budget as they are."""
        self.total_hooks_ms += ms

    def due(self, step: int) -> List[str]:
        every = self.settings["every"]
        if step % every != 0:
            return []
        if not self.settings["adaptive"]:
            return [*CHEAP, *self.expensive]
        out = list(CHEAP)
        left = self.settings["budgetPct"] / 100 * self.total_step_ms - self.total_diag_ms - self.total_hooks_ms
        left -= sum(self.cost_ema.get(n, 0.0) for n in CHEAP)
        probed = False
        for name in self.expensive:
            if name not in self.cost_ema:
                if not probed:
                    out.append(name)
                probed = True
                continue
            cost = self.cost_ema[name]
            if step - self.last_run[name] >= self.max_spacing * every or cost <= left:
                out.append(name)
                left -= cost
        return out

    def overhead_pct(self) -> float:
        """watch's whole time so far (the diagnostics and the hooks) as a percentage of training time."""
        spent = self.total_diag_ms + self.total_hooks_ms
        return 100 * spent / self.total_step_ms if self.total_step_ms > 0 else 0.0

    def cost_summary(self) -> Dict[str, object]:
        return {"costsMs": dict(self.cost_ema), "overheadPct": self.overhead_pct(), "every": self.settings["every"]}
