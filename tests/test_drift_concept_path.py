"""One label path: backtest (ingest_labelled + flush) and the worker (accumulate_labelled per partition ->
partials over JSON -> merge -> judge in window order) give the same concept-drift alerts, whatever the
batching, the order inside a batch and the partitioning; River detectors survive a state_dict reload."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from streams.judge.drift_config import DriftConfig
from streams.judge.engine import DriftEngine
from streams.contracts.events import LabelledExample
from streams.judge.profile_build import build_profile
from streams.judge.windows import WindowAccumulator


def _profile(err_rate=0.1, n=20000):
    rows = [{"features": {"x": float(i % 7)}, "prediction": 0 if i < err_rate * n else 1, "label": 1} for i in range(n)]
    return build_profile(rows, "m", "1")


def _stream(rates, per=500, seed=1):
    """Labelled examples; two examples share each event time (the event_id breaks the tie)."""
    rng = np.random.default_rng(seed)
    out, j = [], 0
    for w, r in enumerate(rates):
        wrong = rng.random(per) < r
        for i, bad in enumerate(wrong):
            out.append(LabelledExample(f"e{w:03d}-{i:03d}", "m", "1", (j // 2) * 0.2, {"x": 0.0}, 1, 0 if bad else 1))
            j += 1
    return out


RATES = [0.10] * 12 + [0.30] * 12 + [0.10] * 12 + [0.35] * 10


def _key(a):
    return (a.alert_id, a.kind, a.window.start, a.window.end, a.window.n, a.details.get("detector"),
            a.details.get("detected_event_id"), a.details.get("change_ts"))


def _backtest(cfg, exs, batch, shuffle_seed=None):
    eng = DriftEngine(cfg, [_profile()])
    out = []
    for a in range(0, len(exs), batch):
        b = list(exs[a:a + batch])
        if shuffle_seed is not None:
            random.Random(shuffle_seed + a).shuffle(b)
        out += eng.ingest_labelled(b)
    return sorted(map(_key, out + eng.flush()))


def _worker(cfg, exs, partitions, batch):
    """What the worker does: label partitions accumulate, partials travel as JSON, the aggregator merges
    them and judges each window in start order once every partition passed it."""
    eng = DriftEngine(cfg, [_profile()])
    parts = [[e for e in exs if hash(e.event_id) % partitions == p] for p in range(partitions)]
    merged: dict = {}
    for part in parts:
        open_: dict = {}
        for a in range(0, len(part), batch):
            for key, acc in eng.accumulate_labelled(part[a:a + batch]).items():
                if key in open_:
                    open_[key].merge(acc)
                else:
                    open_[key] = acc
        for key, acc in open_.items():  # windows close: partial records on the internal topic
            acc = WindowAccumulator.from_dict(json.loads(json.dumps(acc.to_dict())))
            merged.setdefault(key, []).append(acc)
    alerts = []
    for key in sorted(merged, key=lambda k: k.start):
        accs = merged[key]
        random.Random(int(key.start)).shuffle(accs)  # partials arrive in any order
        acc = accs[0]
        for other in accs[1:]:
            acc.merge(other)
        alerts += eng.judge(key, acc)
    return sorted(map(_key, alerts))


CONFIGS = {
    "tumbling cusum+adwin": DriftConfig(window_seconds=60, min_samples=200, concept_detectors=("cusum", "adwin")),
    "tumbling adwin": DriftConfig(window_seconds=60, min_samples=200, concept_detectors=("adwin",)),
    "hopping cusum+adwin": DriftConfig(window_seconds=60, hop_seconds=20, min_samples=200,
                                       concept_detectors=("cusum", "adwin")),
    "hopping ddm, small river_history": DriftConfig(window_seconds=60, hop_seconds=15, min_samples=200,
                                                    concept_detectors=("ddm", "adwin"), river_history=700),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_backtest_and_worker_paths_give_the_same_concept_alerts(name):
    cfg = CONFIGS[name]
    exs = _stream(RATES)
    ref = _backtest(cfg, exs, batch=200)
    concept = [a for a in ref if a[1] == "concept_drift"]
    assert concept, ref
    detectors = {a[5] for a in concept}
    if "cusum" not in cfg.concept_detectors:
        assert detectors <= set(cfg.concept_detectors)  # the River detector raised them
    assert all(a[6] is not None for a in concept)  # event granularity: the detecting event is known
    assert _backtest(cfg, exs, batch=997, shuffle_seed=3) == ref
    assert _backtest(cfg, exs, batch=50, shuffle_seed=4) == ref
    assert _worker(cfg, exs, partitions=3, batch=113) == ref
    assert _worker(cfg, exs, partitions=2, batch=1000) == ref


def test_every_example_enters_one_error_sequence_with_hopping_windows():
    cfg = CONFIGS["hopping cusum+adwin"]
    eng = DriftEngine(cfg, [_profile()])
    exs = _stream([0.1] * 6)
    parts = eng.accumulate_labelled(exs)
    assert len({k.start for k in parts}) > 3
    ids = [i for acc in parts.values() for i in acc.seq_ids]
    assert sorted(ids) == sorted(e.event_id for e in exs)  # once each, in the window of its own hop slot
    for key, acc in parts.items():
        assert all(key.start <= t < key.start + cfg.hop for t in acc.seq_ts)
    assert sum(acc.n_labelled for acc in parts.values()) == 3 * len(exs)  # counts: every window it belongs to


def test_error_sequence_round_trips_and_merges_exactly():
    eng = DriftEngine(CONFIGS["tumbling adwin"], [_profile()])
    exs = _stream([0.2] * 2)
    (key, whole), = [(k, a) for k, a in eng.accumulate_labelled(exs).items() if k.start == 0.0]
    a = eng.accumulate_labelled(exs[1::2])[key]
    b = eng.accumulate_labelled(exs[0::2])[key]
    d = json.loads(json.dumps(a.merge(b).to_dict()))
    c = WindowAccumulator.from_dict(d)
    assert set(d["seq"]) == {"ts", "err", "ids"} and set(d["seq"]["err"]) <= {"0", "1"}
    for x, y in zip(c.error_sequence(), whole.error_sequence()):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert c.n_labelled == whole.n_labelled and c.n_errors == whole.n_errors
    assert c.copy() == c and len(c.copy().merge(c).seq_ids) == 2 * len(c.seq_ids)
    assert "seq" not in WindowAccumulator.empty(eng.encoder("m", "1")).to_dict()  # input windows: unchanged


@pytest.mark.parametrize("cut", [3100, 9000, 15000])
def test_river_detectors_survive_a_state_dict_reload(cut):
    cfg = DriftConfig(window_seconds=60, min_samples=200, concept_detectors=("adwin", "ddm", "page_hinkley"),
                      river_history=1500)
    exs = _stream(RATES)
    ref = _backtest(cfg, exs, batch=250)
    assert any(a[1] == "concept_drift" for a in ref)
    a = DriftEngine(cfg, [_profile()])
    first = a.ingest_labelled(exs[:cut])
    state = json.loads(json.dumps(a.state_dict()))
    tail = state["models"]["m\x1f1"]["error_tail"]
    assert tail["n"] <= 2 * cfg.river_history and len(tail["bits"]) <= 4 * (2 * cfg.river_history // 8 // 3 + 1)
    b = DriftEngine(cfg, [_profile()])
    b.load_state_dict(state)
    second = b.ingest_labelled(exs[cut:]) + b.flush()
    assert sorted(map(_key, first + second)) == ref
