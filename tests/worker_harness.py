"""An in-memory stand-in for Kafka and Faust that drives :class:`streams.worker.core.WorkerCore`.

Topics are lists per partition, tables are dicts whose writes are kept as a changelog (encoded
as the worker encodes them), consumer groups are committed offsets.  A test scripts batches,
ticks, restarts (a fresh core on the changelog, reading from the committed offsets) and
rebalances, and reads what the core sent, without a broker.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from streams.worker import state as ws
from streams.adapters.faust_app import load_settings
from streams.contracts.events import Alert
from streams.adapters.metrics import WorkerMetrics
from streams.worker.partitioners import murmur2_partition
from streams.adapters.reference_store import ReferenceStore
from streams.worker.core import WorkerCore
from streams.worker.effects import Effects


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class Topic:
    def __init__(self, n: int) -> None:
        self.parts: list[list[Rec]] = [[] for _ in range(n)]

    def append(self, key: bytes | None, value: bytes, partition: int | None = None) -> Rec:
        if partition is None:
            partition = murmur2_partition(key, len(self.parts)) if key else 0
        r = Rec(partition, len(self.parts[partition]), key, value)
        self.parts[partition].append(r)
        return r

    def all(self) -> list[Rec]:
        return [r for part in self.parts for r in part]


class Harness:
    """One worker group of one core, on in-memory topics and tables; see the module docstring."""

    def __init__(self, tmp: Path, partitions: int = 2, clock_start: float | None = None, **config: Any) -> None:
        raw = {"topics": {"partitions": partitions}, "drift": {"window_seconds": 10, "min_samples": 200}}
        for section, values in config.items():
            raw.setdefault(section, {}).update(values)
        raw.setdefault("worker", {}).setdefault("reference_dir", str(tmp / "references"))
        self.settings = load_settings(raw)
        self.n = partitions
        self.topics = {role: Topic(partitions) for role in ("inputs", "labels", "partials", "alerts", "labelled",
                                                           "retrain_requests", "inputs_dlq", "labels_dlq")}
        self.changelog: dict[str, dict[str, bytes | None]] = {"state": {}, "joins": {}}
        self.committed: dict[str, list[int]] = {t: [-1] * partitions for t in ("inputs", "labels", "partials")}
        self.now = time.time() if clock_start is None else clock_start  # the wall clock: bounds event times too
        self.refs = ReferenceStore(tmp / "references")
        self.paused: set[tuple[str, int]] = set()
        self.start()

    # -------------------------------------------------------------- the worker process
    def start(self) -> None:
        """A (re)started worker: a new core whose tables are read back from the changelog."""
        self.tables = {t: {k: ws.decode_state(v) for k, v in log.items() if v is not None}  # Faust's table recovery
                       for t, log in self.changelog.items()}
        self.metrics = WorkerMetrics()
        self.core = WorkerCore(self.settings, self.metrics, self.tables.__getitem__, self.refs, clock=lambda: self.now)
        self.read = {t: list(offs) for t, offs in self.committed.items()}  # next read positions - 1
        self.paused = set()

    def assigned(self) -> list[tuple[str, int]]:
        return [(self._name(t), p) for t in ("inputs", "labels") for p in range(self.n)]

    def backlog(self, topic: str, partition: int) -> bool | None:
        role = "inputs" if topic == self._name("inputs") else "labels"
        return len(self.topics[role].parts[partition]) - 1 > self.read[role][partition]

    def _name(self, role: str) -> str:
        return getattr(self.settings.topics, role)

    def apply(self, fx: Effects) -> None:
        for snd in [*fx.dead_letters, *fx.sends]:
            self.topics[snd.role].append(snd.key, snd.value, snd.partition)
        for w in fx.state:
            encoded = None if w.value is None else ws.encode_state(w.value)
            self.changelog[w.table][w.key] = encoded
            if w.value is None:
                self.tables[w.table].pop(w.key, None)
            else:
                self.tables[w.table][w.key] = w.value
        self.paused |= set(fx.pause)
        self.paused -= set(fx.resume)

    # -------------------------------------------------------------- producing and consuming
    def produce(self, role: str, events: Iterable[dict], partition: int | None = None) -> None:
        for e in events:
            value = e if isinstance(e, bytes) else json.dumps(e).encode()
            key = None if isinstance(e, bytes) else str(e.get("event_id")).encode()
            self.topics[role].append(key, value, partition)

    def poll(self, role: str, max_records: int) -> dict[int, list[Rec]]:
        """The next batch of ``role`` (inputs or labels): up to ``max_records`` per partition not paused."""
        out = {}
        for p in range(self.n):
            if (self._name(role), p) in self.paused:
                continue
            start = self.read[role][p] + 1
            recs = self.topics[role].parts[p][start : start + max_records]
            if recs:
                out[p] = recs
                self.read[role][p] = recs[-1].offset
        return out

    def step(self, role: str, max_records: int = 500, commit: bool = True) -> bool:
        batch = self.poll(role, max_records)
        if not batch:
            return False
        self.ensure_stores(batch)
        fx = self.core.on_inputs(batch, self) if role == "inputs" else self.core.on_labels(batch, self)
        self.apply(fx)
        if commit:
            for p, recs in batch.items():
                self.committed[role][p] = recs[-1].offset
        self.pump()
        return True

    def ensure_stores(self, partitions: Iterable[int]) -> None:
        """What the adapter does before a batch: read a join store back from the inputs topic when the core asks."""
        for p in partitions:
            rng = self.core.store_to_rebuild(p)
            if rng is not None:
                recs = self.topics["inputs"].parts[p][rng[0] : rng[1] + 1]
                self.core.install_store(p, [(r.offset, r.value) for r in recs])

    def pump(self) -> None:
        """Hand every unread record of the internal topic to the aggregator (as its agent does)."""
        while True:
            recs = []
            for q in range(self.n):
                start = self.read["partials"][q] + 1
                recs += [(q, r.offset, r.value) for r in self.topics["partials"].parts[q][start:]]
                self.read["partials"][q] = len(self.topics["partials"].parts[q]) - 1
            if not recs:
                return
            self.apply(self.core.on_partials(recs))
            for q in range(self.n):
                self.committed["partials"][q] = self.read["partials"][q]

    def drain(self, max_records: int = 500, labels_first: bool = False, ticks: bool = True) -> None:
        """Consume both topics until nothing is left (pacing may hold one back: ticks resume it)."""
        order = ("labels", "inputs") if labels_first else ("inputs", "labels")
        for _ in range(100_000):
            moved = False
            for role in order:
                moved = self.step(role, max_records) or moved
            if ticks:
                self.tick(0.0)
            if not moved and not any(self.backlog(self._name(r), p) for r in ("inputs", "labels") for p in range(self.n)):
                return
        raise AssertionError("the harness did not drain")

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.ensure_stores(range(self.n))
        self.apply(self.core.join_tick(self))
        self.apply(self.core.idle_tick(self))
        self.pump()

    # -------------------------------------------------------------- reading results
    def alerts(self) -> dict[str, Alert]:
        out: dict[str, Alert] = {}
        for r in self.topics["alerts"].all():
            a = Alert.from_dict(json.loads(r.value))
            out.setdefault(a.alert_id, a)
        return out

    def metric(self, name: str, **labels: str) -> float:
        v = self.metrics.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v

    def metric_sum(self, name: str) -> float:
        total = 0.0
        for fam in self.metrics.registry.collect():
            for s in fam.samples:
                if s.name == name:
                    total += s.value
        return total

    def register(self, profile: Any) -> None:
        self.refs.save(profile)


def per_partition(recs: Iterable[Rec]) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = defaultdict(list)
    for r in recs:
        out[r.partition].append(r)
    return out
