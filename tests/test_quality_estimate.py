"""Label-free performance estimates (streams.judge.estimate, the engine's estimated_performance path).

The synthetic classifier is binary with a known truth: P(label = 1 | x) = sigmoid(3 x).  Its scores are
either that truth (calibrated) or an over-confident sigmoid(6 x) (miscalibrated: the reference's
labelled scores must correct it).  The drifted traffic squeezes x towards 0, where the model is less
sure: accuracy drops from about 0.80 to about 0.62 with no change of concept, so the estimate should
follow the realised accuracy.  Stated error: within 0.03 of the realised accuracy of a window of
5000 events (its own sampling sd is about 0.007; the rest is the calibration's binning).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from streams.contracts.events import InferenceEvent, LabelledExample
from streams.judge.drift_config import DriftConfig
from streams.judge.engine import DriftEngine
from streams.judge.estimate import estimate_window, fit_calibrator, isotonic
from streams.judge.profile import ReferenceProfile, ScoreCalibration, content_id
from streams.judge.profile_build import build_profile

TOLERANCE = 0.03


def _stream(n, sd, seed, sharp=3.0, t0=0.0, rate=100.0, prefix="e"):
    """(events, labelled examples, realised accuracy): x ~ N(0, sd), truth sigmoid(3x), scores sigmoid(sharp x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, sd, n)
    truth = 1.0 / (1.0 + np.exp(-3.0 * x))
    y = (rng.random(n) < truth).astype(int)
    p = 1.0 / (1.0 + np.exp(-sharp * x))
    pred = (p >= 0.5).astype(int)
    evs, exs = [], []
    for i in range(n):
        sc = (round(1.0 - float(p[i]), 6), round(float(p[i]), 6))
        ts = t0 + i / rate
        evs.append(InferenceEvent(f"{prefix}{i}", "m", "1", ts, {"x": float(x[i])}, prediction=int(pred[i]), scores=sc))
        exs.append(LabelledExample(f"{prefix}{i}", "m", "1", ts, {"x": float(x[i])}, int(y[i]), int(pred[i]), sc))
    return evs, exs, float((pred == y).mean())


def _reference(sharp=3.0):
    _, exs, acc = _stream(20000, 1.0, 0, sharp)
    return build_profile(exs, "m", "1"), acc


def _bins(profile, events):
    from streams.judge.profile_build import _score_value

    sv = np.array([_score_value(e.scores) for e in events])
    b = np.searchsorted(np.asarray(profile.score.edges), sv, side="left")
    return np.bincount(b, minlength=len(profile.score.edges) + 1)


def test_isotonic_is_monotone_and_keeps_the_weighted_mean():
    x = np.array([0.9, 0.5, 0.6, 0.7, 0.8])
    y = np.array([0.95, 0.6, 0.4, 0.75, 0.7])
    w = np.array([10, 5, 5, 20, 10.0])
    f = isotonic(x, y, w)
    order = np.argsort(x)
    assert np.all(np.diff(f[order]) >= -1e-12)
    assert (f * w).sum() == pytest.approx((y * w).sum())


def test_reference_profile_stores_the_labelled_scores_per_score_bin():
    prof, acc = _reference()
    cal = prof.labels.calibration
    assert isinstance(cal, ScoreCalibration)
    assert len(cal.count) == len(prof.score.edges) + 1
    assert sum(cal.count) == prof.labels.n
    assert sum(cal.correct) == prof.labels.n - prof.labels.errors
    back = ReferenceProfile.from_dict(prof.to_dict())  # JSON round trip keeps it typed
    assert back.labels.calibration == cal and back.id == prof.id


def test_a_profile_from_before_calibration_loads_and_keeps_its_id():
    prof = build_profile([{"features": {"x": float(i % 5)}, "prediction": 1, "label": i % 3 == 0} for i in range(300)],
                         "m", "1")
    assert prof.labels.calibration is None  # no scores: nothing to calibrate
    d = prof.to_dict()
    d["labels"].pop("calibration")  # what an older driftloop wrote
    old = ReferenceProfile.from_dict(d)
    assert old.labels.calibration is None and content_id(old) == prof.id


@pytest.mark.parametrize("method", ["isotonic", "histogram"])
@pytest.mark.parametrize("sharp", [3.0, 6.0], ids=["calibrated", "overconfident"])
def test_estimate_tracks_realised_accuracy_under_covariate_shift(method, sharp):
    prof, ref_acc = _reference(sharp)
    cal = fit_calibrator(prof.labels.calibration, method)
    assert cal.reference_accuracy == pytest.approx(ref_acc, abs=0.005)
    for sd, seed in ((1.0, 11), (0.3, 12)):
        evs, _, realised = _stream(5000, sd, seed, sharp)
        est = estimate_window(cal, _bins(prof, evs))
        assert est.n_scored == 5000
        assert abs(est.estimated_accuracy - realised) <= TOLERANCE, (sd, est, realised)
    raw_conf = np.mean([max(e.scores) for e in evs])
    if sharp == 6.0:  # the raw confidence of an over-confident model would miss by far more
        assert raw_conf - realised > 2 * TOLERANCE


def test_engine_estimates_windows_alerts_early_and_checks_itself_against_labels():
    prof, _ = _reference(6.0)
    eng = DriftEngine(DriftConfig(window_seconds=50.0, min_samples=1000), [prof])
    healthy, hl, _ = _stream(20000, 1.0, 21, 6.0, t0=0.0)
    shifted, sl, _ = _stream(20000, 0.3, 22, 6.0, t0=200.0, prefix="s")
    alerts = []
    for evs in (healthy, shifted):
        for a in range(0, len(evs), 2500):
            alerts += eng.ingest(evs[a:a + 2500])
    alerts += eng.flush()
    early = [a for a in alerts if a.kind == "estimated_performance"]
    assert early, [a.kind for a in alerts]
    assert all(a.window.start >= 200.0 for a in early)  # the healthy windows raise nothing
    a = early[0]
    assert a.metric == "estimated_accuracy" and a.details["metrics"]["estimated_accuracy"] < 0.7
    recs = eng.take_quality()
    assert {r["type"] for r in recs} == {"estimate"} and len(recs) == 8
    # the labels arrive later: every window's estimate is checked against its realised accuracy
    for exs in (hl, sl):
        for a in range(0, len(exs), 2500):
            eng.ingest_labelled(exs[a:a + 2500])
    eng.flush()
    errs = [r for r in eng.take_quality() if r["type"] == "estimate_error"]
    assert len(errs) == 8
    assert max(r["abs_error"] for r in errs) <= TOLERANCE
    # the pending pairs survive a state_dict reload
    eng2 = DriftEngine(DriftConfig(window_seconds=50.0, min_samples=1000), [prof])
    evs, exs, _ = _stream(6000, 1.0, 23, 6.0, t0=1000.0, prefix="t")
    eng.ingest(evs)  # closes [1000, 1050): its estimate waits for its labels
    eng2.load_state_dict(json.loads(json.dumps(eng.state_dict())))
    eng2.ingest_labelled(exs)
    eng2.flush()
    errs = [r for r in eng2.take_quality() if r["type"] == "estimate_error"]
    assert [r["start"] for r in errs] == [1000.0, 1050.0] and errs[0]["abs_error"] <= TOLERANCE


def test_estimates_can_be_turned_off():
    prof, _ = _reference(6.0)
    eng = DriftEngine(DriftConfig(window_seconds=50.0, min_samples=1000, estimate_performance=False), [prof])
    eng.ingest(_stream(10000, 0.3, 22, 6.0)[0])
    eng.flush()
    assert eng.take_quality() == []


def test_a_window_under_min_samples_gets_no_estimate_and_no_estimate_check():
    prof, _ = _reference(6.0)
    eng = DriftEngine(DriftConfig(window_seconds=50.0, min_samples=1000), [prof])
    evs, exs, _ = _stream(20000, 1.0, 21, 6.0, t0=0.0)
    first = [e for e in evs if e.ts < 50.0]
    tiny = [e for e in evs if 50.0 <= e.ts < 100.0][:3]
    ids = {e.event_id for e in first + tiny}
    eng.ingest(first + tiny)
    eng.ingest_labelled([x for x in exs if x.event_id in ids])
    eng.flush()
    recs = eng.take_quality()
    assert [r["start"] for r in recs if r["type"] == "estimate"] == [0.0]
    assert [r["start"] for r in recs if r["type"] == "estimate_error"] == [0.0]
    assert sorted(r["n_labelled"] for r in recs if r["type"] == "realised") == [3, len(first)]  # facts, kept
