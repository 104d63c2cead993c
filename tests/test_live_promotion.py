"""Shadow evaluation and automatic rollback on the real broker: a `driftloop worker` subprocess joins inputs (with
their shadow predictions) and labels into the labelled topic; the dispatcher's live step (the same code
`driftloop dispatcher` runs, here in the test process with a real kafka-python consumer) reads it and the
model-updates topic, and carries the live gate's verdicts out on a real registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streams.cli.sample import Drift, SampleTraffic
from tests.test_live_step import registry_with
from tests.test_worker_kafka import Setup

pytestmark = pytest.mark.kafka

MODEL = "fraud"


def served(events, labels, version, live_acc, shadow=None, shadow_acc=None, seed=0):
    """``events`` as served by ``version``: right with probability ``live_acc``, and with ``shadow``'s prediction
    (right with probability ``shadow_acc``) in the shadow field."""
    rng = np.random.default_rng(seed)
    truth = {lab["event_id"]: lab["label"] for lab in labels}
    out = []
    for e in events:
        y = truth[e["event_id"]]
        e = dict(e, model_version=version, prediction=y if rng.random() < live_acc else 1 - y)
        if shadow is not None:
            s = y if rng.random() < shadow_acc else 1 - y
            e["shadow"] = {"model_version": shadow, "prediction": s, "scores": [0.2, 0.8] if s else [0.8, 0.2]}
        out.append(e)
    return out


def live_step(setup, reg, tmp, **cfg):
    from kafka import KafkaConsumer, KafkaProducer

    from trainers.dispatch.live_step import LiveStep
    from trainers.promotion.live_gate import LiveGateConfig

    producer = KafkaProducer(bootstrap_servers=setup.bootstrap, acks="all")

    def send(topic):
        return lambda rec: producer.send(setup.topics[topic], rec.to_json().encode()).get(timeout=30)

    step = LiveStep.open(LiveGateConfig(**cfg), reg, tmp / "live_gate.json", publish_update=send("model_updates"),
                         publish_alert=send("alerts"))
    consumer = KafkaConsumer(setup.topics["labelled"], setup.topics["model_updates"], bootstrap_servers=setup.bootstrap,
                             group_id=f"{setup.app_id}-live", enable_auto_commit=False, auto_offset_reset="earliest")
    return step, consumer, producer


def run_until(step, consumer, setup, done, worker, polls=480):
    """Poll (500 ms each) until ``done()``; at most ``polls`` polls."""
    from trainers.dispatch.live_step import poll

    for _ in range(polls):
        if done():
            return
        worker.check_alive()
        poll(step, consumer, updates_topic=setup.topics["model_updates"], timeout_ms=500)
    pytest.fail(f"no verdict after {polls} polls; worker log: {worker.tail()}")


def records(setup, topic):
    return [json.loads(v) for _, v in setup.read(topic)]


def produce_served(setup, events, labels):
    setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in events])
    setup.produce("labels", [(lab["event_id"].encode(), json.dumps(lab).encode()) for lab in labels])


def test_a_candidate_better_offline_but_worse_live_is_not_promoted(kafka_bootstrap, tmp_path, workers):
    setup = Setup(kafka_bootstrap, tmp_path, label_ttl_s=60.0, reference_bootstrap_n=1000)
    reg = registry_with(tmp_path, model=MODEL)
    assert reg.info(MODEL, "2").promoted  # the offline gate passed it
    update = reg.start_shadow(MODEL, "2", actor="test", reason="passed the offline gate")
    # foreign records on the model-updates topic first: skipped, never a crash
    setup.produce("model_updates", [(None, b"not json"), (None, b'{"action": "promote", "version": "2"}'),
                                    (MODEL.encode(), update.to_json().encode())])
    traffic = SampleTraffic(seed=31)
    events = traffic.events(3000)
    labels = traffic.labels(events, delay_s=5.0)
    produce_served(setup, served(events, labels, "1", 0.92, shadow="2", shadow_acc=0.80), labels)
    w = setup.start()
    workers.append(w)
    step, consumer, producer = live_step(setup, reg, tmp_path, shadow=True, min_samples=300, max_samples=2000)
    try:
        run_until(step, consumer, setup, lambda: reg.shadow(MODEL) is None, w)
    finally:
        consumer.close()
        producer.close()
    assert reg.current(MODEL) == "1"
    verdict = reg.info(MODEL, "2").live_verdict
    assert verdict["verdict"] == "rejected", verdict
    er = verdict["evidence"]["error_rate"]
    assert er["subject"] > er["incumbent"] and er["p_value"] < verdict["evidence"]["alpha"]
    assert er["n"] >= 300 and verdict["evidence"]["paired"]
    updates = [json.loads(v) for _, v in setup.read("model_updates")[2:]]
    assert [(u["action"], u["version"], u["shadow"]) for u in updates] == [("shadow", "1", "2"), ("reject", "1", None)]
    rejected = [a for a in records(setup, "alerts") if a["kind"] == "shadow_rejected"]
    assert len(rejected) == 1 and rejected[0]["model_version"] == "2" and "worse on live traffic" in \
        rejected[0]["details"]["reason"]


def test_a_degraded_promotion_is_rolled_back_and_the_reference_switches_back(kafka_bootstrap, tmp_path, workers):
    from streams.adapters.reference_store import ReferenceStore
    from streams.contracts.validate import parse_input
    from streams.judge.profile_build import build_profile

    setup = Setup(kafka_bootstrap, tmp_path, label_ttl_s=60.0)
    reg = registry_with(tmp_path, model=MODEL)
    ref_events = [parse_input(e) for e in SampleTraffic(seed=123).events(5000)]
    refs = {v: build_profile(ref_events, MODEL, v, source="training window of v" + v) for v in ("1", "2")}
    for p in refs.values():
        ReferenceStore(setup.refs).save(p)
    update = reg.promote(MODEL, "2", watch=True, actor="test", reason="passed the offline gate")
    assert update.shadow == "1"  # servers keep the parent in shadow while the promotion is watched
    setup.produce("model_updates", [(MODEL.encode(), update.to_json().encode())])
    # v2 serves 120 s of event time (amount drifted), with v1 in shadow: v2 is worse
    traffic = SampleTraffic(seed=41, drifts=[Drift("amount", at=0.0, scale=3.0)])
    first = traffic.events(6000)
    first_labels = traffic.labels(first, delay_s=5.0)
    produce_served(setup, served(first, first_labels, "2", 0.78, shadow="1", shadow_acc=0.93, seed=1), first_labels)
    w = setup.start()
    workers.append(w)
    step, consumer, producer = live_step(setup, reg, tmp_path, min_samples=300, max_samples=3000, watch_s=3600.0)
    try:
        run_until(step, consumer, setup, lambda: reg.current(MODEL) == "1", w)
        # after the rollback, v1 serves again (no shadow): its drift is judged against v1's own reference
        later = traffic.events(6000)
        later_labels = traffic.labels(later, delay_s=5.0)
        produce_served(setup, served(later, later_labels, "1", 0.93, seed=2), later_labels)
        setup.wait_done([w])
    finally:
        consumer.close()
        producer.close()
    verdict = reg.info(MODEL, "2").live_verdict
    assert verdict["verdict"] == "rolled_back" and verdict["evidence"]["paired"], verdict
    assert [c["action"] for c in reg.changes(MODEL)][-1] == "rollback"
    updates = records(setup, "model_updates")
    assert [(u["action"], u["version"], u["shadow"]) for u in updates] == [("promote", "2", "1"), ("rollback", "1", None)]
    alerts = records(setup, "alerts")
    rollback = [a for a in alerts if a["kind"] == "rollback"]
    assert len(rollback) == 1 and rollback[0]["model_version"] == "2" and rollback[0]["severity"] == "critical"
    drift = {(a["model_version"], a["reference"]["id"]) for a in alerts if a["kind"] == "data_drift"}
    assert ("2", refs["2"].id) in drift and ("1", refs["1"].id) in drift, drift
    assert {v for v, ref in drift if ref != refs[v].id} == set(), drift
