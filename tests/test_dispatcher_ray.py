"""End to end on a real local Ray cluster and a real Kafka broker, with a tiny model.

A retrain request goes in on Kafka (twice: a redelivery); the dispatcher submits one Ray
job (visible through the Jobs API with its metadata); the job reads the window's labelled
examples from Kafka, fine-tunes the parent with replay, passes the gate, registers and
promotes the new version and publishes a ModelUpdate; the duplicate trains nothing, also
after a dispatcher restart.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from trainers.records import RetrainRequest
from trainers.dispatch.ledger import submission_id
from trainers.cli.dispatcher import Dispatcher, JobsAdapter, serve
from trainers.registry import ModelRegistry, Provenance

pytestmark = [pytest.mark.ray, pytest.mark.kafka]

DEADLINE_S = 240.0  # upper bound for the job to finish; never a timing assertion
FEATURES = ["x0", "x1", "x2", "x3"]


def make_data(n: int, region: float, rule: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows around x0 = ``region``; the label is the sign of feature ``rule`` (the concept)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[:, 0] += region
    return X, (X[:, rule] > 0).astype(np.int64)


def register_base(reg: ModelRegistry) -> None:
    from trainers.training.continual import ContinualLearner
    from trainers.training.models import ModelSpec, build_model
    from trainers.training.replay import ReplayBuffer

    spec = ModelSpec(FEATURES, 2, hidden=(16,))
    X, y = make_data(400, -2.0, 1, seed=0)
    learner = ContinualLearner(build_model(spec, seed=0), replay=ReplayBuffer(200, seed=0), epochs=10, device="cpu")
    learner.fit(X, y)
    info = reg.register("tiny", spec, learner.model.state_dict(), replay=learner.replay,
                        provenance=Provenance(base_model={"source": "test fixture", "licence": "Apache-2.0"}))
    reg.promote("tiny", info.version)


def _produce(bootstrap: str, topic: str, values: list[str], key: bytes | None = None) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for v in values:
            producer.send(topic, key=key, value=v.encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def _read_all(bootstrap: str, topic: str, want: int, timeout_s: float = 30.0) -> list[dict]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < want and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(json.loads(m.value) for m in batch)
        for batch in consumer.poll(timeout_ms=1000).values():  # anything beyond `want` shows up too
            got.extend(json.loads(m.value) for m in batch)
    finally:
        consumer.close()
    return got


def serve_until_done(dispatcher: Dispatcher, consumer, request_id: str) -> None:
    """Run the dispatcher until ``request_id`` succeeded or failed (or DEADLINE_S passed); closes ``consumer``."""
    deadline = time.monotonic() + DEADLINE_S

    def finished() -> bool:
        e = dispatcher.ledger.entries.get(request_id)
        return time.monotonic() > deadline or (e is not None and e.state in ("succeeded", "failed"))

    try:
        serve(dispatcher, consumer, poll_interval_s=0.5, should_stop=finished)
    finally:
        consumer.close()


def test_retrain_request_becomes_one_ray_job_and_a_promoted_version(
    ray_cluster, ray_jobs, kafka_bootstrap, kafka_topic_factory, tmp_path: Path
) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    t_requests, t_results, t_labelled, t_updates = (kafka_topic_factory(h) for h in
                                                    ("requests", "results", "labelled", "updates"))
    reg_dir = tmp_path / "registry"
    reg = ModelRegistry(reg_dir)
    register_base(reg)

    now = time.time()
    X, y = make_data(300, 2.0, 2, seed=1)  # drift: a new region with a new concept
    _produce(kafka_bootstrap, t_labelled, [
        json.dumps({"event_id": f"e{i}", "model": "tiny", "model_version": "1", "ts": now - 300 + i * 0.5,
                    "features": dict(zip(FEATURES, map(float, X[i]))), "label": int(y[i])}) for i in range(len(y))
    ] + ['{"not": "a labelled example"}'])
    req = RetrainRequest("tiny", "1", ["alert-1", "alert-2"], ["concept_drift"], now - 600, now + 60,
                         n_labelled=300, reason="test")
    _produce(kafka_bootstrap, t_requests, [req.to_json(), req.to_json()], key=req.request_id.encode())

    topics = {"retrain_requests": t_requests, "retrain_results": t_results, "labelled": t_labelled,
              "model_updates": t_updates}
    settings = {"kafka": {"bootstrap_servers": kafka_bootstrap}, "topics": topics,
                "trainers": {"min_examples": 50, "learner": {"epochs": 15},
                             "gate": {"min_improvement_new": 0.05, "max_forgetting_old": 0.1, "max_ece": 0.5}}}
    jobs = JobsAdapter(ray_jobs, settings=settings, registry=str(reg_dir), python=sys.executable,
                       extra_env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    results: list = []

    def publish(result) -> None:
        results.append(result)
        producer.send(t_results, value=result.to_json().encode())
        producer.flush(timeout=30)

    group = f"test-dispatcher-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(t_requests, bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    ledger = tmp_path / "ledger.json"
    dispatcher = Dispatcher.open(ledger, jobs, publish, max_attempts=2)
    serve_until_done(dispatcher, consumer, req.request_id)

    sid = submission_id(req, 1)
    entry = dispatcher.ledger.entries[req.request_id]
    assert entry.state == "succeeded", (entry, ray_jobs.get_job_logs(entry.submission_id)[-3000:])

    # the job, through the Jobs API, with a readable id and its metadata; exactly one job for the request
    assert sid == f"retrain-tiny-v1-{req.request_id[3:13]}-a1"
    info = ray_jobs.get_job_info(sid)
    assert str(info.status.value if hasattr(info.status, "value") else info.status) == "SUCCEEDED"
    assert info.metadata["model"] == "tiny" and info.metadata["version"] == "1"
    assert info.metadata["request_id"] == req.request_id and info.metadata["alert_ids"] == "alert-1,alert-2"
    assert info.metadata["kinds"] == "concept_drift" and info.metadata["n_labelled"] == "300"
    assert info.metadata["job_name"] == sid and "3" in info.metadata["exit_codes"]
    # its log shows the training and the gate, not the Kafka clients' chatter; the verdict is the last line
    logs = ray_jobs.get_job_logs(sid)
    assert "candidate epoch 1/" in logs and "promotion gate, candidate v2 of tiny:" in logs, logs[-3000:]
    assert not [ln for ln in logs.splitlines() if " INFO kafka." in ln or " INFO aiokafka" in ln], logs[-3000:]
    assert "value_serializer" not in logs and "not writable" not in logs, logs[-3000:]  # no warnings of ours
    assert logs.rstrip().splitlines()[-1].startswith("DRIFTLOOP_VERDICT candidate v2 promoted"), logs[-1000:]
    assert entry.verdict.startswith("candidate v2 promoted: passed the promotion gate")
    ours = [j for j in ray_jobs.list_jobs() if (j.metadata or {}).get("request_id") == req.request_id]
    assert [j.submission_id for j in ours] == [sid]

    # a new version with provenance, promoted
    assert [v.version for v in reg.versions("tiny")] == ["1", "2"]
    new = reg.load("tiny", "2")
    assert new.provenance.parent_version == "1" and new.provenance.request_id == req.request_id
    assert new.provenance.alert_ids == ["alert-1", "alert-2"]
    assert new.provenance.window == {"start": req.window_start, "end": req.window_end}
    assert new.provenance.training["device"] in ("cpu", "cuda") and new.provenance.training["n_new"] == 300
    assert new.report is not None and new.report["promoted"] is True
    assert reg.current("tiny") == "2"
    assert (Path(new.info.path) / "report.txt").is_file()

    # results: submitted, duplicate (the redelivery), running, succeeded
    statuses = [r.status for r in results]
    assert statuses.count("duplicate") == 1 and statuses[-1] == "succeeded", statuses
    assert results[-1].new_version == "2" and results[-1].promoted
    updates = _read_all(kafka_bootstrap, t_updates, want=1)
    assert [(u["model"], u["version"], u["previous_version"], u["action"]) for u in updates] == [
        ("tiny", "2", "1", "promote")]
    assert updates[0]["sha256"] == reg.info("tiny", "2").weights_sha256
    published = _read_all(kafka_bootstrap, t_results, want=len(results))
    assert [p["status"] for p in published] == statuses

    # restart: a new dispatcher over the same ledger, the request delivered once more -> nothing trains
    _produce(kafka_bootstrap, t_requests, [req.to_json()])
    consumer = KafkaConsumer(t_requests, bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    restarted = Dispatcher.open(ledger, jobs, publish, max_attempts=2)
    stop_at = time.monotonic() + 30

    def got_duplicate() -> bool:
        return time.monotonic() > stop_at or restarted.ledger.entries[req.request_id].duplicates >= 2

    try:
        serve(restarted, consumer, poll_interval_s=0.5, should_stop=got_duplicate)
    finally:
        consumer.close()
        producer.close()
    assert results[-1].status == "duplicate"
    ours = [j for j in ray_jobs.list_jobs() if (j.metadata or {}).get("request_id") == req.request_id]
    assert len(ours) == 1 and [v.version for v in reg.versions("tiny")] == ["1", "2"]


def test_a_rejected_candidate_shows_in_the_ray_dashboard_and_is_not_retried(
    ray_cluster, ray_jobs, kafka_bootstrap, kafka_topic_factory, tmp_path: Path
) -> None:
    """A gate no candidate can pass: the job registers v2, promotes nothing, exits 3; Ray says FAILED with the
    verdict at the end of its status message; the dispatcher records "rejected" once, no second attempt."""
    t_labelled, t_updates = kafka_topic_factory("labelled"), kafka_topic_factory("updates")
    reg_dir = tmp_path / "registry"
    reg = ModelRegistry(reg_dir)
    register_base(reg)
    now = time.time()
    X, y = make_data(200, 2.0, 2, seed=3)
    _produce(kafka_bootstrap, t_labelled, [
        json.dumps({"event_id": f"e{i}", "model": "tiny", "model_version": "1", "ts": now - 300 + i * 0.5,
                    "features": dict(zip(FEATURES, map(float, X[i]))), "label": int(y[i])}) for i in range(len(y))])
    req = RetrainRequest("tiny", "1", ["alert-9"], ["data_drift"], now - 600, now + 60, n_labelled=200, reason="test")
    settings = {"kafka": {"bootstrap_servers": kafka_bootstrap},
                "topics": {"labelled": t_labelled, "model_updates": t_updates},
                "trainers": {"min_examples": 50, "learner": {"epochs": 3}, "baseline": False,
                             "gate": {"min_improvement_new": 1.5}}}  # +150 points: impossible
    jobs = JobsAdapter(ray_jobs, settings=settings, registry=str(reg_dir), python=sys.executable,
                       extra_env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    results: list = []
    dispatcher = Dispatcher.open(tmp_path / "ledger.json", jobs, results.append, max_attempts=2)
    dispatcher.handle(req)
    deadline = time.monotonic() + DEADLINE_S
    while dispatcher.ledger.in_flight() and time.monotonic() < deadline:
        time.sleep(0.5)
        dispatcher.poll()

    sid = submission_id(req, 1)
    entry = dispatcher.ledger.entries[req.request_id]
    assert [r.status for r in results][-1] == "rejected", (results, ray_jobs.get_job_logs(sid)[-3000:])
    assert entry.attempt == 1 and "failed" not in [r.status for r in results]
    assert results[-1].new_version == "2" and not results[-1].promoted
    info = ray_jobs.get_job_info(sid)
    assert str(getattr(info.status, "value", info.status)) == "FAILED" and info.driver_exit_code == 3
    verdict = "candidate v2 rejected by the promotion gate: "
    assert "exit code 3" in info.message and info.message.rstrip().splitlines()[-1].startswith(
        "DRIFTLOOP_VERDICT " + verdict), info.message
    assert entry.verdict.startswith(verdict) and entry.verdict.endswith("(tiny, parent v1)")
    assert [j.submission_id for j in ray_jobs.list_jobs() if (j.metadata or {}).get("request_id") == req.request_id] \
        == [sid]
    assert [v.version for v in reg.versions("tiny")] == ["1", "2"] and reg.current("tiny") == "1"


def test_jobs_api_refuses_requests_without_the_token(ray_cluster, ray_jobs) -> None:
    """Token authentication is on: the Jobs API answers 401 without the token, 200 with it."""
    import urllib.error
    import urllib.request

    from pathlib import Path as _P

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(ray_cluster.dashboard_url + "/api/jobs/", timeout=30)
    assert err.value.code == 401
    token = _P(ray_cluster.token_path).read_text().strip()
    req = urllib.request.Request(ray_cluster.dashboard_url + "/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    assert isinstance(ray_jobs.list_jobs(), list)
