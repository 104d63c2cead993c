"""Regression models: the loss CUSUM (streams.judge.loss) on each example's continuous loss against the
reference loss distribution stored in the profile.  It detects a rise of the loss quickly, stays silent
on an unchanged stream (also skewed, heavy-tailed, discrete or constant losses), and gives the same alerts
whatever the batching, the order inside a batch, the partitioning and a state reload."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from streams.contracts.events import LabelledExample
from streams.judge.drift_config import DriftConfig
from streams.judge.engine import DriftEngine
from streams.judge.loss import LOSS_SCALE_SHIFT, LossCusum, reference_cdf
from streams.judge.profile import LOSS_QUANTILES, ReferenceProfile, loss_array, loss_quantiles
from streams.judge.profile_build import build_profile
from streams.judge.windows import WindowAccumulator


def _cusum(ref, h=12.0):
    return LossCusum(loss_quantiles(ref), len(ref), h)


# --------------------------------------------------------------------------- the detector alone


def test_loss_cusum_detects_a_rise_of_the_loss_quickly():
    rng = np.random.default_rng(11)
    delays = []
    for _ in range(20):
        c = _cusum(np.abs(rng.normal(size=5000)))
        assert c.update(np.abs(rng.normal(size=5000))) == []
        hits = c.update(np.abs(rng.normal(0, 1.5, size=2000)))  # MAE x1.5
        assert hits
        delays.append(hits[0])
    assert np.median(delays) < 100  # River ADWIN on |error|: ~90 on such streams


@pytest.mark.parametrize("kind", ["halfnormal", "t3", "rounded", "exponential"])
def test_loss_cusum_is_silent_on_an_unchanged_stream(kind):
    rng = np.random.default_rng([3, len(kind)])
    draw = {"halfnormal": lambda k: np.abs(rng.normal(size=k)), "t3": lambda k: np.abs(rng.standard_t(3, size=k)),
            "rounded": lambda k: np.abs(np.round(rng.normal(0, 2, size=k))), "exponential": lambda k: rng.exponential(size=k)}[kind]
    c = _cusum(draw(5000))
    assert c.update(draw(300_000)) == []


def test_constant_loss_atoms_and_outliers_do_not_alarm():
    c = _cusum(np.full(200, 0.5))  # a constant bias (case 04): every loss sits on the reference atom
    assert c.update(np.full(100_000, 0.5 + 1e-12)) == [] and c.s == 0.0
    rng = np.random.default_rng(5)
    c = _cusum(np.abs(rng.normal(size=5000)))
    x = np.abs(rng.normal(size=20_000))
    x[::500] = 1e9  # a few absurd losses (a bad label): bounded evidence each
    x[1000] = np.inf
    assert c.update(x) == []
    assert c.llr(np.array([np.inf]))[0] < 2.5 and c.llr(np.array([np.nan]))[0] < 0  # no outcome: no evidence


def test_reference_cdf_is_the_mid_rank_on_atoms_and_bounded_beyond_the_ends():
    qs = np.array([0.0] * 100 + [1.0] * 100)
    u = reference_cdf(qs, np.array([0.0, 1.0, 0.5, -1.0, 2.0, np.nan]))
    assert u[0] == pytest.approx(0.25) and u[1] == pytest.approx(0.75) and u[2] == pytest.approx(0.5)
    assert 0 < u[3] < 0.01 and 0.99 < u[4] < 1 and u[5] == 0.5


def test_loss_cusum_batching_does_not_change_its_alarms_and_state_round_trips():
    rng = np.random.default_rng(8)
    qs = loss_quantiles(np.abs(rng.normal(size=5000)))
    x = np.concatenate([np.abs(rng.normal(size=3000)), np.abs(rng.normal(0, 2.0, size=3000)), np.abs(rng.normal(size=2000))])
    whole = LossCusum(qs, 5000, 12.0)
    ref = whole.update(x)
    assert len(ref) >= 3
    for size in (1, 37, 500):
        c, got = LossCusum(qs, 5000, 12.0), []
        for a in range(0, len(x), size):
            c = LossCusum.from_state(json.loads(json.dumps(c.state_dict())), qs)
            got += [a + i for i in c.update(x[a:a + size])]
        assert got == ref and (c.n, c.run) == (whole.n, whole.run)
        assert c.s == pytest.approx(whole.s, rel=1e-12)  # sums in another order: equal to rounding


def test_loss_array_and_profile_loss_distribution():
    loss = loss_array([1.0, 2.0, None, "x", 0.0, 3.0], [1.5, 1.0, 1.0, 1.0, 0.0, 0.0], "relative")
    assert loss[0] == pytest.approx(1 / 3) and loss[1] == 1.0 and np.isnan(loss[2]) and np.isinf(loss[3])
    assert loss[4] == 0.0 and np.isinf(loss[5])
    prof = _profile()
    lq = prof.labels.loss_quantiles
    assert len(lq) == LOSS_QUANTILES and lq == sorted(lq) and 0.6 < np.median(lq) < 0.75  # median |N(0,1)| 0.674
    back = ReferenceProfile.from_dict(json.loads(prof.to_json()))
    assert back.labels.loss_quantiles == lq
    classifier = build_profile([{"features": {"x": 1.0}, "prediction": i % 2, "label": 1} for i in range(100)], "m", "1")
    assert classifier.labels.error == "mismatch" and classifier.labels.loss_quantiles is None


# --------------------------------------------------------------------------- in the engine


def _profile(n=5000, seed=0):
    rng = np.random.default_rng([seed, 1])
    x = rng.normal(size=n)
    return build_profile([{"features": {"x": float(v)}, "prediction": float(v), "label": float(v + e)}
                          for v, e in zip(x, rng.normal(size=n))], "m", "1")


def _stream(sds, per=500, seed=1):
    """Labelled examples of a regression model whose residual sd per window is ``sds[w]``; two examples
    share each event time (the event_id breaks the tie)."""
    rng = np.random.default_rng(seed)
    out, j = [], 0
    for w, sd in enumerate(sds):
        x, e = rng.normal(size=per), rng.normal(0, sd, size=per)
        for i in range(per):
            out.append(LabelledExample(f"e{w:03d}-{i:03d}", "m", "1", (j // 2) * 0.2, {"x": float(x[i])},
                                       float(x[i] + e[i]), float(x[i])))
            j += 1
    return out


SDS = [1.0] * 12 + [1.5] * 8 + [1.0] * 12 + [1.6] * 8
CFG = DriftConfig(window_seconds=60, min_samples=200)


def _key(a):
    return (a.alert_id, a.kind, a.window.start, a.window.end, a.window.n, a.details.get("detector"),
            a.details.get("detected_event_id"), a.details.get("change_ts"))


def _backtest(exs, batch, shuffle_seed=None, reload_every=None):
    eng = DriftEngine(CFG, [_profile()])
    out = []
    for k, a in enumerate(range(0, len(exs), batch)):
        b = list(exs[a:a + batch])
        if shuffle_seed is not None:
            random.Random(shuffle_seed + a).shuffle(b)
        out += eng.ingest_labelled(b)
        if reload_every and k % reload_every == 0:
            state = json.loads(json.dumps(eng.state_dict()))
            eng = DriftEngine(CFG, [_profile()])
            eng.load_state_dict(state)
    return sorted(map(_key, out + eng.flush()))


def _worker(exs, partitions, batch):
    eng = DriftEngine(CFG, [_profile()])
    merged: dict = {}
    for p in range(partitions):
        part = [e for e in exs if hash(e.event_id) % partitions == p]
        open_: dict = {}
        for a in range(0, len(part), batch):
            for key, acc in eng.accumulate_labelled(part[a:a + batch]).items():
                open_[key] = open_[key].merge(acc) if key in open_ else acc
        for key, acc in open_.items():
            merged.setdefault(key, []).append(WindowAccumulator.from_dict(json.loads(json.dumps(acc.to_dict()))))
    alerts = []
    for key in sorted(merged, key=lambda k: k.start):
        accs = merged[key]
        random.Random(int(key.start)).shuffle(accs)
        acc = accs[0]
        for other in accs[1:]:
            acc.merge(other)
        alerts += eng.judge(key, acc)
    return sorted(map(_key, alerts))


def test_engine_runs_the_loss_cusum_for_regression_models_on_every_path():
    exs = _stream(SDS)
    ref = _backtest(exs, batch=200)
    concept = [a for a in ref if a[1] == "concept_drift"]
    assert concept and {a[5] for a in concept} == {"loss_cusum"}
    assert all(a[6] is not None for a in concept)
    # both rises found, each within one window of 500 labelled examples of its start
    detected = sorted(int(a[6][1:4]) for a in concept)
    assert detected[0] in (12, 13) and any(d in (32, 33) for d in detected)
    assert _backtest(exs, batch=997, shuffle_seed=3) == ref
    assert _backtest(exs, batch=50, shuffle_seed=4, reload_every=7) == ref
    assert _worker(exs, partitions=3, batch=113) == ref
    assert _worker(exs, partitions=2, batch=1000) == ref


def test_engine_unchanged_regression_stream_gives_no_alert():
    alerts = _backtest(_stream([1.0] * 60, seed=9), batch=500)
    assert alerts == []


def test_window_sequence_carries_losses_exactly():
    a, b = WindowAccumulator("p", np.zeros(3, np.int64)), WindowAccumulator("p", np.zeros(3, np.int64))
    a.add_labels(np.array([0, 1]), None, np.array([2.0, 1.0]), ["b", "a"], losses=np.array([0.5, np.inf]))
    b.add_labels(np.array([0]), None, np.array([1.0]), ["c"], losses=np.array([np.nan]))
    whole = a.copy().merge(b)
    back = WindowAccumulator.from_dict(json.loads(json.dumps(whole.to_dict())))
    ts, err, ids, loss = back.sequence()
    assert ids == ["a", "c", "b"] and list(err) == [1, 0, 0]
    assert np.isinf(loss[0]) and np.isnan(loss[1]) and loss[2] == 0.5
    assert back == whole and b.copy().merge(a).sequence()[2] == ids
    plain = WindowAccumulator("p", np.zeros(3, np.int64))
    plain.add_labels(np.array([1]), None, np.array([1.0]), ["z"])
    assert plain.sequence()[3] is None and "loss" not in plain.to_dict()["seq"]


def test_old_profile_without_a_loss_distribution_keeps_the_bernoulli_cusum():
    d = _profile().to_dict()
    d["labels"].pop("loss_quantiles")
    old = ReferenceProfile.from_dict(d)
    eng = DriftEngine(CFG, [old])
    alerts = []
    for a in range(0, 20000, 500):
        alerts += eng.ingest_labelled(_stream(SDS)[a:a + 500])
    concept = [a for a in alerts if a.kind == "concept_drift"]
    assert concept and {a.details["detector"] for a in concept} == {"cusum"}
    assert LOSS_SCALE_SHIFT == 1.3
