"""The dispatcher refuses malformed retrain requests and requests for unregistered models before
submitting anything: each refusal (pure), the registry lookup, and the whole path through a real
Kafka broker (dead letters on ``<topic>.dlq`` in the worker's format, counted on /metrics)."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path

import pytest

from streams.contracts.events import DeadLetter
from trainers.dispatch.validate import REFUSALS, Refusal, check_request
from trainers.records import RetrainRequest

KNOWN = {"fraud": {"1", "2"}}.get


def _req(**kw) -> RetrainRequest:
    base = dict(model="fraud", model_version="2", alert_ids=["0123456789abcdef01234567"], kinds=["performance"],
                window_start=100.0, window_end=160.0, n_labelled=10)
    base.update(kw)
    return RetrainRequest(**base)


def test_a_well_formed_request_for_a_registered_version_passes() -> None:
    assert check_request(_req(), KNOWN) is None
    assert check_request(_req(window_start=160.0), KNOWN) is None  # start == end is a window
    assert check_request(_req(request_id="manual-2026.12.01:1"), KNOWN) is None


@pytest.mark.parametrize("change, reason, says", [
    (dict(request_id="../../etc"), "bad_request_id", "request_id '../../etc' is not well-formed"),
    (dict(request_id="rr-" + "a" * 200), "bad_request_id", "1-128 letters"),
    (dict(request_id="rr 1"), "bad_request_id", "not well-formed"),
    (dict(alert_ids=["ok", "bad\nid"]), "bad_alert_id", "alert id 'bad\\nid'"),
    (dict(alert_ids=[""]), "bad_alert_id", "not well-formed"),
    (dict(model="fraud\n"), "bad_name", "model 'fraud\\n' is not a valid name"),
    (dict(model=" fraud"), "bad_name", "no leading or trailing space"),
    (dict(model_version="x" * 129), "bad_name", "model_version"),
    (dict(window_start=float("nan")), "non_finite", "window_start is nan"),
    (dict(window_end=float("inf")), "non_finite", "window_end is inf"),
    (dict(window_start=200.0, window_end=100.0), "bad_window", "start <= end"),
    (dict(n_labelled=-1), "bad_value", "n_labelled"),
    (dict(kinds=["performance", "vibes"]), "unknown_kind", "unknown kind(s) ['vibes']"),
    (dict(kinds=[]), "unknown_kind", "no kinds"),
    (dict(model="payments"), "unknown_model", "register a base version"),
    (dict(model="fraud|eu"), "unknown_model", "not in the model registry"),
    (dict(model_version="9"), "unknown_version", "has no version '9'"),
])
def test_each_refusal_names_its_reason_and_the_fix(change, reason, says) -> None:
    req = dataclasses.replace(_req(), **change) if "request_id" in change else _req(**change)
    refusal = check_request(req, KNOWN)
    assert isinstance(refusal, Refusal) and refusal.reason == reason, refusal
    assert reason in REFUSALS
    assert says in refusal.error, refusal.error


def test_ids_are_checked_before_the_registry_is_asked() -> None:
    asked = []
    refusal = check_request(_req(model="fraud\x00"), lambda m: asked.append(m) or {"2"})
    assert refusal.reason == "bad_name" and asked == []


def test_registry_known_versions(tmp_path: Path) -> None:
    from trainers.registry import ModelRegistry, Provenance
    from trainers.training.models import ModelSpec, build_model

    reg = ModelRegistry(tmp_path / "reg")
    spec = ModelSpec(["x"], 2, hidden=(4,))
    reg.register("fraud", spec, build_model(spec, seed=0).state_dict(),
                 provenance=Provenance(base_model={"source": "scratch", "licence": "Apache-2.0"}))
    assert reg.known_versions("fraud") == {"1"}
    assert reg.known_versions("payments") is None
    assert reg.known_versions("../fraud") is None and reg.known_versions("fraud|eu") is None
    assert check_request(_req(model_version="1"), reg.known_versions) is None
    assert check_request(_req(), reg.known_versions).reason == "unknown_version"


class _NoJobs:
    """Jobs API stand-in that records submissions (the Ray side is not what this test is about)."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit_job(self, *, entrypoint, submission_id, runtime_env, metadata, entrypoint_num_cpus):
        self.submitted.append(submission_id)

    def get_job_info(self, sid):
        class Info:
            status, message = "RUNNING", ""
        return Info()

    def get_job_logs(self, sid):
        return ""


@pytest.mark.kafka
def test_refused_requests_are_dead_lettered_through_the_broker(kafka_bootstrap, kafka_topic_factory,
                                                               tmp_path: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    from streams.adapters.kafka_admin import ensure_topics
    from trainers.cli.dispatcher import Dispatcher, JobsAdapter, serve
    from trainers.dispatch.metrics import DispatcherMetrics
    from trainers.registry import ModelRegistry, Provenance
    from trainers.training.models import ModelSpec, build_model

    t_requests = kafka_topic_factory("requests")
    t_dlq = t_requests + ".dlq"
    ensure_topics(kafka_bootstrap, [t_dlq])
    reg = ModelRegistry(tmp_path / "reg")
    spec = ModelSpec(["x"], 2, hidden=(4,))
    reg.register("fraud", spec, build_model(spec, seed=0).state_dict(),
                 provenance=Provenance(base_model={"source": "scratch", "licence": "Apache-2.0"}))

    good = _req(model_version="1")
    bad = {
        "unknown_version": _req(model_version="7").to_json(),
        "unknown_model": _req(model="payments", model_version="1").to_json(),
        "bad_window": _req(model_version="1", window_start=500.0).to_json(),
        "bad_request_id": json.dumps(dict(good.to_dict(), request_id="rr-1; rm -rf /")),
        "not_json": "{not json",
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for reason, value in bad.items():
        producer.send(t_requests, key=reason.encode(), value=value.encode())
    producer.send(t_requests, key=good.request_id.encode(), value=good.to_json().encode())
    producer.flush(timeout=30)

    def dead_letter(dl: DeadLetter, key: bytes | None) -> None:
        producer.send(t_dlq, key=key, value=dl.to_bytes()).get(timeout=30)

    fake = _NoJobs()
    jobs = JobsAdapter(fake, settings={}, registry=str(reg.root), python="python")
    metrics = DispatcherMetrics()
    dispatcher = Dispatcher.open(tmp_path / "ledger.json", jobs, lambda r: None, metrics=metrics)
    consumer = KafkaConsumer(t_requests, bootstrap_servers=kafka_bootstrap, group_id=f"t-{uuid.uuid4().hex[:8]}",
                             enable_auto_commit=False, auto_offset_reset="earliest")
    deadline = time.monotonic() + 60

    def done() -> bool:
        return time.monotonic() > deadline or (bool(fake.submitted) and
                                               sum(metrics.refusals.labels(reason=r)._value.get() for r in bad) == 5)

    try:
        serve(dispatcher, consumer, poll_interval_s=0.2, dead_letter=dead_letter,
              check=lambda r: check_request(r, reg.known_versions), should_stop=done)
    finally:
        consumer.close()

    # only the good request reached the Jobs API and the ledger
    assert len(fake.submitted) == 1 and list(dispatcher.ledger.entries) == [good.request_id]
    letters = []
    reader = KafkaConsumer(t_dlq, bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest",
                           enable_auto_commit=False)
    try:
        stop = time.monotonic() + 30
        while len(letters) < len(bad) and time.monotonic() < stop:
            for msgs in reader.poll(timeout_ms=500).values():
                letters.extend((m.key.decode(), json.loads(m.value)) for m in msgs)
    finally:
        reader.close()
        producer.close()
    assert sorted(k for k, _ in letters) == sorted(bad)
    for key, letter in letters:
        assert letter["reason"] == key, letter
        assert letter["topic"] == t_requests and letter["raw"] == bad[key] and letter["raw_encoding"] == "text"
        assert letter["raw_length"] == len(bad[key].encode()) and letter["raw_truncated"] is False
        assert {"partition", "offset", "error", "raw_sha256"} <= set(letter)
    text = metrics.render().decode()
    for reason in bad:
        assert f'driftloop_retrain_requests_refused_total{{reason="{reason}"}} 1.0' in text
