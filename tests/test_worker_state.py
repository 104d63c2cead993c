"""Pure worker logic (streams/worker/state.py): watermarks, lateness, partials, aggregation, bootstrap, restarts."""

from __future__ import annotations

import random
import zlib

import pytest

from streams.worker import state as ws

from streams.worker.aggregate_state import AggState, Watermarks

from streams.worker.source import SourceState
from streams.judge.drift_config import DriftConfig
from streams.contracts.validate import parse_input
from streams.judge.profile_build import build_profile
from streams.cli.sample import Drift, SampleTraffic

GEOM = ws.Geometry(size=10.0, hop=10.0, lateness=0.0)


@pytest.fixture(scope="module")
def profile():
    return build_profile([parse_input(e) for e in SampleTraffic(seed=123).events(4000)], "fraud", "1")


@pytest.fixture(scope="module")
def port():
    return ws.engine_port(DriftConfig(window_seconds=10, min_samples=200))


def traffic(n=6000, drift_at=None, seed=7):
    tr = SampleTraffic(seed=seed)
    if drift_at is not None:
        tr.drifts.append(Drift("amount", tr.start_ts + drift_at, scale=3.0))
    return [parse_input(e) for e in tr.events(n)]


def _json(x):  # the worker's own codec for state and partials (Kafka changelog and internal topic)
    return ws.decode_state(ws.encode_state(x))


def run_source(events, port, profile, cuts, lateness=0.0, get_profile=None):
    """Feed one partition's events in batches split at ``cuts``; return (records, late offsets, state)."""
    geom = ws.Geometry(10.0, 10.0, lateness)
    src = SourceState(0)
    records, late = [], []
    bounds = [0, *cuts, len(events)]
    for a, b in zip(bounds, bounds[1:]):
        out = src.ingest([(i, events[i]) for i in range(a, b)], geom, port, get_profile or (lambda m, v: profile))
        records += [_json(r) for _, r in out.records]
        late += [o for o, _ in out.late]
    return records, late, src


def test_lateness_and_partials_do_not_depend_on_batch_boundaries(port, profile):
    events = traffic(3000)
    rng = random.Random(0)
    # jitter event times a little: some events arrive after their window closed
    events = [e.__class__(e.event_id, e.model, e.model_version, e.ts + rng.uniform(-12, 0), e.features, e.entity,
                          e.prediction, e.scores) for e in events]
    a = run_source(events, port, profile, cuts=[])
    b = run_source(events, port, profile, cuts=sorted(rng.sample(range(1, len(events)), 40)))
    assert a[0] == b[0] and a[1] == b[1]
    assert a[1], "the jitter should make some events late"
    closed = [r for r in a[0] if r["type"] == "partial"]
    assert sum(r["n"] for r in closed) + len(a[1]) + sum(e["n"] for w in a[2].open.values() for e in w.values()) == len(events)


def test_allowed_lateness_accepts_late_events_that_are_within_it(port, profile):
    events = traffic(2000)
    events[1500] = events[1500].__class__(events[1500].event_id, "fraud", "1", events[1500].ts - 15, events[1500].features)
    _, late0, _ = run_source(events, port, profile, cuts=[700], lateness=0.0)
    _, late20, _ = run_source(events, port, profile, cuts=[700], lateness=20.0)
    assert late0 == [1500] and late20 == []


def test_replayed_records_after_restart_are_skipped(port, profile):
    events = traffic(2000)
    src = SourceState(0)
    src.ingest([(i, e) for i, e in enumerate(events[:1200])], GEOM, port, lambda m, v: profile)
    restored = SourceState(0, _json(src.to_dict()))
    out = restored.ingest([(i, e) for i, e in enumerate(events) if i >= 1000], GEOM, port, lambda m, v: profile)
    assert out.skipped == 200
    whole = SourceState(0)
    whole.ingest([(i, e) for i, e in enumerate(events)], GEOM, port, lambda m, v: profile)
    assert _json(restored.to_dict()) == _json(whole.to_dict())


def aggregate(streams_by_src, port, profile, order_seed, bootstrap_n=10**9, with_profile=True):
    """Run sources + one aggregator; records are interleaved across sources in a seeded random order
    (each source's own order kept, as on one internal partition)."""
    n_src = len(streams_by_src)
    srcs = [SourceState(p) for p in range(n_src)]
    agg = AggState("fraud", "1")
    if with_profile:
        agg.set_profile(profile, "registered")
    chunks: dict = {}
    built = {}

    def get_profile(m, v):
        return profile if with_profile else built.get("p")

    queues = [[] for _ in range(n_src)]
    rng = random.Random(order_seed)
    for p, evs in enumerate(streams_by_src):
        i = 0
        while i < len(evs):
            k = rng.randint(50, 900)
            out = srcs[p].ingest([(j, evs[j]) for j in range(i, min(i + k, len(evs)))], GEOM, port, get_profile)
            queues[p] += [_json(r) for _, r in out.records] + [ws.watermark_record(p, ws.INPUTS, srcs[p].wm)]
            i += k
    wm = Watermarks()
    alerts, judged = [], []
    while any(queues):
        p = rng.choice([i for i, q in enumerate(queues) if q])
        rec = queues[p].pop(0)
        if rec["type"] == "wm":
            wm.update(rec["stream"], rec["src"], rec["wm"])
        else:
            agg.add(rec, port, chunks)
        out = agg.judge_ready(ws.INPUTS, wm.global_wm(ws.INPUTS, n_src), GEOM, port, bootstrap_n, chunks)
        if out.reference_built is not None:
            built["p"] = out.reference_built
        alerts += [(a.alert_id, a.kind, a.feature, a.window.start, a.window.n, round(a.score, 9)) for a in out.alerts]
        judged += [(w, n) for _, w, n in out.judged]
    return alerts, judged, agg, chunks


def split(events, k):
    parts = [[] for _ in range(k)]
    for e in events:
        parts[zlib.crc32(e.event_id.encode()) % k].append(e)
    return parts


def test_two_sources_in_any_interleaving_give_the_alerts_of_one(port, profile):
    events = traffic(9000, drift_at=150)
    one = aggregate([events], port, profile, order_seed=1)
    two_a = aggregate(split(events, 2), port, profile, order_seed=2)
    two_b = aggregate(split(events, 2), port, profile, order_seed=3)
    assert one[0] == two_a[0] == two_b[0]
    assert one[1] == two_a[1]
    assert [a[2] for a in one[0] if a[1] == "data_drift"] == ["amount"]


def test_global_watermark_waits_for_every_source():
    wm = Watermarks()
    wm.update(ws.INPUTS, 0, 100.0)
    assert wm.global_wm(ws.INPUTS, 2) is None
    wm.update(ws.INPUTS, 1, 50.0)
    assert wm.global_wm(ws.INPUTS, 2) == 50.0
    assert not wm.update(ws.INPUTS, 1, 40.0)  # watermarks never go back


def test_idle_sources_stop_holding_the_watermark_back_until_they_report_again():
    wm = Watermarks()
    wm.update(ws.INPUTS, 0, 100.0)
    assert wm.update(ws.INPUTS, 1, None, idle=True)  # a partition that never had data, announced idle
    assert wm.global_wm(ws.INPUTS, 2) == 100.0
    assert wm.global_wm(ws.LABELS, 2) is None  # per stream
    assert not wm.update(ws.INPUTS, 1, None, idle=True)  # announced twice: nothing changes
    restored = Watermarks(ws.decode_state(ws.encode_state(wm.to_dict())))  # survives a restart
    assert restored.global_wm(ws.INPUTS, 2) == 100.0
    assert restored.update(ws.INPUTS, 1, 60.0)  # active again: holds the watermark again
    assert restored.global_wm(ws.INPUTS, 2) == 60.0
    assert restored.update(ws.INPUTS, 0, 100.0, idle=True)  # idle at its last watermark
    assert restored.global_wm(ws.INPUTS, 2) == 60.0
    assert restored.update(ws.INPUTS, 1, 60.0, idle=True)  # all idle: everything sent so far is complete
    assert restored.global_wm(ws.INPUTS, 2) == 100.0


def test_duplicate_partials_after_judging_are_ignored(port, profile):
    events = traffic(2000)
    src = SourceState(0)
    out = src.ingest([(i, e) for i, e in enumerate(events)], GEOM, port, lambda m, v: profile)
    partials = [_json(r) for _, r in out.records]
    agg = AggState("fraud", "1")
    agg.set_profile(profile, "registered")
    for r in partials:
        assert agg.add(r, port)
    res = agg.judge_ready(ws.INPUTS, src.wm, GEOM, port, 10**9)
    assert len(res.judged) == len(partials)
    assert not agg.add(partials[0], port) and agg.duplicates == 1


def test_reference_is_bootstrapped_from_whole_windows_and_judging_starts_after(port, profile):
    events = traffic(9000, drift_at=150)
    alerts, judged, agg, chunks = aggregate(split(events, 2), port, profile, order_seed=4, bootstrap_n=2500,
                                            with_profile=False)
    assert agg.profile_source == "bootstrap" and agg.ref_n == 2500 and len(agg.ref_windows) == 5
    assert not chunks, "bootstrap rows are deleted once the profile is built"
    first_judged = min(ws.win_parse(w)[0] for w, _ in judged)
    assert first_judged == SampleTraffic().start_ts + 50
    data = [a for a in alerts if a[1] == "data_drift"]
    assert [a[2] for a in data] == ["amount"] and data[0][3] - SampleTraffic().start_ts in (150.0, 160.0)
    again = aggregate(split(events, 2), port, profile, order_seed=5, bootstrap_n=2500, with_profile=False)
    assert again[0] == alerts and again[2].profile["id"] == agg.profile["id"]


def test_aggregator_state_survives_a_json_round_trip(port, profile):
    events = traffic(6000, drift_at=100)
    src = SourceState(0)
    out = src.ingest([(i, e) for i, e in enumerate(events)], GEOM, port, lambda m, v: profile)
    recs = [_json(r) for _, r in out.records]
    a = AggState("fraud", "1")
    a.set_profile(profile, "registered")
    b = AggState("fraud", "1")
    b.set_profile(profile, "registered")
    alerts_a, alerts_b = [], []
    for i, r in enumerate(recs):
        a.add(r, port)
        alerts_a += a.judge_ready(ws.INPUTS, r and ws.win_parse(r["window"])[1], GEOM, port, 10**9).alerts
        b.add(r, port)
        alerts_b += b.judge_ready(ws.INPUTS, ws.win_parse(r["window"])[1], GEOM, port, 10**9).alerts
        b = AggState("fraud", "1", _json(b.to_dict()))  # "restart" after every record
    assert [x.alert_id for x in alerts_a] == [x.alert_id for x in alerts_b] and alerts_a


def test_acc_partial_of_a_new_owner_supersedes_rows_of_the_previous_one(port, profile):
    """After a rebalance the new owner may count a window in acc mode that the old owner had
    started shipping as rows (no profile yet when it opened): the window must not count twice."""
    events = [e for e in traffic(600) if e.ts < SampleTraffic().start_ts + 10]
    w = ws.win_str(SampleTraffic().start_ts, SampleTraffic().start_ts + 10)
    rows = ws.rows_record(0, "fraud", "1", w, [[i, e.to_dict()] for i, e in enumerate(events[:200])])
    new_owner = SourceState(0)
    out = new_owner.ingest([(i, e) for i, e in enumerate(traffic(600))], GEOM, port, lambda m, v: profile)
    partial = next(r for _, r in out.records if r["type"] == "partial" and r["window"] == w)
    agg = AggState("fraud", "1")
    agg.set_profile(profile, "registered")
    agg.add(_json(rows), port)
    agg.add(_json(partial), port)
    agg.add(_json(rows), port)  # the old owner's rows arriving late change nothing
    res = agg.judge_ready(ws.INPUTS, SampleTraffic().start_ts + 10, GEOM, port, 10**9)
    assert res.judged == [(ws.INPUTS, w, len(events))]
