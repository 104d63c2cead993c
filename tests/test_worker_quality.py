"""The quality alert kinds come out of the worker (tests/worker_harness.py) and out of backtest alike.

Traffic: the synthetic binary classifier of tests/test_quality_estimate.py (over-confident scores,
calibrated by the reference's labelled scores): 40 s healthy, then 60 s squeezed towards the
decision boundary (accuracy about 0.80 -> 0.62, no change of concept).  The objective (accuracy 0.75,
budget 25%) with a short burn rate (factor 1.2 over 36 s and 18 s of event time) burns only on the
squeezed traffic.
"""

from __future__ import annotations

import io
import json

from streams.cli.backtest import replay
from streams.config import section
from streams.judge.drift_config import DriftConfig
from streams.judge.slo import SloConfig
from tests.test_quality_estimate import _reference, _stream
from tests.worker_harness import Harness

SLO = {"objectives": [{"model": "m", "metric": "accuracy", "target": 0.75}], "min_labelled": 100,
       "burn_rates": {"fast": {"long_h": 0.01, "short_h": 0.005, "factor": 1.2}}}
SHIFT_AT = 40.0


def _traffic(t0: float):
    healthy, _, _ = _stream(4000, 1.0, 31, 6.0, t0=t0)
    shifted, _, _ = _stream(6000, 0.3, 32, 6.0, t0=t0 + SHIFT_AT, prefix="s")
    _, hl, _ = _stream(4000, 1.0, 31, 6.0, t0=t0)
    _, sl, _ = _stream(6000, 0.3, 32, 6.0, t0=t0 + SHIFT_AT, prefix="s")
    inputs = [e.to_dict() for e in healthy + shifted]
    labels = [{"event_id": x.event_id, "model": "m", "ts": x.ts + 1.0, "label": x.label} for x in hl + sl]
    return inputs, labels


def test_worker_emits_estimated_performance_and_slo_burn_and_exports_their_gauges(tmp_path):
    h = Harness(tmp_path, partitions=2, drift={"window_seconds": 10, "min_samples": 500},
                worker={"label_ttl_s": 20.0}, slo=SLO)
    h.register(_reference(6.0)[0])
    t0 = float(int(h.now) // 10 * 10) - 3600.0
    inputs, labels = _traffic(t0)
    h.produce("inputs", inputs)
    h.produce("labels", labels)
    h.drain(max_records=500)
    alerts = list(h.alerts().values())
    kinds = {a.kind for a in alerts}
    assert {"estimated_performance", "slo_burn"} <= kinds, kinds
    for a in alerts:
        if a.kind in ("estimated_performance", "slo_burn"):
            assert a.window.start >= t0 + SHIFT_AT, (a.kind, a.window.start - t0)
    slo = next(a for a in alerts if a.kind == "slo_burn")
    assert slo.feature == "fast" and slo.details["metrics"]["objective_target"] == 0.75
    assert h.metric("driftloop_slo_objective", model="m", metric="accuracy") == 0.75
    assert 0.5 < h.metric("driftloop_estimated_accuracy", model="m", model_version="1") < 0.7
    assert h.metric("driftloop_estimate_abs_error", model="m", model_version="1") <= 0.05
    assert h.metric("driftloop_estimate_error_count", model="m") >= 8
    assert h.metric("driftloop_slo_burn_rate", model="m", model_version="1", burn_rate="fast", span="long") > 1.2


def test_backtest_emits_the_same_quality_kinds(tmp_path):
    prof = _reference(6.0)[0]
    inputs, labels = _traffic(1_000_000.0)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(e) + "\n" for e in inputs))
    (tmp_path / "lab.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    out, err, recs = io.StringIO(), io.StringIO(), []
    summary = replay(tmp_path / "in.jsonl", out, DriftConfig(window_seconds=10, min_samples=500), [prof],
                     tmp_path / "lab.jsonl", err, progress=False, slo=section(SloConfig, SLO, "slo"),
                     quality_observer=recs.append)
    kinds = {json.loads(line)["kind"] for line in out.getvalue().splitlines()}
    assert {"estimated_performance", "slo_burn"} <= kinds, kinds
    assert summary["estimate_windows_checked"] == 10 and summary["estimate_mean_abs_error"] <= 0.03
    assert {r["type"] for r in recs} == {"estimate", "realised", "estimate_error", "slo"}
