"""Model-quality alerts out of a real `driftloop worker` on the real broker: on a scripted stream whose accuracy
falls (inputs squeezed towards the decision boundary) the SLO's fast burn rate fires and the label-free estimate
warns, each only after the change; on the healthy stream neither does, and every estimate is within the stated
error of the realised accuracy (tests/test_worker_quality.py drives the same traffic through the in-memory harness)."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from streams.adapters.reference_store import ReferenceStore
from streams.contracts.events import Alert
from tests.test_quality_estimate import _reference
from tests.test_worker_kafka import Setup
from tests.test_worker_quality import SHIFT_AT, SLO, _traffic

pytestmark = pytest.mark.kafka

#: the stated error of a window's label-free accuracy estimate on this traffic (calibrated reference)
ESTIMATE_ERROR = 0.05


def _run(kafka_bootstrap, tmp_path, workers, healthy: bool):
    setup = Setup(kafka_bootstrap, tmp_path, label_ttl_s=20.0)
    conf = yaml.safe_load(setup.config.read_text())
    conf.update(drift={"window_seconds": 10, "min_samples": 500}, slo=SLO)
    setup.config.write_text(yaml.safe_dump(conf))
    ReferenceStore(setup.refs).save(_reference(6.0)[0])
    t0 = float(int(time.time()) // 10 * 10) - 3600.0
    inputs, labels = _traffic(t0)
    if healthy:  # the first SHIFT_AT seconds only, repeated later in event time: no squeeze
        inputs = [e for e in inputs if e["ts"] < t0 + SHIFT_AT]
        ids = {e["event_id"] for e in inputs}
        labels = [x for x in labels if x["event_id"] in ids]
        later = [dict(e, event_id="h" + e["event_id"], ts=e["ts"] + SHIFT_AT) for e in inputs]
        inputs += later + [dict(e, event_id="k" + e["event_id"], ts=e["ts"] + SHIFT_AT) for e in later]
        labels += [dict(x, event_id="h" + x["event_id"], ts=x["ts"] + SHIFT_AT) for x in labels]
        labels += [dict(x, event_id="k" + x["event_id"], ts=x["ts"] + SHIFT_AT) for x in labels if x["event_id"][0] == "h"]
    setup.produce("inputs", [(e["event_id"].encode(), json.dumps(e).encode()) for e in inputs])
    setup.produce("labels", [(x["event_id"].encode(), json.dumps(x).encode()) for x in labels])
    w = setup.start()
    workers.append(w)
    setup.wait_done([w])
    alerts = [Alert.from_dict(json.loads(v)) for _, v in setup.read("alerts")]
    return alerts, w.metrics(), t0


def test_slo_burn_and_estimate_fire_after_the_change_on_the_broker(kafka_bootstrap, tmp_path, workers):
    alerts, m, t0 = _run(kafka_bootstrap, tmp_path, workers, healthy=False)
    kinds = {a.kind for a in alerts}
    assert {"estimated_performance", "slo_burn"} <= kinds, kinds
    quality = [a for a in alerts if a.kind in ("estimated_performance", "slo_burn")]
    assert all(a.window.start >= t0 + SHIFT_AT for a in quality), [(a.kind, a.window.start - t0) for a in quality]
    slo = next(a for a in alerts if a.kind == "slo_burn")
    assert slo.feature == "fast" and slo.score > 1.2  # the configured factor
    assert m['driftloop_estimate_abs_error{model="m",model_version="1"}'] <= ESTIMATE_ERROR
    assert m["driftloop_estimate_error_count"] >= 8
    assert m["driftloop_estimate_error_sum"] / m["driftloop_estimate_error_count"] <= ESTIMATE_ERROR


def test_no_quality_alert_on_the_healthy_stream_on_the_broker(kafka_bootstrap, tmp_path, workers):
    alerts, m, _ = _run(kafka_bootstrap, tmp_path, workers, healthy=True)
    assert not [a for a in alerts if a.kind in ("estimated_performance", "slo_burn", "performance")], alerts
    assert m["driftloop_estimate_error_count"] >= 8
    assert m["driftloop_estimate_error_sum"] / m["driftloop_estimate_error_count"] <= ESTIMATE_ERROR
