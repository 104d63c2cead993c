"""Concept drift: one alert per sustained change (no flapping), window.n of the evidence run,
EventDedup, and backtest inputs as tables."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from streams.cli.backtest import replay
from streams.judge.dedupe import EventDedup
from streams.judge.drift_config import DriftConfig
from streams.judge.engine import DriftEngine
from streams.contracts.events import LabelledExample
from streams.judge.profile_build import build_profile


def _profile(err_rate=0.1, n=20000):
    rows = [{"features": {"x": float(i % 7)}, "prediction": 0 if i < err_rate * n else 1, "label": 1} for i in range(n)]
    return build_profile(rows, "m", "1")


def _stream(rates, per=500, dt=0.12, seed=1):
    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    for w, r in enumerate(rates):
        wrong = rng.random(per) < r
        for i, bad in enumerate(wrong):
            out.append(LabelledExample(f"e{w}-{i}", "m", "1", t, {"x": 0.0}, 1, 0 if bad else 1))
            t += dt
    return out


@pytest.mark.parametrize("worker_path", [False, True])
def test_sustained_rise_near_the_threshold_gives_one_alert_until_it_ends(worker_path):
    eng = DriftEngine(DriftConfig(window_seconds=60, min_samples=200), [_profile()])
    stream = _stream([0.10] * 10 + [0.16] * 40 + [0.10] * 15)
    opened, cleared = [], []
    for i in range(0, len(stream), 250):
        batch = stream[i:i + 250]
        if not worker_path:
            opened += [a for a in eng.ingest_labelled(batch) if a.kind == "concept_drift"]
        else:  # the worker's path: window accumulators absorbed one by one (judge feeds the detectors)
            for key, acc in sorted(eng.accumulate_labelled(batch).items(), key=lambda kv: kv[0].start):
                opened += [a for a in eng._absorb({key: acc}) if a.kind == "concept_drift"]
        cleared += [c for c in eng.take_cleared() if c["kind"] == "concept_drift"]
    opened += [a for a in eng.flush() if a.kind == "concept_drift"]
    cleared += [c for c in eng.take_cleared() if c["kind"] == "concept_drift"]
    assert len(opened) == 1
    a = opened[0]
    start_of_rise = 10 * 500 * 0.12
    assert a.details["granularity"] == "event"
    assert a.window.start >= start_of_rise - 60 and a.window.end > a.details["detected_ts"]
    assert 0 < a.window.n <= 40 * 500  # the evidence run, not a position in a micro-batch
    assert len(cleared) <= 1
    if cleared:
        assert cleared[0]["cleared_at_window_end"] > 50 * 500 * 0.12  # not before the rise really ended


def test_concept_alert_is_opened_once_on_the_worker_path():
    eng = DriftEngine(DriftConfig(window_seconds=60, min_samples=200), [_profile()])
    stream = _stream([0.10] * 10 + [0.18] * 40 + [0.10] * 15)
    alerts = []
    for i in range(0, len(stream), 500):
        for key, acc in sorted(eng.accumulate_labelled(stream[i:i + 500]).items(), key=lambda kv: kv[0].start):
            alerts += eng._absorb({key: acc})
    alerts += eng.flush()
    concept = [a for a in alerts if a.kind == "concept_drift"]
    assert len(concept) == 1 and concept[0].details["granularity"] == "event"
    assert concept[0].details["detected_ts"] >= 10 * 500 * 0.12


def test_event_dedup_is_bounded_and_round_trips():
    d = EventDedup(horizon_s=10.0)
    ids = [f"e{i}" for i in range(1000)]
    ts = np.arange(1000.0)
    assert d.first_occurrences(ids, ts).all()
    assert len(d) <= 12  # ids behind watermark - horizon are forgotten
    assert not d.first_occurrences(["e995"], [995.0]).any()
    d2 = EventDedup(horizon_s=1.0)
    d2.load_state_dict(json.loads(json.dumps(d.state_dict())))
    assert d2.first_occurrences(["e999", "new"], [999.0, 999.5]).tolist() == [False, True]
    with pytest.raises(ValueError):
        d.first_occurrences(["a"], [1.0, 2.0])
    capped = EventDedup(horizon_s=1e9, max_ids=100)
    capped.first_occurrences([f"x{i}" for i in range(1000)], np.zeros(1000))
    assert len(capped) == 100 and capped.evicted == 900


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_backtest_reads_csv_and_parquet_tables(tmp_path, suffix):
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.normal(size=n)
    x[2000:] += 3.0
    df = pd.DataFrame({"ts": 1000.0 + np.arange(n) * 0.06, "x": x, "zip": rng.choice(["02134", "10001"], n),
                       "prediction": (x > 0).astype(int), "label": 1})
    p = tmp_path / f"in{suffix}"
    df.to_csv(p, index=False) if suffix == ".csv" else df.to_parquet(p)
    out = io.StringIO()
    summary = replay(p, out, DriftConfig(reference_events=1000), [], None, io.StringIO(), progress=False,
                     model="m", version="1")
    # the reference: the whole 60 s windows holding the first 1000 events (ts < 1080: 1334 events)
    assert summary["references_built"]["m v1"]["n"] == 1334
    assert summary["events_read"] == n and summary["labelled_joined"] == n - 1334
    feats = {json.loads(line)["feature"] for line in out.getvalue().splitlines()}
    assert "x" in feats and "zip" not in feats
