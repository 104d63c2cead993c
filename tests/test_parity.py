"""Pure tests of the parity checker (streams/alerts/parity.py): no Feast, no Kafka."""

from __future__ import annotations

import dataclasses

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contracts.events import Alert, AlertReference, AlertWindow, InferenceEvent
from streams.alerts.parity import METRIC_MISMATCH, METRIC_NOT_IN_STORE, METRIC_NOT_IN_STREAM, METRIC_UNKNOWN, ModelSchema, ParityChecker, ParityConfig
from streams.alerts.parity_values import compare_column
from streams.alerts.explain import explain

SCHEMA = ModelSchema(frozenset({"avg", "count", "country"}), frozenset({"amount"}), "feast:test/fraud")
CFG = ParityConfig(window_seconds=60, allowed_lateness_s=0, min_samples=50, schema_min_events=50)


def store_row(cid: int) -> dict:
    return {"avg": 10.0 + cid, "count": cid % 7, "country": "DE" if cid % 2 else "FR"}


def make_events(n: int, *, start: float = 0.0, rate: float = 10.0, scaled: str | None = None,
                fraction: float = 0.2, factor: float = 100.0, version: str = "1", n_customers: int = 100,
                extra: dict | None = None, drop: str | None = None) -> tuple[list[InferenceEvent], list[dict]]:
    events, rows = [], []
    for i in range(n):
        cid = i % n_customers
        row = store_row(cid)
        feats = {"amount": float(i % 13), **row, **(extra or {})}
        if scaled and cid < fraction * n_customers:
            feats[scaled] = feats[scaled] * factor
        if drop:
            feats.pop(drop)
        events.append(InferenceEvent(f"e-{version}-{start}-{i:06d}", "fraud", version, start + i / rate, feats,
                                     {"customer_id": f"c-{cid}"}))
        rows.append(row)
    return events, rows


def checker(cfg: ParityConfig = CFG) -> ParityChecker:
    return ParityChecker(cfg, {("fraud", "1"): SCHEMA, ("fraud", "2"): SCHEMA}, clock=lambda: 1000.0)


# ------------------------------------------------------------------------ comparison rules


def test_compare_numeric_tolerance_categorical_and_missing():
    served = [1.0, 1.0 + 1e-7, 1.1, 5, "DE", "DE", None, 3.0, None, "7"]
    stored = [1.0, 1.0, 1.0, 5.0, "DE", "FR", 2.0, None, None, 7]
    assert compare_column(served, stored, rtol=1e-4, atol=1e-6) == [
        None, None, "value", None, None, "value", "served_missing", "store_missing", None, "type",
    ]


def test_tolerance_is_relative_to_the_stored_value():
    # float32 round trip of a store value must not count as a mismatch, a 1% change must
    assert compare_column([12.345677852630615], [12.345678], 1e-4, 1e-6) == [None]
    assert compare_column([12.47], [12.345678], 1e-4, 1e-6) == ["value"]


# ------------------------------------------------------------------------ value parity


def test_feature_scaled_by_100_for_20_percent_of_entities_raises_one_parity_alert():
    c = checker()
    events, rows = make_events(600, scaled="avg")  # 60 s of traffic in one window
    assert c.ingest(events, rows) == []  # window still open
    alerts = c.flush()
    assert [(a.kind, a.feature, a.metric) for a in alerts] == [("parity", "avg", METRIC_MISMATCH)]
    a = alerts[0]
    assert a.score == pytest.approx(0.2)
    assert a.severity == "critical" and a.threshold == CFG.warning_rate
    assert a.window.n == 600 and a.reference.id == "feast:test/fraud"
    assert a.details["n_mismatch"] == 120 and a.details["reasons"] == {"value": 120}
    assert a.details["typical_ratio"] == pytest.approx(100.0)
    hit = {f"c-{i}" for i in range(20)}
    assert a.details["entity_keys"] and all(k["customer_id"] in hit for k in a.details["entity_keys"])
    assert len(a.details["examples"]) == CFG.max_examples
    assert a.p_value is not None and a.p_value < 1e-6
    Alert.from_dict(json.loads(a.to_json()))  # the docs/design.md schema round-trips
    assert c.open_alerts("fraud", "1") == {"avg": a.alert_id}


def test_consistent_values_raise_nothing():
    c = checker()
    events, rows = make_events(600)
    assert c.ingest(events, rows) + c.flush() == []
    assert c.last_rates[("fraud", "1", "avg")] == (0.0, 600)


def test_same_shift_in_store_and_stream_raises_nothing():
    c = checker()
    events, rows = make_events(600, scaled="avg")
    rows = [dict(r, avg=ev.features["avg"]) for ev, r in zip(events, rows)]  # the store moved too
    assert c.ingest(events, rows) + c.flush() == []


def test_min_sample_gating_gives_no_verdict_below_min_samples():
    c = checker()
    events, rows = make_events(40, scaled="avg", fraction=1.0)  # every value wrong, but only 40
    assert c.ingest(events, rows) + c.flush() == []
    assert ("fraud", "1", "avg") not in c.last_rates


def test_rate_at_or_below_threshold_is_not_an_alert():
    c = checker(ParityConfig(window_seconds=60, allowed_lateness_s=0, min_samples=50, warning_rate=0.25,
                             critical_rate=0.5, schema_min_events=50))
    events, rows = make_events(600, scaled="avg", fraction=0.2)
    assert c.ingest(events, rows) + c.flush() == []


def test_missing_vs_present_counts_as_mismatch():
    c = checker()
    events, rows = make_events(600)
    rows = [dict(r, country=None) if i % 4 == 0 else r for i, r in enumerate(rows)]
    alerts = c.ingest(events, rows) + c.flush()
    assert [(a.feature, a.score) for a in alerts] == [("country", 0.25)]
    assert alerts[0].details["reasons"] == {"store_missing": 150}


def test_events_without_entity_keys_are_not_compared():
    c = checker()
    events, _ = make_events(600, scaled="avg")
    assert c.ingest(events, [None] * len(events)) + c.flush() == []


def test_window_is_judged_when_the_watermark_passes_and_late_events_are_counted():
    c = checker()
    first, rows1 = make_events(600, scaled="avg")  # t in [0, 60)
    assert c.ingest(first, rows1) == []
    nxt, rows2 = make_events(10, start=70.0)  # watermark 70.9 > 60: first window closes
    alerts = c.ingest(nxt, rows2)
    assert [a.feature for a in alerts] == ["avg"] and alerts[0].window.start == 0.0
    late, rows3 = make_events(5, start=1.0)
    assert c.ingest(late, rows3) == [] and c.late_events == 5


def test_one_alert_per_open_finding_then_close_after_clean_windows_and_reopen():
    c = checker(ParityConfig(window_seconds=60, allowed_lateness_s=0, min_samples=50, close_after=2,
                             schema_min_events=50))
    ids = []
    for w, scaled in enumerate(["avg", "avg", None, None, "avg"]):
        events, rows = make_events(600, start=60.0 * w, scaled=scaled)
        ids += [a.alert_id for a in c.ingest(events, rows)]
    ids += [a.alert_id for a in c.flush()]
    assert len(ids) == 2 and ids[0] != ids[1]  # opened in window 0, closed after 2 clean, reopened in 4
    assert c.open_features("fraud", "1") == {"avg"}


def test_partial_windows_merge_exactly():
    events, rows = make_events(600, scaled="avg")
    whole = checker().accumulate(events, rows)
    a = checker().accumulate(events[:250], rows[:250])
    b = checker().accumulate(events[250:], rows[250:])
    merged = checker()
    merged.merge_into_state(b)
    merged.merge_into_state(a)
    (key, win), = whole.items()
    assert merged._windows[key].to_dict() == win.to_dict()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 599), min_size=1, max_size=599, unique=True))
def test_merge_is_independent_of_how_the_batch_is_split(cuts):
    events, rows = make_events(600, scaled="count", fraction=0.3)
    bounds = [0, *sorted(cuts), 600]
    c = checker()
    for lo, hi in zip(bounds, bounds[1:]):
        c.merge_into_state(c.accumulate(events[lo:hi], rows[lo:hi]))
    (key, win), = checker().accumulate(events, rows).items()
    assert c._windows[key].to_dict() == win.to_dict()


def test_versions_are_judged_apart():
    c = checker()
    e1, r1 = make_events(600, scaled="avg", version="1")
    e2, r2 = make_events(600, version="2")
    alerts = c.ingest(e1 + e2, r1 + r2) + c.flush()
    assert [(a.model_version, a.feature) for a in alerts] == [("1", "avg")]


# ------------------------------------------------------------------------ schema parity


def test_schema_parity_both_directions():
    c = checker()
    events, rows = make_events(600, extra={"new_feature": 1.0}, drop="count")
    alerts = c.ingest(events, rows) + c.flush()
    got = {(a.feature, a.metric) for a in alerts}
    assert got == {("new_feature", METRIC_NOT_IN_STORE), ("count", METRIC_NOT_IN_STREAM)}
    # request-time features ("amount") are declared and never flagged
    assert all(a.feature != "amount" for a in alerts)
    # schema findings do not explain drift
    assert c.open_alerts("fraud", "1") == {}


def test_schema_parity_needs_min_events():
    c = checker()
    events, rows = make_events(30, extra={"new_feature": 1.0})
    assert c.ingest(events, rows) + c.flush() == []


# ------------------------------------------------------------------------ unknown parity


def test_store_unavailable_alerts_once_until_lookups_succeed_again():
    c = checker()
    e1, _ = make_events(100)
    first = c.unknown(e1, "timeout: no answer in 0.5s")
    assert [(a.kind, a.metric, a.feature) for a in first] == [("parity", METRIC_UNKNOWN, None)]
    assert first[0].details["status"] == "unknown" and "timeout" in first[0].details["reason"]
    e2, _ = make_events(100, start=10.0)
    assert c.unknown(e2, "timeout") == []  # still the same outage
    assert c.unknown_models() == {("fraud", "1"): "timeout: no answer in 0.5s"}
    e3, r3 = make_events(100, start=20.0)
    c.ingest(e3, r3)  # recovered
    assert c.unknown_models() == {}
    e4, _ = make_events(100, start=30.0)
    assert len(c.unknown(e4, "error")) == 1  # a new outage is reported again
    # unknown events are not compared values: the window has too few for a verdict
    assert c.flush() == []


# ------------------------------------------------------------------------ state


def test_state_dict_round_trips_through_json():
    c = checker()
    events, rows = make_events(600, scaled="avg")
    c.ingest(events[:300], rows[:300])
    c.unknown(events[300:310], "timeout")
    restored = checker()
    restored.load_state_dict(json.loads(json.dumps(c.state_dict())))
    a1 = c.ingest(events[300:], rows[300:]) + c.flush()
    a2 = restored.ingest(events[300:], rows[300:]) + restored.flush()
    assert [x.to_dict() for x in a1] == [x.to_dict() for x in a2] and len(a1) == 1


# ------------------------------------------------------------------------ explained drift


def _alert(kind: str, feature: str | None, version: str = "1", metric: str = "psi") -> Alert:
    return Alert("fraud", version, kind, feature, metric, 0.5, 0.25, 1e-9, "critical",
                 AlertWindow(0.0, 60.0, 600), AlertReference("ref-v1", 5000))


def test_explain_marks_drift_on_features_with_open_parity():
    drift_avg, drift_amount = _alert("data_drift", "avg"), _alert("data_drift", "amount")
    other_version = _alert("data_drift", "avg", version="2")
    perf = _alert("performance", None, metric="accuracy")
    out = explain([drift_avg, drift_amount, other_version, perf], {("fraud", "1"): {"avg": "pid-1"}})
    assert out[0].explained_by == "pid-1" and out[0].details["retrain"] is False
    assert "pid-1" in out[0].details["explanation"] and "explained_by" in out[0].to_dict()
    assert out[1:] == [drift_amount, other_version, perf]


def test_explain_uses_parity_alerts_in_the_same_batch_and_sets_of_features():
    c = checker()
    events, rows = make_events(600, scaled="avg")
    parity = c.ingest(events, rows) + c.flush()
    drift = _alert("data_drift", "avg")
    out = explain([*parity, drift], {})
    assert out[-1].explained_by == parity[0].alert_id
    out2 = explain([drift], {("fraud", "1"): {"avg"}})
    assert out2[0].explained_by == "parity-open:avg"
    assert explain([drift], {}) == [drift]


def test_pending_breach_explains_drift_judged_before_the_parity_window_closes():
    c = checker()
    events, rows = make_events(600, scaled="avg")
    c.ingest(events, rows)  # window [0, 60) still open
    assert c.open_alerts("fraud", "1") == {}
    pending = c.open_alerts("fraud", "1", include_pending=True)
    out = explain([_alert("data_drift", "avg")], {("fraud", "1"): pending})
    (parity,) = c.flush()
    assert out[0].explained_by == parity.alert_id == pending["avg"]  # same deterministic id


def test_drift_in_a_window_that_ended_before_the_parity_breach_is_not_explained_by_it():
    """A drift window judged late (after the pipeline broke) keeps its own meaning: it is a change in the world."""
    c = checker()
    events, rows = make_events(600, scaled="avg")  # the breach is in the window [0, 60)
    c.ingest(events, rows)
    pending, since = c.open_alerts("fraud", "1", include_pending=True), c.open_since("fraud", "1")
    assert since == {"avg": 0.0}
    earlier = dataclasses.replace(_alert("data_drift", "avg"), window=AlertWindow(-60.0, 0.0, 600))
    overlapping = _alert("data_drift", "avg")
    out = explain([earlier, overlapping], {("fraud", "1"): pending}, {("fraud", "1"): since})
    assert out[0].explained_by is None and out[1].explained_by == pending["avg"]
    (parity,) = c.flush()
    assert c.open_since("fraud", "1") == {"avg": 0.0}  # open now, since the same window
    assert explain([earlier, parity], {})[0].explained_by is None  # a parity alert in the batch: its own start


def test_retrain_policy_skips_explained_drift_and_requests_for_a_real_shift():
    from streams.alerts.retrain_policy import RetrainPolicyConfig, RetrainState, decide

    policy = RetrainPolicyConfig(kinds=("performance", "concept_drift", "data_drift"), min_labelled=0, cooldown_s=0)  # data drift retrains here
    drift = _alert("data_drift", "avg")
    # pipeline bug: the served feature differs from the store -> parity alert, drift explained, no retrain
    bug = checker()
    events, rows = make_events(600, scaled="avg")
    parity = bug.ingest(events, rows) + bug.flush()
    explained = explain([drift], {("fraud", "1"): bug.open_alerts("fraud", "1")})
    assert decide(policy, RetrainState(), explained, 1000, bug.open_features("fraud", "1")).request is None
    assert decide(policy, RetrainState(), explained, 1000).reason == "explained_by_parity"
    # a real change in the world: store and stream moved together -> no parity, drift retrains
    world = checker()
    rows = [dict(r, avg=ev.features["avg"]) for ev, r in zip(events, rows)]
    assert world.ingest(events, rows) + world.flush() == [] and parity
    unexplained = explain([drift], {("fraud", "1"): world.open_alerts("fraud", "1")})
    d = decide(policy, RetrainState(), unexplained, 1000, world.open_features("fraud", "1"))
    assert d.reason == "requested" and d.request.alert_ids == [drift.alert_id]


def test_features_of_views_not_looked_up_are_skipped_not_counted_missing():
    c = checker()
    events, rows = make_events(600)
    # the event carried no key of the view holding "country": its row lacks the feature entirely
    rows = [{k: v for k, v in r.items() if k != "country"} if i % 2 else r for i, r in enumerate(rows)]
    assert c.ingest(events, rows) + c.flush() == []
    assert c.last_rates[("fraud", "1", "country")] == (0.0, 300)


def test_parity_state_written_before_the_shared_hysteresis_still_loads():
    checker = ParityChecker(ParityConfig(window_seconds=10, allowed_lateness_s=0, min_samples=5))
    old = {"windows": {}, "watermark": [], "closed_before": [], "unknown": [], "late_events": 0,
           "open": [["m", "1", "avg", "value", "p-1", 1], ["m", "1", "x", "schema", "p-2", 0]]}
    checker.load_state_dict(old)
    assert checker.open_alerts("m", "1") == {"avg": "p-1"}
    again = ParityChecker(ParityConfig(window_seconds=10, allowed_lateness_s=0, min_samples=5))
    again.load_state_dict(checker.state_dict())
    assert again.open_alerts("m", "1") == {"avg": "p-1"} and "hysteresis" in checker.state_dict()
