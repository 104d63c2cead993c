"""The label join when producers use different Kafka clients (real broker): said loudly, not silently lost."""

from __future__ import annotations

import json

import pytest

from streams.worker.partitioners import crc32_partition
from streams.cli.sample import SampleTraffic
from tests.test_worker_kafka import Setup

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("labels_client", ["kafka-python", "librdkafka"])
def test_labels_from_another_client_family_are_reported(kafka_bootstrap, tmp_path, workers, labels_client):
    """Inputs from kafka-python (murmur2); labels from kafka-python again, or placed as librdkafka's default
    partitioner (crc32) places them: then most labels miss their inputs and the worker says why."""
    setup = Setup(kafka_bootstrap, tmp_path, partitions=4)
    tr = SampleTraffic(seed=5)
    events = tr.events(400)
    labels = tr.labels(events[:200], delay_s=5.0)
    setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in events])
    w = setup.start()
    workers.append(w)
    w.wait_metric("driftloop_events_total", len(events))
    if labels_client == "kafka-python":
        setup.produce("labels", [(lab["event_id"].encode(), json.dumps(lab).encode()) for lab in labels])
    else:
        for lab in labels:
            key = lab["event_id"].encode()
            setup.produce("labels", [(key, json.dumps(lab).encode())], partition=crc32_partition(key, 4))
    w.wait_metric('driftloop_label_join_total{outcome="matched"}', 1, timeout_s=60)
    setup.wait_done([w])
    m = w.metrics()
    log = w.tail(200_000)
    if labels_client == "kafka-python":
        assert m.get("driftloop_partitioner_mismatch") == 0, m
        assert m['driftloop_label_join_total{outcome="matched"}'] == len(labels)
        assert "partitioned differently" not in log
    else:
        assert m.get("driftloop_partitioner_mismatch") == 1, m
        assert "inputs and labels are partitioned differently" in log and "murmur2_random" in log
