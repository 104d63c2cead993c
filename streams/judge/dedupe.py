"""Bounded de-duplication of events by ``event_id`` (pure numpy; no Kafka).

A producer retry delivers the same event twice (same ``event_id``); counted twice it
inflates a window (``n = 750`` for 500 distinct events) and can raise a false alarm.
:class:`EventDedup` remembers the ids seen recently, in event time, and keeps only first
occurrences.

Memory is bounded by event time, not by count: an id is remembered until the watermark
(the largest event time seen) passes ``its event time + horizon_s``; ids behind that are
expired.  Choose ``horizon_s`` >= window length + allowed lateness (+ the producer's retry
delay), so that a duplicate of an event of an open window is always recognised.  A
duplicate arriving later than that is past its (closed) window anyway and is counted as
late by the engine, not twice in a window.

>>> d = EventDedup(horizon_s=60.0)
>>> d.first_occurrences(["a", "b", "a"], [0.0, 1.0, 0.0]).tolist()
[True, True, False]
>>> d.first_occurrences(["b", "c"], [1.0, 2.0]).tolist()
[False, True]
>>> d.first_occurrences(["z"], [1000.0]).tolist(); len(d)    # the watermark expired a, b, c
[True]
1
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Mapping, Sequence

import numpy as np


class EventDedup:
    """First-occurrence mask of event ids over a sliding event-time horizon.

    State: ``seen`` {event_id: event time}, a min-heap of (event time, event_id) for expiry,
    and the watermark.  Memory O(ids whose event time is within ``horizon_s`` of the watermark).
    :meth:`first_occurrences` costs O(n) dictionary operations for a batch of n events plus
    O(k log m) to expire k of the m remembered ids.
    """

    def __init__(self, horizon_s: float, max_ids: int | None = None) -> None:
        """``horizon_s``: seconds of event time an id is remembered behind the watermark (> 0).
        ``max_ids``: optional hard cap; beyond it the oldest ids are forgotten first (and counted
        in ``evicted``), so memory stays bounded even when event times do not advance."""
        if not horizon_s > 0:
            raise ValueError(f"horizon_s must be > 0, got {horizon_s}")
        self.horizon_s = float(horizon_s)
        self.max_ids = max_ids
        self.seen: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self.watermark = -math.inf
        self.duplicates = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.seen)

    def first_occurrences(self, event_ids: Sequence[Any], ts: Sequence[float] | np.ndarray) -> np.ndarray:
        """(n,) bool mask: True for the first occurrence of each id (within the batch and the horizon).

        ``event_ids``: (n,) ids (compared as ``str``); ``ts``: (n,) event times in seconds.
        Raises ValueError when the lengths differ.
        """
        ts = np.asarray(ts, dtype=float)
        n = len(event_ids)
        if len(ts) != n:
            raise ValueError(f"{n} event ids but {len(ts)} event times")
        keep = np.ones(n, dtype=bool)
        seen = self.seen
        for i, (eid, t) in enumerate(zip(event_ids, ts.tolist())):
            key = str(eid)
            if key in seen:
                keep[i] = False
                continue
            seen[key] = t
            heapq.heappush(self._heap, (t, key))
        self.duplicates += int(n - keep.sum())
        if n:
            self.watermark = max(self.watermark, float(ts.max()))
        self._expire()
        return keep

    def _expire(self) -> None:
        limit = self.watermark - self.horizon_s
        heap, seen = self._heap, self.seen
        while heap and (heap[0][0] < limit or (self.max_ids is not None and len(seen) > self.max_ids)):
            t, key = heapq.heappop(heap)
            if seen.get(key) == t:
                del seen[key]
                if t >= limit:
                    self.evicted += 1

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe snapshot (ids and their event times, watermark, counters)."""
        return {"horizon_s": self.horizon_s, "max_ids": self.max_ids, "seen": dict(self.seen),
                "watermark": None if math.isinf(self.watermark) else self.watermark,
                "duplicates": self.duplicates, "evicted": self.evicted}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.horizon_s = float(d.get("horizon_s", self.horizon_s))
        self.max_ids = d.get("max_ids", self.max_ids)
        self.seen = {str(k): float(v) for k, v in (d.get("seen") or {}).items()}
        self._heap = [(t, k) for k, t in self.seen.items()]
        heapq.heapify(self._heap)
        wm = d.get("watermark")
        self.watermark = -math.inf if wm is None else float(wm)
        self.duplicates = int(d.get("duplicates", 0))
        self.evicted = int(d.get("evicted", 0))


__all__ = ["EventDedup"]
