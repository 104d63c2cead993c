"""Quality SLOs: per-model objectives and multiwindow burn-rate alerts on labelled windows (pure).

An objective says what share of a model's labelled predictions must be right over a period, e.g.
accuracy 0.9 over 30 days: the error budget is ``1 - target`` (10%).  The *burn rate* over a span
of event time is the error ratio in that span divided by the budget (1 = the budget lasts exactly
the period).  As in the SRE workbook (chapter 5, "multiwindow, multi-burn-rate alerts"), a burn
rate alarms when both its long span (evidence) and its short span (it is still burning) exceed
its factor: fast = 1 h and 5 min at 14.4 (2% of a 30-day budget in one hour), slow = 6 h and
30 min at 6 (5% in six hours).

:class:`SloTracker` keeps the (end, labelled, wrong) counts of one model version's judged label
windows for the longest span and answers in event time (the end of the latest window), never
the wall clock, so a backtest and the worker agree.  Fewer than ``min_labelled`` labelled
predictions in a long span: no verdict.

>>> t = SloTracker(Objective("m", target=0.95), {"fast": BurnRate(1.0, 5 / 60, 14.4)}, min_labelled=10)
>>> [b.name for b in t.observe(3600.0, 100, 80) if b.burning]
['fast']
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

METRICS = ("accuracy",)
SEVERITIES = ("warning", "critical")


@dataclass(frozen=True)
class Objective:
    """One model's quality objective: ``metric`` at or above ``target`` over ``window_days``."""

    model: str
    metric: str = "accuracy"
    target: float = 0.95
    window_days: float = 30.0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"slo objective of {self.model!r}: metric {self.metric!r} is not one of {METRICS}")
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"slo objective of {self.model!r}: target must be between 0 and 1 (exclusive), "
                             f"got {self.target}")
        if self.window_days <= 0:
            raise ValueError(f"slo objective of {self.model!r}: window_days must be > 0")

    @property
    def budget(self) -> float:
        """The error budget: the share of wrong predictions the objective allows."""
        return 1.0 - self.target


@dataclass(frozen=True)
class BurnRate:
    """A multiwindow burn-rate alarm: both spans (hours of event time) at or above ``factor``."""

    long_h: float
    short_h: float
    factor: float
    severity: str = "critical"

    def __post_init__(self) -> None:
        if not (0 < self.short_h <= self.long_h):
            raise ValueError(f"burn rate needs 0 < short_h <= long_h, got short_h={self.short_h}, long_h={self.long_h}")
        if self.factor <= 0:
            raise ValueError(f"burn rate factor must be > 0, got {self.factor}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"burn rate severity {self.severity!r} is not one of {SEVERITIES}")


def _default_burn_rates() -> dict[str, BurnRate]:
    return {"fast": BurnRate(1.0, 5.0 / 60.0, 14.4, "critical"), "slow": BurnRate(6.0, 0.5, 6.0, "warning")}


@dataclass(frozen=True)
class SloConfig:
    """The ``slo`` config section.

    ``objectives``: one per model (``{model, metric: accuracy, target, window_days}``); models without
    one get ``default_target`` (None: no SLO for them).  ``burn_rates``: name -> ``{long_h, short_h,
    factor, severity}`` (default: fast 1 h / 5 min at 14.4, critical; slow 6 h / 30 min at 6, warning).
    ``min_labelled``: labelled predictions a long span needs for a verdict.
    """

    enabled: bool = True
    objectives: tuple[Objective, ...] = ()
    default_target: float | None = 0.95
    window_days: float = 30.0
    burn_rates: dict[str, BurnRate] = field(default_factory=_default_burn_rates)
    min_labelled: int = 100

    def __post_init__(self) -> None:
        objs = []
        for i, o in enumerate(self.objectives):
            if isinstance(o, Mapping):
                o = _build(Objective, o, f"slo.objectives[{i}]")
            objs.append(o)
        seen = [o.model for o in objs]
        dup = sorted({m for m in seen if seen.count(m) > 1})
        if dup:
            raise ValueError(f"slo.objectives: more than one objective for model(s) {dup}")
        object.__setattr__(self, "objectives", tuple(objs))
        rates = {}
        for name, b in dict(self.burn_rates or {}).items():
            rates[str(name)] = _build(BurnRate, b, f"slo.burn_rates.{name}") if isinstance(b, Mapping) else b
        object.__setattr__(self, "burn_rates", rates)
        if self.default_target is not None:
            Objective("default", target=self.default_target, window_days=self.window_days)  # validates the target
        if self.min_labelled < 1:
            raise ValueError("slo.min_labelled must be >= 1")

    def objective(self, model: str) -> Objective | None:
        """The objective of ``model``: its own, else the default one, else None."""
        for o in self.objectives:
            if o.model == model:
                return o
        if self.default_target is None:
            return None
        return Objective(model, target=self.default_target, window_days=self.window_days)


def _build(cls: type, raw: Mapping[str, Any], path: str) -> Any:
    from streams.config import section

    return section(cls, raw, path)


@dataclass(frozen=True)
class BurnState:
    """One burn rate after a window: the burn over its long and short spans, and whether it alarms."""

    name: str
    rate: BurnRate
    long_burn: float | None  # None: no labelled prediction in the span
    short_burn: float | None
    long_n: int
    short_n: int
    burning: bool
    sufficient: bool  # the long span holds at least min_labelled labelled predictions


class SloTracker:
    """Labelled-window counts of one model version and the burn rates they give (see the module docstring)."""

    def __init__(self, objective: Objective, burn_rates: Mapping[str, BurnRate], min_labelled: int = 100,
                 windows: list | None = None) -> None:
        self.objective = objective
        self.burn_rates = dict(burn_rates)
        self.min_labelled = int(min_labelled)
        self.horizon_s = max((b.long_h for b in self.burn_rates.values()), default=0.0) * 3600.0
        self.windows: deque[tuple[float, int, int]] = deque(tuple(w) for w in (windows or []))

    def observe(self, end: float, n: int, errors: int) -> list[BurnState]:
        """Add one judged label window (its end in event time, labelled predictions, wrong ones); the burn states."""
        if n > 0:
            self.windows.append((float(end), int(n), int(errors)))
        now = max([float(end)] + [w[0] for w in self.windows])
        while self.windows and self.windows[0][0] <= now - self.horizon_s:
            self.windows.popleft()
        return self.states(now)

    def _span(self, now: float, hours: float) -> tuple[int, int]:
        lo = now - hours * 3600.0
        n = e = 0
        for end, wn, we in self.windows:
            if end > lo:
                n += wn
                e += we
        return n, e

    def burn(self, now: float, hours: float) -> tuple[float | None, int]:
        """(burn rate over the ``hours`` before ``now``, labelled predictions in it)."""
        n, e = self._span(now, hours)
        return (None if n == 0 else (e / n) / self.objective.budget), n

    def states(self, now: float) -> list[BurnState]:
        out = []
        for name, r in self.burn_rates.items():
            lb, ln = self.burn(now, r.long_h)
            sb, sn = self.burn(now, r.short_h)
            ok = ln >= self.min_labelled
            burning = ok and lb is not None and sb is not None and lb >= r.factor and sb >= r.factor
            out.append(BurnState(name, r, lb, sb, ln, sn, burning, ok))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"windows": [list(w) for w in self.windows]}


__all__ = ["BurnRate", "BurnState", "Objective", "SloConfig", "SloTracker"]
