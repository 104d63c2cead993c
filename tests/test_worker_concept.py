"""A configured River detector raises concept-drift alerts from the worker on the real broker, the same
alerts as `driftloop backtest` on the same events, labels and drift config (one engine path)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from streams.contracts.events import Alert
from streams.adapters.reference_store import ReferenceStore
from streams.cli.sample import SampleTraffic
from tests.test_worker_kafka import ROOT, START, Setup, register_reference

pytestmark = pytest.mark.kafka

CHUNK = 500  # events per step of the live traffic (10 s of event time)
CHANGE_S = 150.0  # event time (after START) from which 40% of the labels contradict the model


def _label_alerts(alerts: list[Alert], through: float) -> dict[str, tuple]:
    out = {}
    for a in alerts:
        if a.kind in ("concept_drift", "performance") and a.window.end <= through:
            d = a.details or {}
            out.setdefault(a.alert_id, (a.kind, a.window.start, a.window.end, a.window.n, d.get("detector"),
                                        d.get("detected_event_id")))
    return out


def test_worker_river_detector_alerts_equal_backtest(kafka_bootstrap, tmp_path, workers):  # noqa: F811
    setup = Setup(kafka_bootstrap, tmp_path, label_ttl_s=20.0)
    cfg = yaml.safe_load(setup.config.read_text())
    cfg["drift"]["concept_detectors"] = ["adwin"]  # River only: no alert at all if the worker ignored it
    setup.config.write_text(yaml.safe_dump(cfg))
    register_reference(setup)
    tr = SampleTraffic(seed=21)
    events = tr.events(15000)  # 300 s of event time at 50 events/s
    n_before = int(CHANGE_S * 50)
    labels = tr.labels(events[:n_before], delay_s=5.0) + SampleTraffic(seed=22).labels(events[n_before:], delay_s=5.0,
                                                                                        flip=0.4)
    w = setup.start()
    workers.append(w)
    # Live traffic: 10 s of inputs, read, then their labels (5 s later in event time), read.  Every label
    # finds its input stored and its window open, so the worker judges the same labelled examples as the
    # backtest.  (A backlog of both topics does not: see the report of this test's commit.)
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=setup.bootstrap, acks="all", linger_ms=5)
    sent = 0
    try:
        for c0 in range(0, len(events), CHUNK):
            for topic, recs in (("inputs", events[c0:c0 + CHUNK]), ("labels", labels[c0:c0 + CHUNK])):
                for r in recs:
                    producer.send(setup.topics[topic], json.dumps(r).encode(), key=r["event_id"].encode())
                producer.flush()
                sent += len(recs)
                w.wait_metric("driftloop_events_total", sent, timeout_s=120)  # inputs + labels read
    finally:
        producer.close()
    setup.wait_done([w])
    m = w.metrics()
    assert m['driftloop_label_join_total{outcome="matched"}'] == len(labels), m
    assert m.get('driftloop_label_join_total{outcome="late_pairs"}', 0) == 0, m
    assert m.get('driftloop_label_join_total{outcome="expired_inputs"}', 0) == 0, m
    # the worker closes label windows up to the label watermark minus label_ttl_s (the backtest flushes all)
    judged_through = START + 300.0 + 5.0 - 20.0 - 10.0
    streamed = _label_alerts([Alert.from_dict(json.loads(v)) for _, v in setup.read("alerts")], judged_through)

    inputs, labels_file, out = tmp_path / "inputs.jsonl", tmp_path / "labels.jsonl", tmp_path / "alerts.jsonl"
    inputs.write_text("".join(json.dumps(e) + "\n" for e in events))
    labels_file.write_text("".join(json.dumps(lab) + "\n" for lab in labels))
    ref = ReferenceStore(setup.refs).path("fraud", "1")
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "--config", str(setup.config), "backtest", "--reference", str(ref),
         "--inputs", str(inputs), "--labels", str(labels_file), "--out", str(out), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    replayed = _label_alerts([Alert.from_dict(json.loads(line)) for line in out.read_text().splitlines() if line],
                             judged_through)

    concept = [a for a in replayed.values() if a[0] == "concept_drift"]
    assert concept and all(a[4] == "adwin" for a in concept), replayed
    change_id = events[n_before]["event_id"]
    assert all(a[5] >= change_id for a in concept), concept  # detected on an event after the change
    assert streamed == replayed
