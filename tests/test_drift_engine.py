"""The drift engine end to end on generated streams (pure; no I/O)."""

import json

import msgspec
import numpy as np
import pandas as pd
import pytest

from streams.config import ConfigError, section
from streams.judge.drift_config import DriftConfig
from streams.judge.engine import DriftEngine
from streams.contracts.events import InferenceEvent, LabelledExample, make_alert_id
from streams.judge.policy import Level, Thresholds
from streams.judge.profile_build import build_profile
from streams.judge.windows import WindowAccumulator


def _profile(n_features=4, n=5000, seed=0, labelled=False):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, n_features)), columns=[f"f{i}" for i in range(n_features)])
    df["cat"] = rng.choice(["a", "b", "c"], n)
    df["scores"] = [[1 - s, s] for s in rng.beta(2, 5, n)]
    if labelled:
        y = (df["f0"] > 0).astype(int)
        err = rng.random(n) < 0.1
        df["prediction"] = np.where(err, 1 - y, y)
        df["label"] = y
    return build_profile(df, "m", "1")


def _events(n, t0=0.0, rate=10.0, shift=None, seed=1, n_features=4, score_shift=0.0, model="m"):
    """``n`` events at ``rate`` per second from ``t0``; ``shift``: {feature index: mean shift}."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features))
    for j, s in (shift or {}).items():
        x[:, j] += s
    cats = rng.choice(["a", "b", "c"], n)
    sc = np.clip(rng.beta(2, 5, n) + score_shift, 0, 1)
    return [
        InferenceEvent(f"{model}-{seed}-{i}", model, "1", t0 + i / rate,
                       {**{f"f{j}": float(x[i, j]) for j in range(n_features)}, "cat": str(cats[i])},
                       scores=(1 - float(sc[i]), float(sc[i])))
        for i in range(n)
    ]


def _labelled(n, t0=0.0, rate=10.0, p_err=0.1, seed=2):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f0 = float(rng.normal())
        y = float(f0 > 0)
        pred = 1 - y if rng.random() < p_err else y
        out.append(LabelledExample(f"l-{seed}-{i}", "m", "1", t0 + i / rate, {"f0": f0}, y, pred, (0.2, 0.8)))
    return out


def _feed(engine, events, batch=250):
    alerts = []
    for a in range(0, len(events), batch):
        alerts += engine.ingest(events[a : a + batch])
    return alerts


def _strip(alerts):
    return [{k: v for k, v in a.to_dict().items() if k != "emitted_at"} for a in alerts]


def _cfg(**kw):
    base = dict(window_seconds=50.0, min_samples=400)
    base.update(kw)
    return DriftConfig(**base)


# ---------------------------------------------------------------- gating


def test_tiny_windows_give_no_verdict_and_carry_forward():
    eng = DriftEngine(_cfg(window_seconds=10.0, min_samples=100), [_profile()])
    # 30 strongly drifted events per 10 s window: each window alone is insufficient
    evs = _events(150, rate=3.0, shift={0: 3.0})
    alerts = _feed(eng, evs[:90], batch=30)
    assert alerts == [] and eng.stats["windows_insufficient"] == 2 and eng.stats["windows_judged"] == 0
    alerts += _feed(eng, evs[90:], batch=30) + eng.flush()
    # the carried windows merge until 100 events: the merged window spans from the first carried start
    assert eng.stats["windows_judged"] >= 1
    drift = [a for a in alerts if a.feature == "f0"]
    assert len(drift) == 1
    assert drift[0].window.start == 0.0 and drift[0].window.n >= 100


def test_low_traffic_model_is_still_judged():
    eng = DriftEngine(_cfg(window_seconds=10.0, min_samples=200), [_profile()])
    alerts = _feed(eng, _events(1000, rate=1.0, shift={1: 2.0}), batch=50) + eng.flush()
    assert eng.stats["windows_judged"] == 5  # 100 windows of 10 events, judged every 20 windows
    assert eng.stats["windows_insufficient"] == 95
    assert [a.feature for a in alerts] == ["f1"]


# ---------------------------------------------------------------- evidence and effect size


def _big_window_alerts(shift, thresholds=None):
    rng = np.random.default_rng(5)
    prof = build_profile(pd.DataFrame({"x": rng.normal(size=50_000)}), "m", "1")
    cfg = DriftConfig(window_seconds=1000.0, min_samples=500, open_after=1,
                      **({"thresholds": thresholds} if thresholds else {}))
    eng = DriftEngine(cfg, [prof])
    n = 200_000
    ts = np.linspace(0, 999.0, n)
    alerts = eng.ingest_columns("m", "1", ts, {"x": rng.normal(size=n) + shift}) + eng.flush()
    return alerts


def test_huge_window_negligible_shift_gives_no_alert_but_a_clear_shift_does():
    # a 0.04 sd shift on 200k events is highly significant (KS p << 1e-6) but practically negligible
    assert _big_window_alerts(0.04) == []
    # ... which the effect-size gate alone holds back: with a tiny Wasserstein threshold it alerts
    low = Thresholds(wasserstein=Level(0.01, 0.02), ks=Level(0.01, 0.02))
    assert len(_big_window_alerts(0.04, low)) == 1
    clear = _big_window_alerts(0.5)
    assert len(clear) == 1 and clear[0].severity == "critical" and clear[0].p_value < 1e-10


def test_no_false_alarms_on_a_control_stream_with_20_features():
    eng = DriftEngine(_cfg(window_seconds=50.0, min_samples=500), [_profile(n_features=20, n=10_000)])
    alerts = []
    for k in range(8):  # 200 windows of 500 events
        alerts += _feed(eng, _events(12_500, t0=k * 1250.0, seed=100 + k, n_features=20), batch=2500)
    alerts += eng.flush()
    assert eng.stats["windows_judged"] == 200
    assert alerts == []


def test_abrupt_drift_is_found_within_two_windows_and_ranked():
    eng = DriftEngine(_cfg(), [_profile()])
    before = _events(3000, t0=0.0, seed=3)  # 6 windows of 50 s
    after = _events(3000, t0=300.0 + 25.0, seed=4, shift={2: 1.0, 3: 0.6})  # drift mid-window
    alerts = _feed(eng, before + after) + eng.flush()
    assert {a.feature for a in alerts} == {"f2", "f3"}
    assert all(a.window.end <= 325.0 + 2 * 50.0 for a in alerts)
    first_window = [a for a in alerts if a.window.start == min(x.window.start for x in alerts)]
    ranks = {a.feature: a.details["rank"] for a in first_window}
    if len(ranks) == 2:
        assert ranks["f2"] < ranks["f3"]  # the bigger shift ranks first


def test_prediction_score_drift():
    eng = DriftEngine(_cfg(), [_profile()])
    alerts = _feed(eng, _events(2000, seed=6, score_shift=0.3)) + eng.flush()
    assert [(a.kind, a.feature) for a in alerts] == [("prediction_drift", "score")]


# ---------------------------------------------------------------- hysteresis, ids


def test_persistent_drift_gives_one_alert_per_feature_and_clears_once():
    eng = DriftEngine(_cfg(close_after=2), [_profile()])
    evs = _events(1000, seed=7) + _events(5000, t0=100.0, seed=8, shift={0: 1.0, 1: -1.0}) + _events(2000, t0=600.0, seed=9)
    alerts = _feed(eng, evs) + eng.flush()
    assert sorted(a.feature for a in alerts) == ["f0", "f1"]
    cleared = eng.take_cleared()
    assert sorted(c["feature"] for c in cleared) == ["f0", "f1"]
    assert eng.open_alerts() == {}


def test_alert_ids_are_deterministic():
    runs = []
    for _ in range(2):
        eng = DriftEngine(_cfg(), [_profile()])
        runs.append(_feed(eng, _events(1000, seed=10) + _events(1500, t0=100.0, seed=11, shift={0: 1.0})) + eng.flush())
    assert [a.alert_id for a in runs[0]] == [a.alert_id for a in runs[1]] != []
    for a in runs[0]:
        assert a.alert_id == make_alert_id(a.model, a.model_version, a.kind, a.feature, a.window.start)


# ---------------------------------------------------------------- distributed path and state


def _drift_stream():
    return _events(2500, seed=12) + _events(2500, t0=250.0, seed=13, shift={1: 0.8}, score_shift=0.2)


def _judge_partitions(partitions, batch):
    eng = DriftEngine(_cfg(), [_profile()])
    merged: dict = {}
    for part in partitions:
        for a in range(0, len(part), batch):
            for key, acc in eng.accumulate(part[a : a + batch]).items():
                acc = WindowAccumulator.from_dict(json.loads(json.dumps(acc.to_dict())))  # over the wire
                if key in merged:
                    merged[key].merge(acc)
                else:
                    merged[key] = acc
    alerts = []
    for key in sorted(merged, key=lambda k: k.start):
        alerts += eng.judge(key, merged[key])
    return alerts


def test_partials_merged_then_judged_equal_single_process():
    evs = _drift_stream()
    eng = DriftEngine(_cfg(), [_profile()])
    single = _strip(_feed(eng, evs) + eng.flush())
    three = _strip(_judge_partitions([evs[i::3] for i in range(3)], batch=97))
    two = _strip(_judge_partitions([[e for e in evs if hash(e.event_id) % 2 == b] for b in range(2)], batch=400))
    assert single and single == three == two


def test_state_dict_roundtrip_mid_stream_gives_the_same_alerts():
    evs = _drift_stream()
    labs = _labelled(3000, p_err=0.1, seed=14) + _labelled(2000, t0=300.0, p_err=0.4, seed=15)
    prof = _profile(labelled=True)
    eng = DriftEngine(_cfg(), [prof])
    ref = _strip(_feed(eng, evs) + eng.ingest_labelled(labs[:2500]) + eng.ingest_labelled(labs[2500:]) + eng.flush())
    a = DriftEngine(_cfg(), [prof])
    first = _feed(a, evs[:2600]) + a.ingest_labelled(labs[:2500])
    state = json.loads(json.dumps(a.state_dict()))
    b = DriftEngine(_cfg(), [prof])
    b.load_state_dict(state)
    second = _feed(b, evs[2600:]) + b.ingest_labelled(labs[2500:]) + b.flush()
    assert {x["kind"] for x in ref} >= {"data_drift", "concept_drift"}
    assert _strip(first + second) == ref


def test_load_state_with_another_profile_is_refused():
    a = DriftEngine(_cfg(), [_profile()])
    _feed(a, _events(300))
    b = DriftEngine(_cfg(), [_profile(seed=9)])
    with pytest.raises(ValueError, match="same reference profile"):
        b.load_state_dict(a.state_dict())


def test_ingest_columns_equals_ingest_events():
    prof = _profile(n_features=3)
    evs = _events(3000, seed=16, n_features=3, shift={0: 0.7})
    e1 = DriftEngine(_cfg(), [prof])
    by_events = _strip(_feed(e1, [msgspec.structs.replace(e, scores=None) for e in evs]) + e1.flush())
    e2 = DriftEngine(_cfg(), [prof])
    ts = np.array([e.ts for e in evs])
    cols = {n: np.array([e.features[n] for e in evs], dtype=object if n == "cat" else float) for n in ("f0", "f1", "f2", "cat")}
    by_cols = []
    for a in range(0, 3000, 500):
        by_cols += e2.ingest_columns("m", "1", ts[a : a + 500], {k: v[a : a + 500] for k, v in cols.items()})
    by_cols += e2.flush()
    assert by_events and _strip(by_cols) == by_events


def test_unknown_model_and_late_events_are_counted_not_judged():
    eng = DriftEngine(_cfg(), [_profile()])
    _feed(eng, _events(600, seed=17))
    eng.ingest(_events(10, seed=18, model="other"))
    eng.ingest(_events(5, seed=19))  # t in [0, 0.5): its window closed long ago
    assert eng.stats["no_reference"] == 10
    assert eng.stats["late_events"] == 5


# ---------------------------------------------------------------- labels


def test_labels_give_performance_and_concept_drift_alerts_and_controls_none():
    prof = _profile(labelled=True)
    control = DriftEngine(_cfg(), [prof])
    assert _feed_labelled(control, _labelled(20_000, seed=20)) == []
    eng = DriftEngine(_cfg(), [prof])
    alerts = _feed_labelled(eng, _labelled(5000, seed=21) + _labelled(3000, t0=500.0, p_err=0.35, seed=22))
    kinds = {a.kind: a for a in alerts}
    assert set(kinds) == {"concept_drift", "performance"}
    c = kinds["concept_drift"]
    assert c.details["granularity"] == "event" and 500.0 <= c.details["detected_ts"] <= 500.0 + 40.0  # <= 400 events
    assert kinds["performance"].window.start == 500.0


def _feed_labelled(eng, exs, batch=200):
    out = []
    for a in range(0, len(exs), batch):
        out += eng.ingest_labelled(exs[a : a + batch])
    return out + eng.flush()


def test_concept_drift_without_a_labelled_reference_on_the_worker_path():
    eng = DriftEngine(_cfg(concept_warmup=1000), [_profile()])  # no labels in the profile: warm-up estimate
    exs = _labelled(4000, seed=23) + _labelled(3000, t0=400.0, p_err=0.4, seed=24)
    merged: dict = {}
    for a in range(0, len(exs), 300):
        for key, acc in eng.accumulate_labelled(exs[a : a + 300]).items():
            merged.setdefault(key, WindowAccumulator.empty(eng.encoder("m", "1"))).merge(acc)
    alerts = []
    for key in sorted(merged, key=lambda k: k.start):
        alerts += eng.judge(key, merged[key])
    assert eng.stats["label_examples_warmup"] == 1000  # the first 1000 of the sequence estimate the error rate
    kinds = sorted(a.kind for a in alerts)
    assert kinds == ["concept_drift", "performance"]
    assert all(a.window.start >= 400.0 for a in alerts)
    assert [a.details["granularity"] for a in alerts if a.kind == "concept_drift"] == ["event"]


def test_river_detectors_can_run_beside_the_cusum():
    eng = DriftEngine(_cfg(concept_detectors=("cusum", "adwin", "ddm")), [_profile(labelled=True)])
    alerts = _feed_labelled(eng, _labelled(3000, seed=25) + _labelled(3000, t0=300.0, p_err=0.5, seed=26))
    concept = [a for a in alerts if a.kind == "concept_drift"]
    assert len(concept) == 1 and concept[0].details["detector"] in ("cusum", "adwin", "ddm")


# ---------------------------------------------------------------- config


def test_config_section_and_validation():
    cfg = section(DriftConfig, {"window_seconds": 30, "min_samples": 100,
                                "thresholds": {"psi": {"warning": 0.2, "critical": 0.3}}}, "drift")
    assert cfg.thresholds.psi == Level(0.2, 0.3) and cfg.thresholds.ks == Thresholds().ks
    assert DriftConfig(thresholds={"ks": [0.05, 0.1]}).thresholds.ks == Level(0.05, 0.1)
    with pytest.raises(ConfigError, match="unknown key"):
        section(DriftConfig, {"window": 3}, "drift")
    with pytest.raises(ValueError, match="hop_seconds"):
        DriftConfig(window_seconds=60, hop_seconds=25)
    with pytest.raises(ValueError, match="concept detector"):
        DriftConfig(concept_detectors=("magic",))
    assert DriftConfig(window_seconds=60, hop_seconds=20).tumbling is False


def test_hopping_windows_judge_overlapping_windows():
    eng = DriftEngine(_cfg(window_seconds=60.0, hop_seconds=20.0, min_samples=300), [_profile()])
    alerts = _feed(eng, _events(3000, seed=27) + _events(2000, t0=300.0, seed=28, shift={0: 1.0})) + eng.flush()
    assert [a.feature for a in alerts] == ["f0"]
    assert alerts[0].window.end - alerts[0].window.start == 60.0
    assert eng.stats["windows_judged"] >= 500 / 20  # one judged window per hop


def test_a_feature_that_stops_arriving_is_a_missing_rate_alert():
    eng = DriftEngine(_cfg(), [_profile()])
    after = [msgspec.structs.replace(e, features={k: v for k, v in e.features.items() if k != "f1"})
             for e in _events(2000, t0=100.0, seed=29)]
    alerts = _feed(eng, _events(1000, seed=30) + after) + eng.flush()
    assert [(a.feature, a.metric, a.severity) for a in alerts] == [("f1", "missing_rate", "critical")]
    assert alerts[0].score == pytest.approx(1.0)
