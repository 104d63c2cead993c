"""Training data of a retrain request: the labelled examples of its event-time window.

Two sources, same result:

* the labelled-examples topic (``driftloop.labelled``), read with kafka-python from the
  offsets of ``window.start - skew`` (``offsets_for_times``) up to the end offsets seen
  when reading starts (labels arrive late, so the end is "now", not ``window.end``);
* a JSONL file of the same records (the offline path, tests, the GPU check).

Records are filtered by model and event time ``start <= ts < end`` (windows are half-open everywhere: an
example at ``end`` belongs to the next window, and may or may not be on the topic yet), deduplicated by
``event_id`` (Kafka delivers at least once) and invalid ones are counted, not used.

>>> rows = [{"event_id": "e1", "model": "m", "model_version": "1", "ts": 5, "features": {"x": 1}, "label": 1},
...         {"event_id": "e1", "model": "m", "model_version": "1", "ts": 5, "features": {"x": 1}, "label": 1},
...         {"event_id": "e2", "model": "other", "model_version": "1", "ts": 5, "features": {"x": 1}, "label": 0}]
>>> data = select(rows, "m", 0, 10)
>>> len(data), data.stats["duplicates"], data.stats["other_model"]
(1, 1, 1)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from streams.contracts.events import InvalidRecord, LabelledExample

log = logging.getLogger(__name__)


@dataclass
class WindowData:
    """Labelled examples of one model and window."""

    examples: list[LabelledExample] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    X: np.ndarray | None = None  # pre-encoded rows (``read_npz``): used instead of ``examples``
    y: np.ndarray | None = None  # their class indices

    def __len__(self) -> int:
        return len(self.examples) if self.X is None else int(self.X.shape[0])

    def features(self) -> list[dict[str, Any]]:
        return [e.features for e in self.examples]

    def labels(self) -> list[Any]:
        return [e.label for e in self.examples]


def select(records: Iterable[Mapping[str, Any] | bytes | str], model: str, start: float, end: float,
           max_examples: int | None = None) -> WindowData:
    """Filter raw records (dicts or JSON text) to the valid, unique examples of ``model`` in ``[start, end)``."""
    stats = {"read": 0, "invalid": 0, "other_model": 0, "outside_window": 0, "duplicates": 0, "truncated": 0}
    seen: set[str] = set()
    out: list[LabelledExample] = []
    for raw in records:
        stats["read"] += 1
        try:
            obj = raw if isinstance(raw, Mapping) else json.loads(raw)
            if not isinstance(obj, Mapping):
                raise InvalidRecord("not_object", "not a JSON object")
            ex = LabelledExample.from_dict(obj)
        except (InvalidRecord, ValueError, TypeError):
            stats["invalid"] += 1
            continue
        if ex.model != model:
            stats["other_model"] += 1
            continue
        if not (start <= ex.ts < end):
            stats["outside_window"] += 1
            continue
        if ex.event_id in seen:
            stats["duplicates"] += 1
            continue
        if max_examples is not None and len(out) >= max_examples:
            stats["truncated"] += 1
            continue
        seen.add(ex.event_id)
        out.append(ex)
    stats["selected"] = len(out)
    # the partitions of a topic interleave differently on every read: event-time order (ties by event id) makes the
    # training rows, and so the seeded train/held-out split and the candidate, the same on every run
    out.sort(key=lambda ex: (ex.ts, ex.event_id))
    return WindowData(out, stats)


def read_jsonl(path: str | Path, model: str, start: float, end: float, max_examples: int | None = None) -> WindowData:
    """Labelled examples of ``model`` in ``[start, end)`` from a JSONL file (one record per line)."""
    with open(path, "r", encoding="utf-8") as fh:
        return select((line for line in fh if line.strip()), model, start, end, max_examples)


def read_npz(path: str | Path, start: float, end: float, max_examples: int | None = None) -> WindowData:
    """Pre-encoded training data: ``X`` (rows x encoded columns), ``y`` (class indices), optional ``ts``.

    For large offline sets (the feature store export, the GPU check) where JSON is too slow.
    Rows are filtered to ``start <= ts < end`` when ``ts`` is present.  No pickles are loaded.
    """
    with np.load(path, allow_pickle=False) as z:
        X = np.asarray(z["X"], dtype=np.float32)
        y = np.asarray(z["y"], dtype=np.int64)
        ts = np.asarray(z["ts"], dtype=np.float64) if "ts" in z.files else None
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"{path}: X must be 2-D and y 1-D with one label per row, got {X.shape} and {y.shape}")
    keep = np.ones(len(y), dtype=bool) if ts is None else (ts >= start) & (ts < end)
    stats = {"read": int(len(y)), "outside_window": int((~keep).sum()), "truncated": 0}
    X, y = X[keep], y[keep]
    if max_examples is not None and len(y) > max_examples:
        stats["truncated"] = int(len(y) - max_examples)
        X, y = X[:max_examples], y[:max_examples]
    stats["selected"] = int(len(y))
    return WindowData([], stats, X, y)


def read_topic(bootstrap_servers: Any, topic: str, model: str, start: float, end: float, *,
               skew_s: float = 300.0, max_examples: int | None = None, timeout_s: float = 60.0) -> WindowData:
    """Labelled examples of ``model`` in ``[start, end)`` from a Kafka topic.

    Seeks every partition to the first message with a timestamp at or after
    ``start - skew_s`` and reads up to the end offsets of the moment reading starts.  ``bootstrap_servers``: an
    address or a :class:`streams.adapters.kafka_clients.KafkaConnection`.
    """
    from kafka import KafkaConsumer, TopicPartition

    from streams.adapters.kafka_clients import resolve

    consumer = KafkaConsumer(**resolve(bootstrap_servers).kafka_python(), enable_auto_commit=False, group_id=None,
                             client_id="driftloop-training-data", request_timeout_ms=30000)
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout_s
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RuntimeError(f"topic {topic!r} does not exist on {bootstrap_servers}; nothing to train on")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.offsets_for_times({tp: max(0, int((start - skew_s) * 1000)) for tp in tps})
        todo = {}
        for tp in tps:
            found = starts.get(tp)
            if found is None or found.offset >= ends[tp]:
                continue  # no message at or after the window start in this partition
            consumer.seek(tp, found.offset)
            todo[tp] = ends[tp]
        if not todo:
            return select([], model, start, end)
        consumer.pause(*[tp for tp in tps if tp not in todo])

        def records():
            while todo:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"reading {topic!r} took longer than {timeout_s:.0f}s; raise trainers.read_timeout_s"
                    )
                batch = consumer.poll(timeout_ms=500, max_records=5000)
                for tp, msgs in batch.items():
                    for m in msgs:
                        if tp in todo and m.offset < todo[tp]:
                            yield m.value
                for tp in list(todo):
                    if consumer.position(tp) >= todo[tp]:
                        del todo[tp]
                        consumer.pause(tp)

        return select(records(), model, start, end, max_examples)
    finally:
        consumer.close()


def label_key(label: Any) -> str:
    """Canonical text of a label: ``1``, ``1.0`` and ``"1"`` are the same class."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def encode_labels(labels: Sequence[Any], n_classes: int, classes: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class indices of ``labels`` and a mask of the rows whose label is known.

    With ``classes`` a label maps to its position there; without, labels must be the
    integers ``0 .. n_classes-1``.
    """
    if classes is not None:
        index = {label_key(c): i for i, c in enumerate(classes)}
    else:
        index = {str(i): i for i in range(n_classes)}
    idx = np.array([index.get(label_key(lbl), -1) for lbl in labels], dtype=np.int64)
    return idx, idx >= 0
