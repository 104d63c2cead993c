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

import math
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np


class EventDedup:
    """First-occurrence mask of event ids over a sliding event-time horizon.

    State: ``seen`` (the remembered ids), the ids in chunks of one batch each (sorted by event
    time, in arrival order) for expiry, and the watermark.  Memory O(ids whose event time is
    within ``horizon_s`` of the watermark).  A batch without repeats, the usual case, costs
    C-level set and dict operations only (no per-event Python loop); expiry drops the expired
    prefix of the oldest chunks.
    """

    def __init__(self, horizon_s: float, max_ids: int | None = None) -> None:
        """``horizon_s``: seconds of event time an id is remembered behind the watermark (> 0).
        ``max_ids``: optional hard cap; beyond it the oldest ids are forgotten first (and counted
        in ``evicted``), so memory stays bounded even when event times do not advance."""
        if not horizon_s > 0:
            raise ValueError(f"horizon_s must be > 0, got {horizon_s}")
        self.horizon_s = float(horizon_s)
        self.max_ids = max_ids
        self.seen: set[str] = set()
        self._chunks: deque[tuple[np.ndarray, list[str]]] = deque()  # (sorted event times, their ids)
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
        ids = event_ids if isinstance(event_ids, list) else list(event_ids)  # event ids are str (the contract)
        seen = self.seen
        if seen.isdisjoint(ids) and len(set(ids)) == n:  # no repeat: C-level checks only
            keep = np.ones(n, dtype=bool)
            new_ids, new_ts = ids, ts
        else:
            batch: set[str] = set()
            flags = [not (i in seen or i in batch or batch.add(i)) for i in ids]
            keep = np.fromiter(flags, dtype=bool, count=n)
            new_ids, new_ts = [i for i, k in zip(ids, flags) if k], ts[keep]
        if new_ids:
            if len(new_ts) > 1 and not bool((new_ts[1:] >= new_ts[:-1]).all()):  # an in-order batch needs no sort
                order = np.argsort(new_ts, kind="stable")
                new_ts, new_ids = new_ts[order], [new_ids[k] for k in order.tolist()]
            self._chunks.append((new_ts, list(new_ids)))
            seen.update(new_ids)
        self.duplicates += int(n - keep.sum())
        if n:
            self.watermark = max(self.watermark, float(ts.max()))
        self._expire()
        return keep

    def _expire(self) -> None:
        limit = self.watermark - self.horizon_s
        seen, chunks = self.seen, self._chunks
        while chunks:
            times, ids = chunks[0]
            cut = int(np.searchsorted(times, limit, side="left"))  # ids older than the horizon
            over = len(seen) - self.max_ids if self.max_ids is not None else 0
            if over > cut:  # the cap forgets the oldest ids still inside the horizon too
                self.evicted += min(over, len(ids)) - cut
                cut = min(over, len(ids))
            if cut == 0:
                return
            seen.difference_update(ids[:cut])
            if cut >= len(ids):
                chunks.popleft()
            else:
                chunks[0] = (times[cut:], ids[cut:])
                return

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe snapshot (ids and their event times, watermark, counters)."""
        return {"horizon_s": self.horizon_s, "max_ids": self.max_ids,
                "chunks": [[t.tolist(), ids] for t, ids in self._chunks],
                "watermark": None if math.isinf(self.watermark) else self.watermark,
                "duplicates": self.duplicates, "evicted": self.evicted}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.horizon_s = float(d.get("horizon_s", self.horizon_s))
        self.max_ids = d.get("max_ids", self.max_ids)
        chunks = [(np.asarray(t, dtype=float), [str(i) for i in ids]) for t, ids in d.get("chunks") or []]
        if "seen" in d:  # the earlier format: {event_id: event time}
            old = sorted(((float(t), str(i)) for i, t in d["seen"].items()))
            chunks = [(np.array([t for t, _ in old]), [i for _, i in old])] if old else []
        self._chunks = deque(chunks)
        self.seen = {i for _, ids in chunks for i in ids}
        wm = d.get("watermark")
        self.watermark = -math.inf if wm is None else float(wm)
        self.duplicates = int(d.get("duplicates", 0))
        self.evicted = int(d.get("evicted", 0))


__all__ = ["EventDedup"]
