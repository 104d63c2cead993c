"""Quality SLOs: per-model objectives and multiwindow burn-rate alerts on labelled windows (pure).

An objective says what share of a model's labelled predictions must be right over a period, e.g.
accuracy 0.9 over 30 days: the error budget is ``1 - target`` (10%).  The *burn rate* over a span
of event time is the error ratio in that span divided by the budget (1 = the budget lasts exactly
the period).  As in the SRE workbook (chapter 5, "multiwindow, multi-burn-rate alerts"), a burn
rate alarms when both its long span (evidence) and its short span (it is still burning) reach
its factor.  A burn rate gives its factor directly, or as ``budget_percent``, the share of the
period's budget spent over its long span: ``factor = budget_percent / 100 * window_days * 24 /
long_h`` (the defaults: 2% of the budget in 1 h with a 5-minute short span, critical, and 5% in
6 h with 30 minutes, warning: 14.4 and 6 for a 30-day objective, 3.36 and 1.4 for a 7-day one).

The error ratio cannot exceed 1, so no burn rate can exceed ``1 / (1 - target)``: a factor at or
above it never alarms (14.4 for a target of 0.93 or lower, 6 for 0.833 or lower).
:class:`SloConfig` refuses such a burn rate you set, and an objective left with none, at load, saying
what to change; of the default burn rates it leaves that one out for the objective, with a warning.

:class:`SloTracker` keeps the (end, labelled, wrong) counts of one model version's judged label
windows for the longest span and answers in event time (the end of the latest window), never
the wall clock, so a backtest and the worker agree.  Fewer than ``min_labelled`` labelled
predictions in a burn rate's long span: no verdict from that burn rate.

>>> t = SloTracker(Objective("m", target=0.95), {"fast": BurnRate(1.0, 5 / 60, 14.4)}, min_labelled=10)
>>> [b.name for b in t.observe(3600.0, 100, 80) if b.burning]
['fast']
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

log = logging.getLogger("driftloop.slo")

METRICS = ("accuracy",)
SEVERITIES = ("warning", "critical")
OBJECTIVE_KEYS = "{model, target, metric: accuracy, window_days}"
BURN_RATE_KEYS = "{long_h, short_h, factor or budget_percent, severity}"


def _positive(value: Any, what: str) -> None:
    """Refuse anything but a finite number > 0 (NaN, infinities, zero, negatives, booleans, strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class Objective:
    """One model's quality objective: ``metric`` at or above ``target`` over ``window_days`` (the budget's period)."""

    model: str
    metric: str = "accuracy"
    target: float = 0.95
    window_days: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"slo objective: model must be a model name, got {self.model!r}")
        if self.metric not in METRICS:
            raise ValueError(f"slo objective of {self.model!r}: metric {self.metric!r} is not one of {METRICS}")
        t = self.target
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t < 1.0:  # NaN fails too
            raise ValueError(f"slo objective of {self.model!r}: target must be between 0 and 1 (exclusive), got {t!r}")
        _positive(self.window_days, f"slo objective of {self.model!r}: window_days")

    @property
    def budget(self) -> float:
        """The error budget: the share of wrong predictions the objective allows."""
        return 1.0 - self.target


@dataclass(frozen=True)
class BurnRate:
    """A multiwindow burn-rate alarm: both spans (hours of event time) at or above the factor.

    The factor is ``factor``, or derived from ``budget_percent`` (the share of the objective's budget spent
    over ``long_h``) and the objective's period: ``budget_percent / 100 * window_days * 24 / long_h``.
    ``short_h == long_h`` is a single-window alarm (it goes on until the long span clears).
    """

    long_h: float
    short_h: float
    factor: float | None = None
    severity: str = "critical"
    budget_percent: float | None = None

    def __post_init__(self) -> None:
        _positive(self.long_h, "burn rate long_h")
        _positive(self.short_h, "burn rate short_h")
        if self.short_h > self.long_h:
            raise ValueError(f"burn rate needs 0 < short_h <= long_h (the short span tells that the burn goes on), "
                             f"got short_h={self.short_h}, long_h={self.long_h}")
        if (self.factor is None) == (self.budget_percent is None):
            raise ValueError("a burn rate needs one of factor (the burn rate that alarms) or budget_percent (the share "
                             "of the objective's budget spent over long_h), " +
                             ("not both" if self.factor is not None else "got neither"))
        if self.factor is not None:
            _positive(self.factor, "burn rate factor")
        else:
            _positive(self.budget_percent, "burn rate budget_percent")
            if self.budget_percent > 100:
                raise ValueError(f"burn rate budget_percent is a percentage of the budget, at most 100, "
                                 f"got {self.budget_percent}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"burn rate severity {self.severity!r} is not one of {SEVERITIES}")

    def factor_for(self, window_days: float) -> float:
        """The factor for an objective over ``window_days``: ``factor``, else the one ``budget_percent`` gives."""
        if self.factor is not None:
            return float(self.factor)
        return float(self.budget_percent) * float(window_days) * 24.0 / (100.0 * self.long_h)

    def resolved(self, window_days: float) -> "BurnRate":
        """This burn rate with its factor for an objective over ``window_days``."""
        return self if self.factor is not None else replace(self, factor=self.factor_for(window_days),
                                                            budget_percent=None)


def _default_burn_rates() -> dict[str, BurnRate]:
    return {"fast": BurnRate(1.0, 5.0 / 60.0, None, "critical", budget_percent=2.0),
            "slow": BurnRate(6.0, 0.5, None, "warning", budget_percent=5.0)}


@dataclass(frozen=True)
class SloConfig:
    """The ``slo`` config section.

    ``objectives``: one per model (``{model, metric: accuracy, target, window_days}``; window_days defaults
    to the section's).  Only those models have an SLO, unless ``default_target`` is set (default null):
    then every other model gets that target over ``window_days``.  No default objective by default: a
    model's reachable accuracy is its own, and a blanket 0.95 would keep a healthy 93% model alerting.
    ``window_days``: the period of the objectives' budget; burn rates given by ``budget_percent`` take
    their factor from it.  ``burn_rates``: name -> ``{long_h, short_h, factor or budget_percent,
    severity}`` (default: fast 1 h / 5 min at 2% of the budget, critical; slow 6 h / 30 min at 5%,
    warning).  ``min_labelled``: labelled predictions a burn rate's long span needs for a verdict.

    Refused at load: anything not a number where one is due, non-finite or non-positive spans, factors and
    periods, and, for burn rates you set, every objective (and default_target) x burn rate whose factor the
    error ratio can never reach (``factor >= 1 / (1 - target)``).  Of the default burn rates such a pair is
    left out for that objective, with a warning (:meth:`burn_rates_for`).
    """

    enabled: bool = True
    objectives: tuple[Objective, ...] = ()
    default_target: float | None = None
    window_days: float = 30.0
    burn_rates: dict[str, BurnRate] = field(default_factory=_default_burn_rates)
    min_labelled: int = 100

    def __post_init__(self) -> None:
        _positive(self.window_days, "slo.window_days")
        if not isinstance(self.objectives, (list, tuple)):
            raise _error(f"slo.objectives: expected a list of {OBJECTIVE_KEYS}, "
                         f"got {type(self.objectives).__name__} {self.objectives!r}")
        objs = []
        for i, o in enumerate(self.objectives):
            path = f"slo.objectives[{i}]"
            if isinstance(o, Mapping):
                if "model" not in o:
                    raise _error(f"{path}: 'model' is missing (an objective is {OBJECTIVE_KEYS})")
                o = _build(Objective, {"window_days": self.window_days, **o}, path)
            elif not isinstance(o, Objective):
                raise _error(f"{path}: expected a mapping {OBJECTIVE_KEYS}, got {type(o).__name__} {o!r}")
            objs.append(o)
        seen = [o.model for o in objs]
        dup = sorted({m for m in seen if seen.count(m) > 1})
        if dup:
            raise ValueError(f"slo.objectives: more than one objective for model(s) {dup}")
        object.__setattr__(self, "objectives", tuple(objs))
        if not isinstance(self.burn_rates, Mapping):
            raise _error(f"slo.burn_rates: expected a mapping of name -> {BURN_RATE_KEYS}, "
                         f"got {type(self.burn_rates).__name__} {self.burn_rates!r}")
        rates = {}
        for name, b in self.burn_rates.items():
            path = f"slo.burn_rates.{name}"
            if isinstance(b, Mapping):
                b = _build(BurnRate, b, path)
            elif not isinstance(b, BurnRate):
                raise _error(f"{path}: expected a mapping {BURN_RATE_KEYS}, got {type(b).__name__} {b!r}")
            rates[str(name)] = b
        object.__setattr__(self, "burn_rates", rates)
        t = self.default_target
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 < t < 1.0):
            raise _error(f"slo.default_target must be between 0 and 1 (exclusive), or null for no default "
                         f"objective, got {t!r}")
        m = self.min_labelled
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise _error(f"slo.min_labelled must be an integer >= 1, got {m!r}")
        out_of_reach = {who: [msg for name, r in rates.items() if (msg := _never_reached(name, r, o, who))]
                        for o, who in self._objectives_to_check()}
        never = [msg for msgs in out_of_reach.values() for msg in msgs]
        if never and rates != _default_burn_rates():
            raise _error("; ".join(never))
        silent = [who for who, msgs in out_of_reach.items() if rates and len(msgs) == len(rates)]
        if silent:  # every default burn rate out of reach: the objective would never alarm
            raise _error("; ".join(never) + f". No burn rate is left for {', '.join(silent)}: set slo.burn_rates "
                         "(a lower budget_percent or factor), a shorter window_days, or a higher target")
        for msg in never:  # the default burn rates: the unreachable one is left out for that objective (burn_rates_for)
            log.warning("%s; it is left out for that objective (set slo.burn_rates to choose reachable ones)",
                        msg.replace("slo.burn_rates.", "the default burn rate ", 1))

    def burn_rates_for(self, obj: Objective) -> dict[str, BurnRate]:
        """The burn rates that can alarm for ``obj``: all of them, but for the default burn rates those the error
        ratio can never reach for its target (a fast 14.4 for a target of 0.93 or lower over 30 days)."""
        return {name: r for name, r in self.burn_rates.items() if not _never_reached(name, r, obj, "")}

    def _objectives_to_check(self) -> list[tuple[Objective, str]]:
        out = [(o, f"model {o.model!r}'s target {o.target:g}") for o in self.objectives]
        if self.default_target is not None:
            out.append((Objective("default", target=self.default_target, window_days=self.window_days),
                        f"slo.default_target {self.default_target:g} (models without an objective of their own)"))
        return out

    def objective(self, model: str) -> Objective | None:
        """The objective of ``model``: its own, else the default one, else None."""
        for o in self.objectives:
            if o.model == model:
                return o
        if self.default_target is None:
            return None
        return Objective(model, target=self.default_target, window_days=self.window_days)


def _never_reached(name: str, rate: BurnRate, obj: Objective, who: str) -> str | None:
    """Why burn rate ``name`` can never alarm for ``obj`` (its factor is out of the error ratio's reach), else None."""
    f = rate.factor_for(obj.window_days)
    if f * obj.budget < 1.0 - 1e-9:
        return None
    top = 1.0 / obj.budget
    if rate.factor is not None:
        given, fix = f"factor {f:g}", f"lower the factor below {_down(top)}"
    else:
        given = (f"{rate.budget_percent:g}% of a {obj.window_days:g}-day budget in {rate.long_h:g} h: "
                 f"factor {f:.4g}")
        fix = (f"lower its budget_percent below {_down(rate.budget_percent * top / f)}, or window_days below "
               f"{_down(obj.window_days * top / f)}")
    return (f"slo.burn_rates.{name} ({given}) can never be reached for {who}: the highest possible burn rate is "
            f"1/(1-{obj.target:g}) = {top:.4g} (every labelled prediction wrong); {fix}, or raise the target "
            f"above {math.ceil((1.0 - 1.0 / f) * 1e4) / 1e4:g}")


def _down(x: float) -> str:
    return f"{math.floor(x * 1000) / 1000:g}"


def _error(message: str) -> ValueError:
    from streams.config import ConfigError  # a ValueError: the message as it is, with its key's path

    return ConfigError(message)


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
        self.burn_rates = {name: r.resolved(objective.window_days) for name, r in burn_rates.items()}
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
