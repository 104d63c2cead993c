"""Faults on driftloop's own three-node Kafka cluster (issue 15), each against a no-fault reference run.

Every case states its expectation and counts (tests/faults.py): events lost 0, alerts duplicated 0, no alert
missing, inputs counted once (every judged window's n as in the reference run, whose worker counted every
produced event).  The worker runs as ``driftloop worker`` subprocesses (tests/test_worker_kafka.py's harness),
so SIGKILL is real; brokers are killed and paused with real signals.  Waits have upper bounds only; the
recovery times are measured and reported (bench/faults_report.py writes bench/results/faults.md), never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

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


@pytest.mark.parametrize("trial", range(int(os.environ.get("DRIFTLOOP_FAULTS_REPEAT", "1"))))
def test_worker_sigkilled_mid_window_twice(reference, cluster, tmp_path, workers, trial):
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
    lag_series = [f'driftloop_consumer_lag{{partition="{p}",topic="{setup.topics["inputs"]}"}}' for p in range(2)]
    while time.monotonic() < deadline:  # lag as Prometheus would see it, until the worker has read everything
        m = w.metrics()
        lag = sum(m.get(k, 0.0) for k in lag_series) if any(k in m for k in lag_series) else float("nan")
        max_lag = max(max_lag, lag) if lag == lag else max_lag
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


@pytest.mark.slow
@pytest.mark.ray
def test_dispatcher_killed_while_its_ray_job_runs(cluster, ray_cluster, ray_jobs, tmp_path):
    """Expectation: ``driftloop dispatcher`` SIGKILLed while the Ray job of a retrain request runs, then restarted:
    the job is not submitted again, and its result (succeeded, a promoted version) is published exactly once."""
    import subprocess
    import sys

    import yaml

    from streams.adapters.kafka_admin import ensure_topics
    from tests.fixtures_kafka import topic_name
    from tests.test_dispatcher_ray import _produce, _read_all, make_data, register_base, FEATURES
    from trainers.dispatch.ledger import submission_id
    from trainers.records import RetrainRequest
    from trainers.registry import ModelRegistry

    topics = {k: topic_name(f"disp.{k}") for k in ("retrain_requests", "retrain_results", "labelled", "model_updates")}
    ensure_topics(cluster.bootstrap, list(topics.values()), partitions=1)
    reg_dir = tmp_path / "registry"
    register_base(ModelRegistry(reg_dir))
    now = time.time()
    X, y = make_data(300, 2.0, 2, seed=1)
    _produce(cluster.bootstrap, topics["labelled"], [
        json.dumps({"event_id": f"e{i}", "model": "tiny", "model_version": "1", "ts": now - 300 + i * 0.5,
                    "features": dict(zip(FEATURES, map(float, X[i]))), "label": int(y[i])}) for i in range(len(y))])
    req = RetrainRequest("tiny", "1", ["alert-1"], ["concept_drift"], now - 600, now + 60, n_labelled=300, reason="fault")
    _produce(cluster.bootstrap, topics["retrain_requests"], [req.to_json()], key=req.request_id.encode())
    config = tmp_path / "driftloop.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": cluster.bootstrap}, "topics": {**topics, "partitions": 1},
        "dispatcher": {"ray_address": ray_cluster.dashboard_url, "registry": str(reg_dir), "metrics_port": 0,
                       "state_dir": str(tmp_path / "dispatcher"), "group_id": f"fault-{req.request_id[3:13]}",
                       "poll_interval_s": 0.5, "max_attempts": 2, "entrypoint_python": sys.executable},
        "trainers": {"min_examples": 50, "learner": {"epochs": 15},
                     "gate": {"min_improvement_new": 0.05, "max_forgetting_old": 0.1, "max_ece": 0.5}},
    }))
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["DRIFTLOOP_HOME"] = str(tmp_path / "home")
    root = Path(__file__).resolve().parents[1]

    def dispatcher(name: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "streams.cli", "--config", str(config), "dispatcher"],
                                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)

    sid = submission_id(req, 1)
    first = dispatcher("d1")
    try:
        deadline = time.monotonic() + 240
        status = None
        while time.monotonic() < deadline and status != "RUNNING":
            assert first.poll() is None, (tmp_path / "d1.log").read_text()[-3000:]
            try:
                info = ray_jobs.get_job_info(sid)
                status = str(getattr(info.status, "value", info.status))
            except Exception:  # not submitted yet
                pass
            time.sleep(0.5)
        assert status == "RUNNING", (status, (tmp_path / "d1.log").read_text()[-3000:])
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        t_kill = time.monotonic()
        second = dispatcher("d2")
        ledger = tmp_path / "dispatcher" / "ledger.json"
        state = None
        while time.monotonic() < t_kill + 300 and state not in ("succeeded", "failed", "rejected"):
            assert second.poll() is None, (tmp_path / "d2.log").read_text()[-3000:]
            try:
                state = json.loads(ledger.read_text())["entries"][req.request_id]["state"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.5)
        recover = time.monotonic() - t_kill
        time.sleep(2.0)  # the published result's flush
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    results = [r for r in _read_all(cluster.bootstrap, topics["retrain_results"], want=2)
               if r.get("request_id") == req.request_id]
    terminal = [r for r in results if r["status"] in ("succeeded", "failed", "rejected")]
    updates = _read_all(cluster.bootstrap, topics["model_updates"], want=1)
    ours = [j.submission_id for j in ray_jobs.list_jobs() if (j.metadata or {}).get("request_id") == req.request_id]
    record(FaultOutcome(
        "dispatcher SIGKILLed while its Ray job runs, restarted", "no second job; the result published once",
        f"killed with {sid} RUNNING; the restarted dispatcher found it in its ledger: state {state}; "
        f"{len(ours)} Ray job(s) for the request, {len(terminal)} final result record(s) "
        f"({[r['status'] for r in results]}), {len(updates)} model update(s)",
        None, recover, extra={"jobs": len(ours), "final_results": len(terminal), "model_updates": len(updates)}))
    assert state == "succeeded", (tmp_path / "d2.log").read_text()[-3000:]
    assert ours == [sid]
    assert [r["status"] for r in terminal] == ["succeeded"], results
    assert len(updates) == 1, updates


def _redis(port: int, workdir: Path):
    """A redis-server on 127.0.0.1:``port`` (no persistence), answering PING."""
    import shutil
    import socket
    import subprocess

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `make setup` (infra/bootstrap.sh) installs it")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir), "--daemonize", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"redis-server did not answer on port {port}")


@pytest.mark.slow
@pytest.mark.feast
def test_feast_online_store_unreachable_for_a_while(cluster, tmp_path, workers):
    """Expectation: the Redis online store frozen (SIGSTOP) while events arrive: parity becomes 'unknown'
    (reported once), drift detection goes on with the same drift alerts as without the outage, every event is
    counted once, and parity lookups succeed again after the store comes back (SIGCONT)."""
    from datetime import datetime, timezone

    import pandas as pd
    import yaml

    from feature_repo.data_gen import Skew, serving_events
    from feature_repo.offline import historical_table
    from streams.judge.profile_build import build_profile
    from tests.fixtures_feast import _free_port, build_repo, copy_repo
    from tests.test_feast_worker_e2e import FEATURE, N_EVENTS as N_FEAST, START, ParityWorker

    port = _free_port()
    redis = _redis(port, tmp_path)
    try:
        repo = build_repo(copy_repo(tmp_path / "repo"), online="redis", redis_connection=f"127.0.0.1:{port}")
        from datetime import timedelta

        table = historical_table("fraud", "1", repo.end - timedelta(days=5), repo.end, repo.path)
        profile = build_profile(table, "fraud", "1", label_column="is_fraud",
                                feature_columns=table.attrs["feature_columns"], source=table.attrs["source"])
        values = repo.values()
        shift = Skew(FEATURE, 100.0, 0.2)
        now = datetime.now(timezone.utc)
        rows = []
        for cid, v in values["customer_id"].items():  # a change in the world: the store learns it too
            if shift.hits(cid):
                v[FEATURE] *= 100.0
                rows.append({"customer_id": cid, "event_timestamp": now, "created": now, **v})
        repo.store.push("customer_stats_push", pd.DataFrame(rows))
        events = serving_events(values, N_FEAST, seed=5, start_ts=START, skews=[])
        records = [(e["event_id"].encode(), json.dumps(e).encode()) for e in events]

        runs = {}
        for name, fault in (("ref", False), ("fault", True)):
            setup = Setup(cluster.bootstrap, tmp_path / name, batch_size=200)
            profile.save(setup.refs / "fraud" / "1.json")
            conf = yaml.safe_load(setup.config.read_text())
            conf["features"] = {"repo_path": str(repo.path), "online_store": "redis",
                                "redis_connection": f"127.0.0.1:{port}"}
            conf["parity"] = {"checker": {"window_seconds": 10, "allowed_lateness_s": 0, "min_samples": 50},
                              "lookup": {"timeout_s": 1.0, "cache_ttl_s": 1.0}}
            setup.config.write_text(yaml.safe_dump(conf))
            w = ParityWorker(setup, name)
            workers.append(w)
            deadline = time.monotonic() + 180
            while not w.metrics() and time.monotonic() < deadline:
                w.check_alive()
                time.sleep(0.2)
            feeder = Feeder(cluster.bootstrap, setup.topics["inputs"], records, rate=300.0)
            feeder.start()
            t_back = None
            if fault:
                w.wait_metric("driftloop_events_total", 1500, timeout_s=180)
                redis.send_signal(signal.SIGSTOP)
                before = w.metrics().get("driftloop_events_total", 0)
                w.wait_metric("driftloop_events_total", before + 1500, timeout_s=180)  # drift goes on
                unknown_seen = w.metrics().get("driftloop_parity_unknown", 0)
                redis.send_signal(signal.SIGCONT)
                t_back = time.monotonic()
                ok_before = w.metrics().get('driftloop_parity_lookups_total{result="ok"}', 0)
            feeder.finish()
            setup.wait_done([w], timeout_s=300)
            m = w.metrics()
            alerts, raw = setup.alerts()
            runs[name] = {"alerts": alerts, "raw": raw, "metrics": m, "log": w.log, "produced": feeder.acked,
                          "recover_s": None if t_back is None else time.monotonic() - t_back}
            if fault:
                runs[name].update(unknown_seen=unknown_seen, ok_before=ok_before)
            w.stop()
    finally:
        if redis.poll() is None:
            redis.send_signal(signal.SIGCONT)
            redis.terminate()
            redis.wait(10)
    ref, got = runs["ref"], runs["fault"]
    drift = {k: a for k, a in got["alerts"].items() if a["kind"] != "parity"}
    ref_drift = {k: a for k, a in ref["alerts"].items() if a["kind"] != "parity"}
    parity = [a["metric"] for a in got["alerts"].values() if a["kind"] == "parity"]
    c = Counts.compare(got["produced"], judged_windows([ref["log"]]), judged_windows([got["log"]]), ref_drift, drift,
                       got["raw"] - (len(got["alerts"]) - len(drift)))
    ok_after = got["metrics"].get('driftloop_parity_lookups_total{result="ok"}', 0) - got["ok_before"]
    outcome = FaultOutcome(
        "Feast online store (Redis) frozen mid-stream, then back", "parity unknown, drift goes on; recovers",
        f"parity alerts {parity} (reference: {[a['metric'] for a in ref['alerts'].values() if a['kind'] == 'parity']}); "
        f"driftloop_parity_unknown {got['unknown_seen']:.0f} during the outage; {ok_after:.0f} successful lookups after it; "
        f"events counted {got['metrics'].get('driftloop_events_total', 0):.0f} of {got['produced']}",
        c, got["recover_s"], extra={"parity_alerts": parity})
    assert_no_loss(c, outcome)
    assert "parity_unknown" in parity and got["unknown_seen"] >= 1
    assert ok_after > 0
    assert got["metrics"].get("driftloop_events_total") == got["produced"] == N_FEAST
