"""Quality SLOs (streams.judge.slo, the engine's slo_burn alerts): multiwindow burn rates in event time.

Scripted streams of 5-minute label windows, 500 labelled predictions each, objective accuracy 0.99
(budget 1%).  Fast burn rate: 1 h and 5 min at 14.4.  It must open at the first window where the
last hour's error ratio reaches 14.4 x 1% (computed here independently), never on a healthy stream
(0.5% wrong: burn 0.5) nor on one burning at 13x, and close once the burn stops (the short span
clears, then ``close_after`` clean windows).
"""

from __future__ import annotations

import numpy as np
import pytest

from streams.config import ConfigError, section
from streams.contracts.events import LabelledExample
from streams.judge.drift_config import DriftConfig
from streams.judge.engine import DriftEngine
from streams.judge.profile_build import build_profile
from streams.judge.slo import BurnRate, Objective, SloConfig, SloTracker

W = 300.0  # label window, seconds
PER = 500
FAST = {"fast": BurnRate(1.0, 5 / 60, 14.4, "critical")}


def _tracker_opens(rates, factor_rates=FAST, target=0.99):
    t = SloTracker(Objective("m", target=target), factor_rates, min_labelled=100)
    out = []
    for i, r in enumerate(rates):
        st = t.observe((i + 1) * W, PER, int(round(r * PER)))
        out.append([s.name for s in st if s.burning])
    return out


def _first_expected(rates, hours=1.0, factor=14.4, budget=0.01):
    """First window whose last-``hours`` error ratio reaches factor x budget (and its own window's too)."""
    k = int(hours * 3600 / W)
    for i in range(len(rates)):
        span = rates[max(0, i - k + 1): i + 1]
        if np.mean(span) / budget >= factor - 1e-9 and rates[i] / budget >= factor:
            return i
    return None


def test_tracker_fires_at_the_configured_rate():
    rates = [0.005] * 24 + [0.2] * 24
    got = _tracker_opens(rates)
    first = next(i for i, b in enumerate(got) if "fast" in b)
    assert first == _first_expected(rates)
    assert 24 < first < 48


@pytest.mark.parametrize("rate", [0.005, 0.13])
def test_tracker_does_not_fire_on_a_healthy_or_slightly_slower_burn(rate):
    assert not any(_tracker_opens([rate] * 60))


def test_tracker_needs_min_labelled_and_forgets_old_windows():
    t = SloTracker(Objective("m", target=0.99), FAST, min_labelled=1000)
    assert not any(s.burning for s in t.observe(W, PER, PER))  # 500 < 1000: no verdict
    assert any(s.burning for s in t.observe(2 * W, PER, PER))
    t.observe(10 * 3600.0, PER, 0)
    assert len(t.windows) == 1  # older than the longest span


def test_slo_config_is_typed():
    cfg = section(SloConfig, {"objectives": [{"model": "tweets", "metric": "accuracy", "target": 0.96, "window_days": 30}],
                              "burn_rates": {"fast": {"long_h": 1, "short_h": 0.0833, "factor": 14.4}}}, "slo")
    assert cfg.objective("tweets").target == 0.96 and cfg.objective("other") is None  # no default objective
    assert section(SloConfig, {"default_target": 0.95}, "slo").objective("other").target == 0.95
    assert cfg.burn_rates["fast"].long_h == 1.0
    with pytest.raises(ConfigError, match="slo.objectives\\[0\\]"):
        section(SloConfig, {"objectives": [{"model": "m", "targte": 0.9}]}, "slo")
    with pytest.raises(ConfigError, match="target"):
        section(SloConfig, {"objectives": [{"model": "m", "target": 90}]}, "slo")
    with pytest.raises(ConfigError, match="short_h"):
        section(SloConfig, {"burn_rates": {"fast": {"long_h": 1, "short_h": 2, "factor": 14.4}}}, "slo")
    assert section(SloConfig, {"default_target": None}, "slo").objective("m") is None


def _profile():
    rows = [{"features": {"x": float(i % 7)}, "prediction": 1, "label": 0 if i % 200 == 0 else 1} for i in range(5000)]
    return build_profile(rows, "m", "1")


def _labelled(rates, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for w, r in enumerate(rates):
        wrong = rng.permutation(np.arange(PER) < int(round(r * PER)))
        for i, bad in enumerate(wrong):
            out.append(LabelledExample(f"e{w}-{i}", "m", "1", w * W + i * (W / PER), {"x": 1.0}, 1, 0 if bad else 1))
    return out


def _engine_run(rates):
    slo = SloConfig(objectives=(Objective("m", target=0.99),), burn_rates=FAST)
    eng = DriftEngine(DriftConfig(window_seconds=W, min_samples=100, concept_detectors=()), [_profile()])
    eng.slo = slo
    exs = _labelled(rates)
    alerts = []
    for a in range(0, len(exs), PER):
        alerts += eng.ingest_labelled(exs[a:a + PER])
    alerts += eng.flush()
    return eng, [a for a in alerts if a.kind == "slo_burn"]


def test_engine_opens_one_slo_burn_alert_at_the_rate_and_closes_it_when_the_burn_stops():
    rates = [0.005] * 24 + [0.2] * 24 + [0.0] * 12
    eng, alerts = _engine_run(rates)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.feature == "fast" and a.metric == "burn_rate" and a.severity == "critical"
    assert a.window.start == _first_expected(rates) * W
    assert a.score >= 14.4 and a.threshold == 14.4
    assert a.details["metrics"]["objective_target"] == 0.99
    cleared = [c for c in eng.take_cleared() if c["kind"] == "slo_burn"]
    assert len(cleared) == 1 and cleared[0]["cleared_at_window_end"] > 48 * W
    slo = [r for r in eng.take_quality() if r["type"] == "slo"]
    assert len(slo) == len(rates) and slo[0]["target"] == 0.99


def test_engine_raises_no_slo_burn_on_a_healthy_stream():
    _, alerts = _engine_run([0.005] * 60)
    assert alerts == []


def test_slo_windows_survive_state_dict_reloads_between_label_windows():
    """Reloads after every batch (several before a label window uses the restored track) change nothing."""
    import json

    rates = [0.005] * 24 + [0.2] * 24
    _, ref = _engine_run(rates)
    slo = SloConfig(objectives=(Objective("m", target=0.99),), burn_rates=FAST)
    cfg = DriftConfig(window_seconds=W, min_samples=100, concept_detectors=())
    exs = _labelled(rates)
    eng, alerts = None, []
    for a in range(0, len(exs), PER // 4):
        new = DriftEngine(cfg, [_profile()])
        new.slo = slo
        if eng is not None:
            new.load_state_dict(json.loads(json.dumps(eng.state_dict())))
        eng = new
        alerts += eng.ingest_labelled(exs[a:a + PER // 4])
    alerts += eng.flush()
    assert [(a.alert_id, a.window.start) for a in alerts if a.kind == "slo_burn"] == [(a.alert_id, a.window.start) for a in ref]
