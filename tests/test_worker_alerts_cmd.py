"""`driftloop alerts` formatting and deduplication (pure parts; the command itself reads Kafka)."""

from __future__ import annotations

import dataclasses

from streams.cli.alerts import dedupe, format_alert
from streams.contracts.events import Alert, AlertReference, AlertWindow


def _alert(feature="amount", start=1764115350.0, score=3.2):
    return Alert("fraud", "1", "data_drift", feature, "wasserstein", score, 0.25, 2e-76, "critical",
                 AlertWindow(start, start + 10.0, 500), AlertReference("ref-1", 5000))


def test_redelivered_alerts_are_printed_once():
    a, b = _alert(), _alert("hour")
    again = dataclasses.replace(a, emitted_at=a.emitted_at + 5)  # same finding re-sent after a crash
    out = list(dedupe([a.to_json().encode(), b.to_json().encode(), again.to_json().encode(), b"not json"]))
    assert [x.alert_id for x in out if isinstance(x, Alert)] == [a.alert_id, b.alert_id]
    assert isinstance(out[-1], str) and "unreadable" in out[-1]


def test_readable_line_names_the_finding():
    line = format_alert(dataclasses.replace(_alert(), explained_by="p-1"))
    assert line.startswith("2025-11-26 00:02:30Z")
    for part in ("CRITICAL", "data_drift", "fraud/v1", "amount", "wasserstein=3.2", "window 10s n=500", "explained by p-1"):
        assert part in line


def test_readable_line_names_the_reference_and_the_live_gates_reason():
    a = dataclasses.replace(_alert(), kind="rollback", details={"reason": "v2 watched against its parent v1: worse"})
    line = format_alert(a)
    assert "reference ref-1" in line and line.endswith("\n    why: v2 watched against its parent v1: worse")
