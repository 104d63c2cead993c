"""What a fault test counts, and how a run of the fault suite reports it (tests/test_faults.py, bench/faults_report.py).

A fault run is compared with the no-fault reference run on the same traffic:

* inputs counted once: the ``n`` of every judged window (the worker logs one line per judged window,
  so what a killed worker judged is not lost with its metrics) equals the reference's; a window judged
  again after a restart must count the same ``n``;
* events lost: the reference's judged events minus the fault run's (0 expected);
* alerts duplicated: distinct alert ids the reference run does not have (0 expected; a consumer dedupes by
  ``alert_id``, so a re-sent record of the same id is no duplicate, only counted as ``resent``);
* alerts missing: reference alert ids the fault run lacks (0 expected).

``DRIFTLOOP_FAULTS_OUT``: a JSON-lines file each fault test appends its :class:`FaultOutcome` to.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterable

_JUDGED = re.compile(r'judged window (.+?) of (".*?") v(".*?") \((\w+)\): n=(\d+)')


def judged_windows(logs: Iterable[Path]) -> dict[tuple[str, str, str, str], list[int]]:
    """Every judged window in the worker logs: (window, model, version, stream) -> the n of each time it was judged."""
    out: dict[tuple[str, str, str, str], list[int]] = {}
    for path in logs:
        for m in _JUDGED.finditer(path.read_text(errors="replace")):
            w, model, version, stream, n = m.groups()
            out.setdefault((w, json.loads(model), json.loads(version), stream), []).append(int(n))
    return out


@dataclasses.dataclass(frozen=True)
class Counts:
    """A fault run against the reference run (see the module docstring)."""

    produced: int
    windows: int
    windows_rejudged: int  # judged again after a restart (with the same n: not a double count)
    windows_differing: int  # n differs from the reference, or judged twice with different n
    events_counted: int
    events_lost: int
    events_double: int
    alerts: int
    alerts_duplicated: int
    alerts_missing: int
    alerts_resent: int  # raw alert records beyond one per id (consumers dedupe them)
    differing: tuple = ()  # the first windows whose n differs: (window, reference n, the n(s) judged)

    @classmethod
    def compare(cls, produced: int, ref_windows: dict, windows: dict, ref_alerts: Iterable[str],
                alert_ids: Iterable[str], raw_alerts: int) -> "Counts":
        counted = {k: ns[0] for k, ns in windows.items()}
        ref = {k: ns[0] for k, ns in ref_windows.items()}
        odd = [k for k, ns in windows.items() if len(set(ns)) > 1 or ref.get(k) != ns[0]]
        odd += [k for k in ref if k not in windows]
        differing = len(odd)
        lost = sum(max(0, n - counted.get(k, 0)) for k, n in ref.items())
        double = sum(max(0, n - ref.get(k, 0)) for k, n in counted.items())
        ids, ref_ids = set(alert_ids), set(ref_alerts)
        return cls(produced, len(counted), sum(1 for ns in windows.values() if len(ns) > 1), differing,
                   sum(counted.values()), lost, double, len(ids), len(ids - ref_ids), len(ref_ids - ids),
                   raw_alerts - len(ids), tuple((k[0], ref.get(k), windows.get(k)) for k in sorted(odd)[:5]))


@dataclasses.dataclass
class FaultOutcome:
    """One row of the fault table."""

    fault: str
    expectation: str
    happened: str
    counts: Counts | None = None
    recover_s: float | None = None  # from the fault's end until the worker had read everything produced
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def record(outcome: FaultOutcome) -> None:
    """Append ``outcome`` to ``$DRIFTLOOP_FAULTS_OUT`` (nothing when unset)."""
    path = os.environ.get("DRIFTLOOP_FAULTS_OUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(outcome.to_dict()) + "\n")


class Feeder(threading.Thread):
    """Produces ``records`` to ``topic`` at about ``rate`` records/s in the background (acks=all, idempotent),
    counting acknowledged and failed sends; survives broker failures and pauses by retrying."""

    def __init__(self, bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], rate: float,
                 chunk: int = 100) -> None:
        super().__init__(daemon=True, name=f"feeder-{topic}")
        self.bootstrap, self.topic, self.records, self.rate, self.chunk = bootstrap, topic, records, rate, chunk
        self.acked = self.failed = 0
        self.errors: list[str] = []
        self.sent = 0
        self._lock = threading.Lock()

    def _ok(self, _meta: Any) -> None:
        with self._lock:
            self.acked += 1

    def _err(self, exc: BaseException) -> None:
        with self._lock:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(repr(exc))

    def run(self) -> None:
        from kafka import KafkaProducer

        p = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
                          delivery_timeout_ms=300_000, request_timeout_ms=20_000, max_block_ms=300_000,
                          reconnect_backoff_max_ms=1000)
        t0 = time.monotonic()
        try:
            for i in range(0, len(self.records), self.chunk):
                for key, value in self.records[i:i + self.chunk]:
                    p.send(self.topic, value, key=key).add_callback(self._ok).add_errback(self._err)
                self.sent = min(len(self.records), i + self.chunk)
                ahead = self.sent / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            p.flush(timeout=300)
        finally:
            p.close(timeout=30)

    def finish(self, timeout_s: float = 360.0) -> None:
        self.join(timeout_s)
        if self.is_alive():
            raise AssertionError(f"the producer did not finish within {timeout_s} s ({self.acked} acked)")
        if self.failed or self.acked != len(self.records):
            raise AssertionError(f"produced {self.acked} of {len(self.records)}; {self.failed} failed: {self.errors}")
