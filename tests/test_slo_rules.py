"""The Prometheus SLO rules and the worker's burn rates agree on when there is enough evidence for a verdict.

The worker gives a burn rate no verdict on fewer than ``slo.min_labelled`` labelled predictions in its long
span; each branch of the multiwindow rules must be gated the same way, on its own long window, with the
worker's default ``min_labelled`` (the rules cannot read the config).  The promtool tests
(infra/prometheus/tests/driftloop.slo.test.yml, run by tests/test_infra_files.py) feed the same low-traffic
stream through the rules.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streams.judge.slo import Objective, SloConfig, SloTracker

RULES = Path(__file__).resolve().parents[1] / "infra" / "prometheus" / "rules" / "driftloop.rules.yml"
SLO_ALERTS = ("DriftloopModelQualityBudgetFastBurn", "DriftloopModelQualityBudgetSlowBurn")


def _alert(name: str) -> str:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return next(r["expr"] for g in doc["groups"] for r in g["rules"] if r.get("alert") == name)


def _branches(expr: str) -> list[str]:
    return [b for b in re.split(r"^\s*or\s*$", expr, flags=re.M) if "labelled_error_ratio" in b]


@pytest.mark.parametrize("alert", SLO_ALERTS)
def test_each_branch_is_gated_on_its_own_long_window_with_the_workers_min_labelled(alert):
    branches = _branches(_alert(alert))
    assert len(branches) == 2, branches
    for b in branches:
        windows = re.findall(r"labelled_error_ratio:rate(\w+)", b)
        long_w = max(windows, key=_seconds)
        gates = re.findall(r"increase\(driftloop_labelled_predictions_total\[(\w+)\]\)\)\s*>=\s*(\d+)", b)
        assert gates == [(long_w, str(SloConfig().min_labelled))], (alert, b)


def _seconds(w: str) -> int:
    return int(w[:-1]) * {"m": 60, "h": 3600, "d": 86400}[w[-1]]


def test_fast_rule_windows_and_factors_are_the_workers_default_burn_rates():
    """The paging rule's two branches are the worker's default fast and slow burn rates at 30 days."""
    cfg = SloConfig(objectives=(Objective("m", target=0.99, window_days=30),))
    rates = SloTracker(cfg.objective("m"), cfg.burn_rates).burn_rates
    want = sorted((r.long_h * 3600, r.short_h * 3600, round(r.factor, 6)) for r in rates.values())
    got = []
    for b in _branches(_alert("DriftloopModelQualityBudgetFastBurn")):
        spans = sorted({_seconds(w) for w in re.findall(r"labelled_error_ratio:rate(\w+)", b)}, reverse=True)
        factors = {float(f) for f in re.findall(r"\(([\d.]+) \* driftloop:slo_error_budget\)", b)}
        assert len(factors) == 1, b
        got.append((float(spans[0]), float(spans[1]), factors.pop()))
    assert sorted(got) == [(lo, sh, pytest.approx(f)) for lo, sh, f in want]


def test_low_traffic_worker_verdict_matches_the_rules():
    """50 labelled predictions an hour, all wrong, objective 0.95: the fast burn rate (1 h) has no verdict,
    the slow one (6 h) burns once its long span holds min_labelled, as the promtool test expects of the rules."""
    cfg = SloConfig(objectives=(Objective("low", target=0.95),))
    t = SloTracker(cfg.objective("low"), cfg.burn_rates, cfg.min_labelled)
    first_slow = None
    for minute in range(1, 7 * 60 + 1):  # one-minute label windows, 50 an hour
        n = 1 if minute % 6 in (0, 1, 3, 4, 5) else 0  # 50 per 60 minutes
        states = {s.name: s for s in t.observe(minute * 60.0, n, n)}
        assert not states["fast"].sufficient and not states["fast"].burning
        if states["slow"].burning and first_slow is None:
            first_slow = minute
            assert states["slow"].long_n >= cfg.min_labelled
    assert first_slow is not None and 100 <= first_slow <= 130
