"""The worker's decisions through the pure core alone (tests/worker_harness.py: no broker, no Faust)."""

from __future__ import annotations

import json

import pytest

from streams.contracts.events import DeadLetter
from streams.contracts.validate import parse_input
from streams.judge.profile_build import build_profile
from streams.cli.sample import Drift, SampleTraffic
from tests.worker_harness import Harness

DRIFT_AT = 150.0
N = 16_000  # 320 s of event time at 50 events/s: 31 closed windows of 10 s


def drift_events() -> list[dict]:
    tr = SampleTraffic(seed=7)
    tr.drifts.append(Drift("amount", tr.start_ts + DRIFT_AT, scale=3.0))
    return tr.events(N)


def registered(h: Harness) -> Harness:
    h.register(build_profile([parse_input(e) for e in SampleTraffic(seed=123).events(5000)], "fraud", "1",
                             source="training"))
    return h


def essential(alerts) -> set:
    return {(a.alert_id, a.kind, a.feature, a.window.start, a.window.n) for a in alerts.values()}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    h = registered(Harness(tmp_path_factory.mktemp("base")))
    h.produce("inputs", drift_events())
    h.drain(max_records=500)
    return h


def test_drift_gives_one_alert_for_the_changed_feature_after_the_change(baseline):
    alerts = baseline.alerts()
    start = SampleTraffic().start_ts
    assert [a.feature for a in alerts.values() if a.kind == "data_drift"] == ["amount"]
    assert all(a.window.start - start >= DRIFT_AT for a in alerts.values())
    assert baseline.metric_sum("driftloop_events_total") == N
    assert baseline.metric_sum("driftloop_windows_judged_total") == N // 500 - 1  # the last window stays open


@pytest.mark.parametrize("batch", [37, 1000, 4000])
def test_the_same_stream_in_other_batches_gives_the_same_alerts(baseline, tmp_path, batch):
    h = registered(Harness(tmp_path))
    h.produce("inputs", drift_events())
    h.drain(max_records=batch)
    assert essential(h.alerts()) == essential(baseline.alerts())


def test_a_restart_from_older_committed_offsets_counts_nothing_twice(baseline, tmp_path):
    h = registered(Harness(tmp_path))
    h.produce("inputs", drift_events())
    for _ in range(6):  # some batches processed and their state written...
        h.step("inputs", 500, commit=False)  # ...but the consumer offsets never committed (a crash before the commit)
    h.start()  # restart: state from the changelog, records again from the committed offsets (-1)
    h.drain(max_records=500)
    assert essential(h.alerts()) == essential(baseline.alerts())
    assert h.metric_sum("driftloop_replayed_records_total") == 6 * 500 * 2  # both partitions: skipped, not recounted
    assert h.metric_sum("driftloop_events_total") == N - 6 * 500 * 2


def test_a_rebalance_mid_stream_gives_the_same_alerts(baseline, tmp_path):
    h = registered(Harness(tmp_path))
    h.produce("inputs", drift_events())
    for _ in range(5):
        h.step("inputs", 700)
    h.core.on_rebalance(keep_stores=[0])  # partition 1's join store is dropped and read back
    h.drain(max_records=700)
    assert essential(h.alerts()) == essential(baseline.alerts())


def test_all_traffic_on_one_partition_waits_for_the_idle_timeout_then_judges(baseline, tmp_path):
    h = registered(Harness(tmp_path, partitions=4, worker={"idle_source_timeout_s": 30.0}))
    h.produce("inputs", drift_events(), partition=1)
    h.drain(max_records=500, ticks=False)
    assert h.alerts() == {} and h.metric_sum("driftloop_windows_judged_total") == 0  # three silent partitions
    h.tick(10.0)  # the first tick sees the assignment: silent partitions count from here
    h.tick(25.0)
    assert h.alerts() == {} and h.metric_sum("driftloop_source_idle") == 1  # partition 1, read 35 s ago
    h.tick(10.0)
    assert essential(h.alerts()) == essential(baseline.alerts())
    assert h.metric_sum("driftloop_source_idle") == 4


def test_a_partition_with_unread_records_is_never_idle(tmp_path):
    h = registered(Harness(tmp_path, partitions=2, worker={"idle_source_timeout_s": 5.0}))
    h.produce("inputs", SampleTraffic(seed=1).events(2000))
    h.step("inputs", 100)  # read a little of each partition; the rest is a backlog
    h.tick(60.0)
    assert h.metric_sum("driftloop_source_idle") == 0


def test_bad_records_become_dead_letters_before_the_state_moves_past_them(tmp_path):
    h = registered(Harness(tmp_path, partitions=1))
    good = SampleTraffic(seed=2).events(300)
    h.produce("inputs", good[:100])
    h.produce("inputs", [b"{not json", json.dumps({**good[0], "ts": "yesterday"}).encode()], partition=0)
    h.produce("inputs", good[100:])
    fx = h.core.on_inputs(h.poll("inputs", 1000), h)
    assert [json.loads(d.value)["reason"] for d in fx.dead_letters] == ["not_json", "bad_timestamp"]
    assert all(d.role == "inputs_dlq" and d.where.endswith(("@100", "@101")) for d in fx.dead_letters)
    assert any(w.key == "in|0" and w.value["offset"] == 301 for w in fx.state)  # the state moves past them...
    h.apply(fx)  # ...and the adapter sends them first (streams/worker/effects.py)
    letters = [DeadLetter(**json.loads(r.value)) for r in h.topics["inputs_dlq"].all()]
    assert [d.offset for d in letters] == [100, 101] and letters[0].raw_bytes() == b"{not json"


def test_labels_ahead_of_their_inputs_pause_the_labels_until_the_inputs_catch_up(tmp_path):
    h = registered(Harness(tmp_path, partitions=1, worker={"label_ttl_s": 20.0}))
    tr = SampleTraffic(seed=4)
    events = tr.events(6000)  # 120 s
    h.produce("inputs", events)
    h.produce("labels", tr.labels(events, delay_s=2.0))
    h.step("inputs", 200)
    h.step("labels", 6000)  # labels read far ahead of the inputs (more than one TTL)
    assert (h.settings.topics.labels, 0) in h.paused
    h.drain(max_records=500)
    assert not h.paused
    assert h.metric("driftloop_label_join_total", outcome="matched") == len(events)
    assert h.metric_sum("driftloop_paced_total") >= 1


def test_label_alerts_are_the_same_whatever_the_interleaving_of_inputs_and_labels(tmp_path):
    """Labels that contradict the model after +150 s, all in a backlog: read with the inputs, ahead of them, in
    small or large batches, every pair is judged (none late, none unknown) and the alerts are identical."""
    tr = SampleTraffic(seed=21)
    events = tr.events(15000)
    change = 150.0
    k = int(change * 50)
    labels = tr.labels(events[:k], delay_s=5.0) + SampleTraffic(seed=22).labels(events[k:], delay_s=5.0, flip=0.4)
    seen = []
    for i, (labels_first, batch) in enumerate([(False, 800), (True, 800), (True, 3000), (False, 97)]):
        h = registered(Harness(tmp_path / str(i), partitions=2, worker={"label_ttl_s": 20.0}))
        h.produce("inputs", events)
        h.produce("labels", labels)
        h.drain(max_records=batch, labels_first=labels_first)
        alerts = h.alerts()
        label_alerts = [a for a in alerts.values() if a.kind in ("performance", "concept_drift")]
        assert {a.kind for a in label_alerts} == {"performance", "concept_drift"}
        assert all((a.details["detected_ts"] if a.kind == "concept_drift" else a.window.start) - tr.start_ts >= change
                   for a in label_alerts)
        assert h.metric("driftloop_label_join_total", outcome="matched") == len(labels)
        assert h.metric("driftloop_label_join_total", outcome="late_pairs") == 0
        seen.append(essential(alerts))
    assert all(s == seen[0] for s in seen), seen


def test_retried_inputs_are_counted_once(tmp_path):
    h = registered(Harness(tmp_path, partitions=2))
    events = SampleTraffic(seed=9).events(3000)
    h.produce("inputs", events)
    h.produce("inputs", events[1000:1500])  # a producer retry
    h.drain(max_records=400)
    assert h.metric_sum("driftloop_events_total") == 3000
    assert h.metric_sum("driftloop_duplicate_events_total") == 500


def test_a_version_per_request_stays_bounded_and_is_reported_once(tmp_path):
    """A producer that puts a request id in model_version: 20 versions are tracked, the rest counted, one alert."""
    h = Harness(tmp_path, partitions=1, worker={"max_versions_per_model": 20, "max_models": 3})
    events = SampleTraffic(seed=5).events(3000)
    for i, e in enumerate(events):
        e["model_version"] = f"req-{i // 10}"  # 300 versions of 10 events each
    events += [{**e, "model": f"m{i}", "model_version": "1", "event_id": f"x{i}"} for i, e in enumerate(events[:50])]
    h.produce("inputs", events[:1500])
    h.drain(max_records=400)
    before = h.metric("driftloop_untracked_events_total", reason="versions")
    h.start()  # a restart keeps the admitted set: the same versions stay tracked (metrics restart at 0)
    h.produce("inputs", events[1500:])
    h.drain(max_records=400)
    assert before == 1500 - 20 * 10 and h.metric("driftloop_untracked_events_total", reason="versions") == 1500
    assert h.metric("driftloop_untracked_events_total", reason="models") == 50 - 2  # fraud, m0, m1 tracked
    card = [a for a in h.alerts().values() if a.kind == "cardinality"]
    assert sorted(a.feature for a in card) == ["models", "versions"]
    assert all(a.model == "*" and "not tracked" in a.details["message"] for a in card)
    series = {s.labels.get("model_version") for fam in h.metrics.registry.collect() for s in fam.samples
              if s.name == "driftloop_events_total"}
    assert len(series) <= 21, series  # bounded /metrics label sets


@pytest.mark.parametrize("hop", [None, 5.0])
def test_the_worker_bootstraps_its_reference_and_judges_as_backtest_does(tmp_path, hop):
    """No registered reference: the worker and ``driftloop backtest`` take the same events as the reference
    (the whole windows holding the first N) and give the same alerts after it (tumbling and hopping windows)."""
    import io

    from streams.cli.backtest import replay
    from streams.judge.drift_config import DriftConfig

    events = drift_events()[:12_000]
    drift = {"window_seconds": 10, "min_samples": 200, "hop_seconds": hop}
    h = Harness(tmp_path / "w", drift=drift, worker={"reference_bootstrap_n": 3_333})
    h.produce("inputs", events)
    h.drain(max_records=700)
    ref = h.refs.get("fraud", "1")
    assert ref is not None and ref.n == 3_500  # 3,333 events end in the 7th window of 500: whole windows
    streamed = {k for k in essential(h.alerts())}
    path, out = tmp_path / "inputs.jsonl", io.StringIO()
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    summary = replay(path, out, DriftConfig(**drift, reference_events=3_333), [], None, io.StringIO(), progress=False)
    assert summary["references_built"]["fraud v1"]["n"] == ref.n
    last_closed = max(a[3] for a in streamed)
    replayed = {(a["alert_id"], a["kind"], a["feature"], a["window"]["start"], a["window"]["n"])
                for a in map(json.loads, out.getvalue().splitlines()) if a["window"]["start"] <= last_closed}
    assert streamed and streamed == replayed


def test_the_worker_exports_what_the_alerting_rules_read(tmp_path):
    """infra/prometheus/rules/: labelled-window counters (error budget), records per source partition (stalled
    watermark), alerts per model; the event-time lag keeps growing while a watermark stands still."""
    tr = SampleTraffic(seed=4)
    events = tr.events(3000)  # 60 s
    flipped = SampleTraffic(seed=5).labels(events, delay_s=2.0, flip=0.4)
    h = registered(Harness(tmp_path, partitions=2, worker={"label_ttl_s": 20.0}))
    h.produce("inputs", events)
    h.produce("labels", flipped)
    h.drain(max_records=500)
    n = h.metric("driftloop_labelled_predictions_total", model="fraud", model_version="1")
    errors = h.metric("driftloop_labelled_errors_total", model="fraud", model_version="1")
    judged = h.metric("driftloop_windows_judged_total", model="fraud", model_version="1", stream="labels")
    assert judged >= 1 and 0 < n <= len(flipped) and 0 < errors < n
    assert 0.25 < errors / n < 0.75, (errors, n)  # 40% of the labels flipped on top of the model's own errors
    assert h.metric_sum("driftloop_source_records_total") == len(events)
    assert {s.labels["stream"] for fam in h.metrics.registry.collect() for s in fam.samples
            if s.name == "driftloop_source_records_total"} == {"inputs"}
    lag = {p: h.metric("driftloop_event_time_lag_seconds", stream="inputs", partition=str(p)) for p in range(2)}
    h.tick(30.0)  # no new records: the watermarks stand still, the lag grows with the wall clock
    assert all(h.metric("driftloop_event_time_lag_seconds", stream="inputs", partition=str(p)) >= lag[p] + 30.0 - 1e-6
               for p in range(2))


def test_alerts_are_counted_per_model(baseline):
    alerts = [a for a in baseline.alerts().values() if a.kind == "data_drift"]
    assert alerts
    assert sum(baseline.metric("driftloop_alerts_total", model="fraud", kind="data_drift", severity=sev)
               for sev in ("warning", "critical")) == len(alerts)
