"""The drift worker against the real broker, run as `driftloop worker` subprocesses (so SIGKILL is real).

Each test gets fresh topics, a fresh app id (consumer group) and data folder.  Event times are
generated (50 events/s of event time, 10 s windows), so nothing waits for the wall clock except
the worker itself.  "Done" means: the consumer group has committed the end offsets of every topic
it reads, twice in a row.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from streams.contracts.events import REASONS, Alert, DeadLetter
from streams.contracts.validate import parse_input
from streams.cli.sample import Drift, SampleTraffic, malformed

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 2
DRIFT_AT = 150.0  # seconds of event time after the start
N_EVENTS = 16_000  # 320 s of event time at 50 events/s: 31 closed windows of 10 s


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Setup:
    """Unique topics, app id and folders of one test; writes the worker config file."""

    def __init__(self, bootstrap: str, tmp: Path, partitions: int = PARTITIONS, **worker: object) -> None:
        self.bootstrap, self.tmp = bootstrap, tmp
        tmp.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        self.topics = {
            "inputs": f"test.wk.{tag}.inputs", "labels": f"test.wk.{tag}.labels", "alerts": f"test.wk.{tag}.alerts",
            "labelled": f"test.wk.{tag}.labelled", "retrain_requests": f"test.wk.{tag}.rr",
            "retrain_results": f"test.wk.{tag}.rres", "model_updates": f"test.wk.{tag}.mu", "partitions": partitions,
        }
        self.app_id = f"test-wk-{tag}"
        self.refs = tmp / "references"
        self.worker = {"app_id": self.app_id, "reference_dir": str(self.refs), "batch_size": 500,
                       "batch_within_s": 0.2, "reference_bootstrap_n": 5000, "label_ttl_s": 600.0, **worker}
        self.config = tmp / "driftloop.yaml"
        self.config.write_text(yaml.safe_dump({
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": self.topics,
            "drift": {"window_seconds": 10, "min_samples": 200},
            "worker": self.worker,
        }))
        from streams.adapters.kafka_admin import ensure_topics

        ensure_topics(bootstrap, [self.topics["inputs"], self.topics["labels"]], partitions=partitions)

    def start(self, name: str = "w0", **env: str) -> "WorkerProc":
        return WorkerProc(self, name, env)

    def produce(self, topic: str, records: list[tuple[bytes | None, bytes]], partition: int | None = None) -> None:
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20, max_request_size=4_000_000)
        for key, value in records:
            p.send(self.topics.get(topic, topic), value, key=key, partition=partition)
        p.flush()
        p.close()

    def read(self, topic: str, timeout_s: float = 5.0) -> list[tuple[bytes | None, bytes]]:
        """Every record of ``topic`` now (from the beginning, all partitions)."""
        from kafka import KafkaConsumer, TopicPartition

        name = self.topics.get(topic, topic)
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
        parts = c.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in parts]
        if not tps:
            c.close()
            return []
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        out = []
        deadline = time.monotonic() + timeout_s
        while any(c.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                out.extend((r.key, r.value) for r in recs)
        c.close()
        return out

    def alerts(self) -> tuple[dict[str, dict], int]:
        """(alerts by id, number of raw alert records)."""
        raw = self.read("alerts")
        by_id: dict[str, dict] = {}
        for _, v in raw:
            a = Alert.from_dict(json.loads(v))
            by_id.setdefault(a.alert_id, _essential(a))
        return by_id, len(raw)

    def wait_done(self, procs: list["WorkerProc"], timeout_s: float = 300.0, slack: int = 0) -> None:
        """Until the group has committed every end offset of inputs, labels and partials (twice, 1.5 s apart)."""
        from streams.adapters.kafka_admin import admin_client, topic_end_offsets

        topics = [self.topics["inputs"], self.topics["labels"], f"{self.app_id}.partials"]
        deadline = time.monotonic() + timeout_s
        stable = 0
        while time.monotonic() < deadline:
            for p in procs:
                p.check_alive()
            try:
                with admin_client(self.bootstrap) as admin:
                    committed = admin.list_group_offsets(self.app_id).get(self.app_id, {})
                done = True
                for t in topics:
                    for part, end in topic_end_offsets(self.bootstrap, t).items():
                        c = committed.get(_tp(t, part))
                        if end > 0 and (c is None or c.offset < end - slack):
                            done = False
            except Exception:  # group or topic not there yet
                done = False
            stable = stable + 1 if done else 0
            if stable >= 2:
                return
            time.sleep(1.5)
        raise AssertionError(f"worker did not finish within {timeout_s} s; logs: " + " | ".join(p.tail() for p in procs))


def _tp(topic: str, partition: int):
    from kafka import TopicPartition

    return TopicPartition(topic, partition)


def _essential(a: Alert) -> dict:
    return {"alert_id": a.alert_id, "kind": a.kind, "feature": a.feature, "metric": a.metric, "severity": a.severity,
            "score": round(a.score, 9), "window": (a.window.start, a.window.end, a.window.n)}


class WorkerProc:
    def __init__(self, setup: Setup, name: str, env: dict[str, str]) -> None:
        self.setup, self.name = setup, name
        self.metrics_port = _free_port()
        self.log = setup.tmp / f"{name}.log"
        self._log = open(self.log, "ab")
        e = {**os.environ, "DRIFTLOOP_HOME": str(setup.tmp / "home"), **env}
        e.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "--config", str(setup.config), "worker",
             "--metrics-port", str(self.metrics_port), "--data-dir", str(setup.tmp / f"data-{name}")],
            cwd=ROOT, env=e, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited with {self.proc.returncode}: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log.read_bytes()[-n:].decode("utf-8", "replace")

    def metrics(self) -> dict[str, float]:
        """Sum of each metric over its labels, plus the labelled series as ``name{labels}``."""
        from streams.adapters.metrics import read_metrics

        return read_metrics(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def wait_metric(self, name: str, at_least: float, timeout_s: float = 120.0, poll_s: float = 0.05) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            v = self.metrics().get(name, 0.0)
            if v >= at_least:
                return v
            time.sleep(poll_s)
        raise AssertionError(f"{name} did not reach {at_least}: {self.tail()}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def drift_traffic() -> list[tuple[bytes, bytes]]:
    tr = SampleTraffic(seed=7)
    tr.drifts.append(Drift("amount", tr.start_ts + DRIFT_AT, scale=3.0))
    return [(e["event_id"].encode(), json.dumps(e).encode()) for e in tr.events(N_EVENTS)]


START = SampleTraffic().start_ts


def _run_one(setup: Setup, workers: list, n_procs: int = 1) -> dict[str, dict]:
    setup.produce("inputs", drift_traffic())
    procs = [setup.start(f"w{i}") for i in range(n_procs)]
    workers.extend(procs)
    setup.wait_done(procs)
    return setup.alerts()[0]


def register_reference(setup: Setup) -> None:
    from streams.judge.profile_build import build_profile

    ref = [parse_input(e) for e in SampleTraffic(seed=123).events(5000)]
    from streams.adapters.reference_store import ReferenceStore

    ReferenceStore(setup.refs).save(build_profile(ref, "fraud", "1", source="training"))


@pytest.fixture(scope="module")
def baseline(kafka_bootstrap, tmp_path_factory):
    """Alerts of one uninterrupted worker on the drift traffic (registered reference)."""
    setup = Setup(kafka_bootstrap, tmp_path_factory.mktemp("baseline"))
    register_reference(setup)
    procs: list[WorkerProc] = []
    try:
        alerts = _run_one(setup, procs)
        metrics = procs[0].metrics()
    finally:
        for p in procs:
            p.stop()
    return alerts, metrics


def test_drift_injected_at_known_time_gives_one_alert_for_that_feature(baseline):
    alerts, metrics = baseline
    data = [a for a in alerts.values() if a["kind"] == "data_drift"]
    assert [a["feature"] for a in data] == ["amount"], alerts
    start = data[0]["window"][0] - START
    assert DRIFT_AT <= start < DRIFT_AT + 2 * 10, f"alert window starts at +{start} s, drift at +{DRIFT_AT} s"
    assert all(a["window"][0] - START >= DRIFT_AT for a in alerts.values()), "an alert before the drift"
    assert metrics.get('driftloop_reference_info{model="fraud",model_version="1",source="registered"}') == 1
    assert metrics.get("driftloop_events_total") == N_EVENTS
    assert metrics.get("driftloop_windows_judged_total") == N_EVENTS // 500 - 1  # the last window stays open


def test_bootstrapped_reference_single_worker_then_two_workers(kafka_bootstrap, tmp_path, workers):
    """No registered reference: the first 5000 events (10 windows) become the reference, then judging;
    two workers (the bootstrap overlapping the group's first rebalance) give the same alerts as one."""
    one = Setup(kafka_bootstrap, tmp_path / "one")
    alerts = _run_one(one, workers)
    m = workers[0].metrics()
    assert m.get("driftloop_reference_bootstrap_events_total") == 5000
    assert m.get('driftloop_reference_info{model="fraud",model_version="1",source="bootstrap"}') == 1
    data = [a for a in alerts.values() if a["kind"] == "data_drift"]
    assert [a["feature"] for a in data] == ["amount"] and data[0]["window"][0] - START >= DRIFT_AT
    two = Setup(kafka_bootstrap, tmp_path / "two")
    assert _run_one(two, workers, n_procs=2) == alerts


def test_sigkill_mid_stream_then_restart_gives_the_same_alerts(baseline, kafka_bootstrap, tmp_path, workers):
    setup = Setup(kafka_bootstrap, tmp_path, batch_size=200)
    register_reference(setup)
    setup.produce("inputs", drift_traffic())
    w = setup.start("a")
    workers.append(w)
    seen = w.wait_metric("driftloop_events_total", 2000)
    w.kill()
    assert seen < N_EVENTS, "killed too late to test anything"
    w2 = setup.start("b")
    workers.append(w2)
    setup.wait_done([w2])
    alerts, n_raw = setup.alerts()
    assert alerts == baseline[0]
    # state resumed, not rebuilt: the restarted worker skipped or re-read only what was in flight
    assert w2.metrics().get("driftloop_events_total", 0) < N_EVENTS


def test_two_workers_in_one_group_give_the_same_alerts_as_one(baseline, kafka_bootstrap, tmp_path, workers):
    setup = Setup(kafka_bootstrap, tmp_path)
    register_reference(setup)
    alerts = _run_one(setup, workers, n_procs=2)
    assert alerts == baseline[0]
    counts = [w.metrics().get("driftloop_events_total", 0) for w in workers]
    assert sum(counts) >= N_EVENTS


def test_malformed_records_all_reach_the_dlq_and_good_ones_are_counted(kafka_bootstrap, tmp_path, workers):
    setup = Setup(kafka_bootstrap, tmp_path, label_join=False)
    good = SampleTraffic(seed=3).events(5000)
    bad = malformed(10_000, seed=5)
    # bad records at random places; good ones keep their (event-time) order, so none is late
    slots = sorted(random.Random(0).sample(range(len(good) + len(bad)), len(bad)))
    records: list[tuple[bytes | None, bytes]] = []
    gi = bi = 0
    for i in range(len(good) + len(bad)):
        if bi < len(bad) and slots[bi] == i:
            records.append((None, bad[bi]))
            bi += 1
        else:
            records.append((good[gi]["event_id"].encode(), json.dumps(good[gi]).encode()))
            gi += 1
    setup.produce("inputs", records)
    w = setup.start()
    workers.append(w)
    setup.wait_done([w])
    dl = [DeadLetter(**json.loads(v)) for _, v in setup.read(setup.topics["inputs"] + ".dlq", timeout_s=20)]
    assert len(dl) == len(bad)
    assert Counter(d.raw_bytes() for d in dl) == Counter(bad)
    assert {d.reason for d in dl} <= set(REASONS) and all(d.error for d in dl)
    assert len({(d.partition, d.offset) for d in dl}) == len(bad)
    m = w.metrics()
    assert m["driftloop_events_total"] == len(good)
    assert m["driftloop_invalid_events_total"] == len(bad)
    assert m.get("driftloop_late_events_total", 0) == 0


def test_late_out_of_order_labels_are_joined_and_unknown_labels_counted(kafka_bootstrap, tmp_path, workers):
    setup = Setup(kafka_bootstrap, tmp_path)
    tr = SampleTraffic(seed=11)
    events = tr.events(3000)  # 60 s of event time
    setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in events])
    w = setup.start()
    workers.append(w)
    w.wait_metric("driftloop_events_total", len(events))
    labelled = events[::3]
    labels = tr.labels(labelled, delay_s=30.0)
    for lab in labels:  # arrive late, with jitter, out of order
        lab["ts"] += random.Random(lab["event_id"]).uniform(0, 20)
    random.Random(1).shuffle(labels)
    unknown = {"event_id": "no-such-event", "model": "fraud", "ts": events[100]["ts"] + 5, "label": 1}
    recs = [(lab["event_id"].encode(), json.dumps(lab).encode()) for lab in labels]
    recs.insert(len(recs) // 2, (b"no-such-event", json.dumps(unknown).encode()))
    recs.append((labels[0]["event_id"].encode(), json.dumps(labels[0]).encode()))  # a duplicate label
    setup.produce("labels", recs)
    setup.wait_done([w])
    w.wait_metric('driftloop_label_join_total{outcome="unknown"}', 1, timeout_s=30)
    out = [json.loads(v) for _, v in setup.read("labelled", timeout_s=20)]
    assert sorted(o["event_id"] for o in out) == sorted(e["event_id"] for e in labelled)
    by_id = {lab["event_id"]: lab["label"] for lab in labels}
    assert all(o["label"] == by_id[o["event_id"]] and o["features"] for o in out)
    assert parse_input(out[0]).model_version == "1"
    m = w.metrics()
    assert m['driftloop_label_join_total{outcome="matched"}'] == len(labelled)
    assert m['driftloop_label_join_total{outcome="unknown"}'] == 1
    assert m['driftloop_label_join_total{outcome="duplicate"}'] == 1


def test_label_join_after_sigkill_rebuilds_stored_inputs_from_the_inputs_topic(kafka_bootstrap, tmp_path, workers):
    """Inputs stored for the join are not written to Kafka again: a restarted worker reads them back."""
    setup = Setup(kafka_bootstrap, tmp_path)
    events = SampleTraffic(seed=12).events(2000)
    setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in events])
    a = setup.start("a")
    workers.append(a)
    a.wait_metric("driftloop_events_total", len(events))
    setup.wait_done([a])  # state (and store_from) committed
    a.kill()
    labelled = events[::2]
    setup.produce("labels", [(lab["event_id"].encode(), json.dumps(lab).encode())
                             for lab in SampleTraffic(seed=12).labels(labelled, delay_s=20.0)])
    b = setup.start("b")
    workers.append(b)
    setup.wait_done([b])
    out = [json.loads(v) for _, v in setup.read("labelled", timeout_s=20)]
    assert sorted(o["event_id"] for o in out) == sorted(e["event_id"] for e in labelled)
    assert "rebuilt from" in b.log.read_text()
    assert b.metrics().get("driftloop_events_total", 0) == len(labelled)  # only labels: inputs were not re-ingested


def test_labels_after_a_concept_change_give_label_alerts_after_it_and_none_before(kafka_bootstrap, tmp_path, workers):
    """Joined pairs feed performance and concept drift: after +150 s the labels contradict the model.
    Everything is produced before the worker starts (a backlog): the worker keeps inputs and labels
    together in event time, so no label is lost to an input that expired before its label was read."""
    setup = Setup(kafka_bootstrap, tmp_path, label_ttl_s=20.0)
    register_reference(setup)
    tr = SampleTraffic(seed=21)
    events = tr.events(15000)  # 300 s of event time at 50 events/s
    change = 150.0
    n_before = int(change * 50)
    labels = tr.labels(events[:n_before], delay_s=5.0) + SampleTraffic(seed=22).labels(events[n_before:], delay_s=5.0, flip=0.4)
    setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in events])
    setup.produce("labels", [(lab["event_id"].encode(), json.dumps(lab).encode()) for lab in labels])
    w = setup.start()
    workers.append(w)
    setup.wait_done([w])
    alerts, _ = setup.alerts()
    label_alerts = [a for a in alerts.values() if a["kind"] in ("performance", "concept_drift")]
    assert {a["kind"] for a in label_alerts} == {"performance", "concept_drift"}, alerts  # error rate and CUSUM
    # a performance window starts after the change; a concept alert is detected after it (its window spans the
    # detector's evidence, from the CUSUM's last zero, which may lie in the window before the change)
    detected = {a.alert_id: a.details.get("detected_ts") for a in
                (Alert.from_dict(json.loads(v)) for _, v in setup.read("alerts"))}
    assert all((detected[a["alert_id"]] if a["kind"] == "concept_drift" else a["window"][0]) - START >= change
               for a in label_alerts), label_alerts
    m = w.metrics()
    assert m['driftloop_label_join_total{outcome="matched"}'] == len(labels), m
    assert m.get("driftloop_paced_total", 0) >= 1  # the backlog did need pacing


def test_all_traffic_on_one_of_four_partitions_still_closes_windows(baseline, kafka_bootstrap, tmp_path, workers):
    """A producer that keys by model puts one model on one partition: the three silent partitions are
    announced idle (nothing unread, nothing for worker.idle_source_timeout_s) and stop holding the
    event-time watermark back, so the windows are judged with the same alerts as a spread stream."""
    setup = Setup(kafka_bootstrap, tmp_path, partitions=4, idle_source_timeout_s=2.0)
    register_reference(setup)
    setup.produce("inputs", drift_traffic(), partition=2)
    w = setup.start()
    workers.append(w)
    setup.wait_done([w])
    w.wait_metric("driftloop_windows_judged_total", N_EVENTS // 500 - 1, timeout_s=60)
    setup.wait_done([w])
    alerts, _ = setup.alerts()
    assert alerts == baseline[0]
    m = w.metrics()
    assert m.get("driftloop_windows_judged_total") == N_EVENTS // 500 - 1
    assert m.get("driftloop_source_idle") == 4, m  # the silent three, and partition 2 once it was read
    log = w.tail(200_000)
    assert all(f"source partition {p} of {setup.topics['inputs']}: nothing for" in log for p in (0, 1, 3))


@pytest.mark.parametrize("label_join", [True, False])
def test_retried_inputs_are_counted_once_case_12_duplicates(kafka_bootstrap, tmp_path, workers, label_join):
    """../shared/cases/12_duplicates: a producer retry delivers 250 of the events twice; the worker counts each
    event_id once (n and alerts as for the unique stream) and reports the retries."""
    cases = ROOT / "tests" / "data" / "cases" / "12_duplicates"
    results = {}
    for name in ("min_inputs_unique.jsonl", "min_inputs_retried.jsonl"):
        setup = Setup(kafka_bootstrap, tmp_path / name, label_join=label_join, reference_bootstrap_n=800)
        lines = [line for line in (cases / name).read_bytes().splitlines() if line.strip()]
        setup.produce("inputs", [(json.loads(line)["event_id"].encode(), line) for line in lines])
        w = setup.start(name)
        workers.append(w)
        setup.wait_done([w])
        w.wait_metric("driftloop_events_total", 1300, timeout_s=30)
        results[name] = (setup.alerts()[0], w.metrics())
    (a_unique, m_unique), (a_retry, m_retry) = results["min_inputs_unique.jsonl"], results["min_inputs_retried.jsonl"]
    assert a_retry == a_unique == {}
    assert m_retry["driftloop_events_total"] == m_unique["driftloop_events_total"] == 1300
    assert m_unique.get("driftloop_duplicate_events_total", 0) == m_unique.get("driftloop_late_events_total", 0) == 0
    # every retry is reported: as a duplicate while its original is remembered (the label TTL with the join, one
    # window + hop without), else as late (its window closed; dead-lettered), never counted twice
    dup, late = m_retry.get("driftloop_duplicate_events_total", 0), m_retry.get("driftloop_late_events_total", 0)
    assert dup + late == 250 and (dup == 250 if label_join else dup >= 200), (dup, late)
    assert m_retry.get("driftloop_windows_judged_total") == m_unique.get("driftloop_windows_judged_total")


def test_the_same_labelled_stream_in_other_batch_sizes_gives_the_same_alerts(kafka_bootstrap, tmp_path, workers):
    """Deterministic windows on the real broker: inputs and labels (a concept change at +150 s) read in small or
    large micro-batches give the same alerts with the same ids, every label joined and judged."""
    tr = SampleTraffic(seed=31)
    events = tr.events(12000)
    k = int(150.0 * 50)
    labels = tr.labels(events[:k], delay_s=5.0) + SampleTraffic(seed=32).labels(events[k:], delay_s=5.0, flip=0.4)
    seen = []
    for batch_size in (150, 2000):
        setup = Setup(kafka_bootstrap, tmp_path / str(batch_size), label_ttl_s=20.0, batch_size=batch_size)
        register_reference(setup)
        setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in events])
        setup.produce("labels", [(lab["event_id"].encode(), json.dumps(lab).encode()) for lab in labels])
        w = setup.start(f"b{batch_size}")
        workers.append(w)
        setup.wait_done([w])
        m = w.metrics()
        assert m['driftloop_label_join_total{outcome="matched"}'] == len(labels)
        assert m.get('driftloop_label_join_total{outcome="late_pairs"}', 0) == 0
        alerts, _ = setup.alerts()
        assert {a["kind"] for a in alerts.values()} >= {"performance", "concept_drift"}
        seen.append(alerts)
    assert seen[0] == seen[1]


def test_a_version_per_request_is_bounded_on_the_real_broker(kafka_bootstrap, tmp_path, workers):
    """Fault 8 (unbounded cardinality): 300 model versions; 20 tracked, the rest counted and reported once."""
    setup = Setup(kafka_bootstrap, tmp_path, partitions=1, label_join=False, max_versions_per_model=20)
    events = SampleTraffic(seed=8).events(3000)
    for i, e in enumerate(events):
        e["model_version"] = f"req-{i // 10}"
    setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in events])
    w = setup.start()
    workers.append(w)
    setup.wait_done([w])
    m = w.metrics()
    assert m['driftloop_untracked_events_total{reason="versions"}'] == 3000 - 20 * 10
    assert m["driftloop_events_total"] == 20 * 10
    versions = {k for k in m if k.startswith("driftloop_events_total{")}
    assert len(versions) == 20, versions  # bounded /metrics label sets
    card = [json.loads(v) for _, v in setup.read("alerts") if json.loads(v)["kind"] == "cardinality"]
    assert len(card) == 1 and card[0]["feature"] == "versions" and card[0]["model"] == "*"
