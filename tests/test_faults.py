"""Faults on driftloop's own three-node Kafka cluster (issue 15), each against a no-fault reference run.

Every case states its expectation and counts (tests/faults.py): events lost 0, alerts duplicated 0, no alert
missing, inputs counted once (every judged window's n as in the reference run, whose worker counted every
produced event).  The worker runs as ``driftloop worker`` subprocesses (tests/test_worker_kafka.py's harness),
so SIGKILL is real; brokers are killed and paused with real signals.  Waits have upper bounds only; the
recovery times are measured and reported (bench/faults_report.py writes bench/results/faults.md), never asserted.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.faults import Counts, Feeder, FaultOutcome, judged_windows, record
from tests.fixtures_kafka import heal_cluster
from tests.test_worker_kafka import N_EVENTS, Setup, WorkerProc, drift_traffic, register_reference

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

RATE = 800.0  # events/s produced while a fault happens (16,000 events: about 20 s)


@pytest.fixture
def cluster(kafka_cluster):
    """The session's three-node cluster, every node running again after the test (passed or failed)."""
    heal_cluster(kafka_cluster)
    yield kafka_cluster
    heal_cluster(kafka_cluster)


@pytest.fixture(scope="module")
def reference(kafka_cluster, tmp_path_factory):
    """One uninterrupted worker on the drift traffic: its alerts and judged windows."""
    setup = Setup(kafka_cluster.bootstrap, tmp_path_factory.mktemp("reference"), batch_size=200)
    register_reference(setup)
    setup.produce("inputs", drift_traffic())
    w = setup.start("ref")
    try:
        setup.wait_done([w])
        metrics = w.metrics()
    finally:
        w.stop()
    assert metrics.get("driftloop_events_total") == N_EVENTS, metrics
    alerts, raw = setup.alerts()
    windows = judged_windows([w.log])
    assert windows and all(len(ns) == 1 for ns in windows.values())
    return {"alerts": alerts, "windows": windows, "setup": setup}


def compare(reference, setup: Setup, procs: list[WorkerProc], produced: int) -> Counts:
    alerts, raw = setup.alerts()
    return Counts.compare(produced, reference["windows"], judged_windows([p.log for p in procs]),
                          reference["alerts"], alerts, raw)


def assert_no_loss(c: Counts, outcome: FaultOutcome) -> None:
    record(outcome)
    assert (c.events_lost, c.events_double, c.windows_differing) == (0, 0, 0), c
    assert (c.alerts_duplicated, c.alerts_missing) == (0, 0), c


def started(setup: Setup, name: str, workers: list, timeout_s: float = 120.0) -> WorkerProc:
    """A worker whose /metrics answers (so traffic produced next arrives mid-stream, not as a backlog)."""
    w = setup.start(name)
    workers.append(w)
    deadline = time.monotonic() + timeout_s
    while not w.metrics() and time.monotonic() < deadline:
        w.check_alive()
        time.sleep(0.2)
    return w


def _node_of(cluster, node_id: int):
    return cluster.nodes[node_id - 1]


def _leader(bootstrap: str, topic: str, partition: int = 0) -> int:
    from streams.adapters.kafka_admin import describe_topic

    return int(next(p for p in describe_topic(bootstrap, topic)["partitions"]
                    if p["partition_index"] == partition)["leader_id"])


def test_three_node_cluster_replicates_topics_and_takes_writes_with_a_broker_down(cluster, tmp_path):
    """Expectation: topics the project creates have 3 replicas and min.insync.replicas 2; with one broker
    stopped, acks=all writes still succeed and every record is read back."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType

    from streams.adapters.kafka_admin import admin_client, describe_topic, ensure_topics
    from tests.fixtures_kafka import topic_name

    topic = topic_name("replicated")
    ensure_topics(cluster.bootstrap, [topic], partitions=3)
    meta = describe_topic(cluster.bootstrap, topic)
    assert [len(p["replica_nodes"]) for p in meta["partitions"]] == [3, 3, 3], meta
    with admin_client(cluster.bootstrap) as admin:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    configs = next(iter(next(iter(described.values())).values()))  # {resource type: {name: {key: data}}}
    isr = configs["min.insync.replicas"]
    assert (isr.get("value") if isinstance(isr, dict) else isr) == "2", configs

    stopped = _node_of(cluster, _leader(cluster.bootstrap, topic))
    stopped.stop(timeout_s=60)
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(3000)]
    feeder = Feeder(cluster.bootstrap, topic, records, rate=1e9)
    feeder.start()
    feeder.finish()
    c = KafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(3)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got: set[bytes] = set()
    deadline = time.monotonic() + 60
    while len(got) < len(records) and time.monotonic() < deadline:
        for batch in c.poll(timeout_ms=500).values():
            got.update(r.value for r in batch)
    c.close()
    assert got == {v for _, v in records}
    record(FaultOutcome("one broker stopped (clean), producing with acks=all",
                        "writes go on with 2 in-sync replicas; every record read back",
                        f"{feeder.acked}/{len(records)} acked, {len(got)} distinct read back",
                        extra={"replicas": 3, "min_insync_replicas": 2}))


def test_worker_topics_are_replicated_on_the_cluster(reference, kafka_cluster):
    """Expectation: the worker's internal topics (partials, table changelogs) have 3 replicas and min ISR 2."""
    from streams.adapters.kafka_admin import describe_topic

    setup = reference["setup"]
    for name in (f"{setup.app_id}.partials", f"{setup.app_id}-state-changelog", setup.topics["inputs"]):
        meta = describe_topic(kafka_cluster.bootstrap, name)
        assert meta["partitions"] and all(len(p["replica_nodes"]) == 3 for p in meta["partitions"]), meta


def test_broker_sigkilled_mid_stream_and_restarted_later(reference, cluster, tmp_path, workers):
    """Expectation: with the leader of inputs partition 0 SIGKILLed while events arrive, the worker carries on
    on the other two brokers; restarted later, the broker rejoins; events lost 0, alerts duplicated 0."""
    setup = Setup(cluster.bootstrap, tmp_path, batch_size=200)
    register_reference(setup)
    w = started(setup, "w", workers)
    feeder = Feeder(cluster.bootstrap, setup.topics["inputs"], drift_traffic(), RATE)
    feeder.start()
    w.wait_metric("driftloop_events_total", 4000, timeout_s=180)
    victim = _leader(cluster.bootstrap, setup.topics["inputs"])
    _node_of(cluster, victim).kill()
    t_kill = time.monotonic()
    carried = w.wait_metric("driftloop_events_total", 10_000, timeout_s=180)  # carries on with a broker down
    feeder.finish()
    _node_of(cluster, victim).start()
    t_back = time.monotonic()
    setup.wait_done([w])
    recover = time.monotonic() - t_back
    c = compare(reference, setup, [w], feeder.acked)
    happened = (f"broker {victim} killed at ~4,000 events; the worker read on to {carried:.0f} with it down "
                f"({time.monotonic() - t_kill:.0f} s down in all); restarted, rejoined")
    assert_no_loss(c, FaultOutcome("one broker SIGKILLed mid-stream, restarted later",
                                   "worker carries on; lost 0, alerts duplicated 0", happened, c, recover))
    assert w.metrics().get("driftloop_events_total") == N_EVENTS  # one worker throughout: each event once


def test_worker_sigkilled_mid_window_twice(reference, cluster, tmp_path, workers):
    """Expectation: a worker SIGKILLed twice at different moments while events arrive, restarted each time,
    resumes from its state: the same windows (n) and alerts as without faults."""
    setup = Setup(cluster.bootstrap, tmp_path, batch_size=200)
    register_reference(setup)
    a = started(setup, "a", workers)
    feeder = Feeder(cluster.bootstrap, setup.topics["inputs"], drift_traffic(), RATE)
    feeder.start()
    a.wait_metric("driftloop_events_total", 3250, timeout_s=180)  # a quarter into a 500-event window
    a.kill()
    b = setup.start("b")
    workers.append(b)
    b.wait_metric("driftloop_events_total", 4100, timeout_s=180)  # elsewhere in another window
    b.kill()
    c_proc = setup.start("c")
    workers.append(c_proc)
    t_back = time.monotonic()
    feeder.finish()
    setup.wait_done([c_proc])
    recover = time.monotonic() - t_back
    c = compare(reference, setup, [a, b, c_proc], feeder.acked)
    assert_no_loss(c, FaultOutcome(
        "worker SIGKILLed mid-window twice, restarted each time",
        "resumes from its state: same windows and alerts", f"killed at >= 3,250 and >= 4,100 events of its run; "
        f"{c.windows_rejudged} window(s) judged again after a restart (same n)", c, recover))


def test_two_workers_in_one_group_one_killed(reference, cluster, tmp_path, workers):
    """Expectation: of two workers in one group, one SIGKILLed mid-stream: the other takes its partitions
    after the session timeout (rebalance) and resumes their state; lost 0, alerts duplicated 0."""
    setup = Setup(cluster.bootstrap, tmp_path, batch_size=200, session_timeout_s=6.0)
    register_reference(setup)
    w1, w2 = started(setup, "w1", workers), started(setup, "w2", workers)
    feeder = Feeder(cluster.bootstrap, setup.topics["inputs"], drift_traffic(), RATE)
    feeder.start()
    w2.wait_metric("driftloop_events_total", 2000, timeout_s=180)
    w2.kill()
    t_kill = time.monotonic()
    feeder.finish()
    setup.wait_done([w1])
    recover = time.monotonic() - t_kill
    c = compare(reference, setup, [w1, w2], feeder.acked)
    assert_no_loss(c, FaultOutcome(
        "two workers in one group, one SIGKILLed (rebalance)", "the survivor takes over; same windows and alerts",
        f"w2 killed after 2,000 of its events; w1 took its partitions; {c.windows_rejudged} window(s) judged twice",
        c, recover))


def test_brokers_paused_30s(reference, cluster, tmp_path, workers):
    """Expectation: every broker SIGSTOPped for 30 s while events arrive: the worker reconnects and catches up,
    the consumer-lag metric rises after the pause (the producer's held-back records land at once) and returns to
    0; lost 0, alerts duplicated 0."""
    setup = Setup(cluster.bootstrap, tmp_path, batch_size=200, lag_interval_s=0.5)
    register_reference(setup)
    w = started(setup, "w", workers)
    feeder = Feeder(cluster.bootstrap, setup.topics["inputs"], drift_traffic(), rate=400.0)
    feeder.start()
    w.wait_metric("driftloop_events_total", 3000, timeout_s=180)
    for node in cluster.nodes:
        node.send_signal(signal.SIGSTOP)
    time.sleep(30.0)  # the fault's length, not a wait for a result
    for node in cluster.nodes:
        node.send_signal(signal.SIGCONT)
    t_back = time.monotonic()
    max_lag, samples = 0.0, []
    deadline = t_back + 300
    while time.monotonic() < deadline:  # lag as Prometheus would see it, until the worker has read everything
        m = w.metrics()
        lag = m.get("driftloop_consumer_lag", 0.0)
        max_lag = max(max_lag, lag)
        samples.append((round(time.monotonic() - t_back, 2), lag, m.get("driftloop_events_total", 0.0)))
        if not feeder.is_alive() and m.get("driftloop_events_total") == N_EVENTS and lag == 0:
            break
        time.sleep(0.2)
    feeder.finish()
    setup.wait_done([w])
    recover = time.monotonic() - t_back
    c = compare(reference, setup, [w], feeder.acked)
    caught = next((t for t, _, n in samples if n >= N_EVENTS), None)
    (setup.tmp / "lag.json").write_text(json.dumps(samples))
    outcome = FaultOutcome(
        "all three brokers SIGSTOPped for 30 s", "worker reconnects and catches up; lag rises, then 0",
        f"max consumer lag {max_lag:.0f} after the pause, {samples[-1][1]:.0f} at the end; all events read "
        f"{caught} s after SIGCONT", c, recover, extra={"max_lag": max_lag})
    assert_no_loss(c, outcome)
    assert max_lag > 0 and samples[-1][1] == 0, samples[-20:]
    assert w.metrics().get("driftloop_events_total") == N_EVENTS


@pytest.fixture
def workers():
    started: list[WorkerProc] = []
    yield started
    for w in started:
        w.stop()
