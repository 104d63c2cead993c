"""A model and version keep their identity end to end on the real broker, whatever characters they hold."""

from __future__ import annotations

import json

import pytest

from streams.cli.sample import Drift, SampleTraffic
from tests.test_worker_kafka import DRIFT_AT, Setup

pytestmark = pytest.mark.kafka


def test_model_named_with_a_separator_keeps_its_identity(kafka_bootstrap, tmp_path, workers):
    """``fraud|eu`` version ``3`` (a key once joined with "|") is aggregated, bootstrapped and alerted as itself."""
    setup = Setup(kafka_bootstrap, tmp_path)
    tr = SampleTraffic(seed=7, model="fraud|eu", model_version="3")
    tr.drifts.append(Drift("amount", tr.start_ts + DRIFT_AT, scale=3.0))
    events = tr.events(12_000)
    setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in events])
    w = setup.start()
    workers.append(w)
    setup.wait_done([w])
    alerts, _ = setup.alerts()
    raw = [json.loads(v) for _, v in setup.read("alerts")]
    assert raw and {(a["model"], a["model_version"]) for a in raw} == {("fraud|eu", "3")}
    assert [a["feature"] for a in alerts.values() if a["kind"] == "data_drift"] == ["amount"]
    m = w.metrics()
    assert m.get('driftloop_reference_info{model="fraud|eu",model_version="3",source="bootstrap"}') == 1, m
    assert m.get("driftloop_events_total") == len(events)
