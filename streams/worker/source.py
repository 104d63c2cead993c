"""Source side of the worker: one inputs partition's watermark and open window accumulators.

An event is *late* when every window it belongs to has already closed in its partition
(``window.end + allowed_lateness <= watermark`` before the event); late events are returned to the
caller (dead-lettered with reason ``late``), never dropped silently.  When the watermark passes a
window's end plus the allowed lateness, the window closes and its *partial* accumulator goes to the
aggregator.  Lateness is decided event by event in offset order, so the result does not depend on
how the stream was cut into micro-batches.  Without a reference profile the raw rows are shipped
instead (the aggregator bootstraps the reference from them).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from streams.contracts.events import InferenceEvent, model_version_of
from streams.worker.state import (
    INPUTS,
    EnginePort,
    Geometry,
    compact_event,
    mv_key,
    mv_parts,
    partial_record,
    rows_record,
    win_parse,
    win_str,
)

_SECOND = operator.itemgetter(1)


@dataclass
class InputOutcome:
    accepted: int = 0
    skipped: int = 0  # already in state (replay after restart)
    late: list[tuple[int, InferenceEvent]] = field(default_factory=list)
    records: list[tuple[str, dict]] = field(default_factory=list)  # (mv key, record) for the internal topic
    closed: list[tuple[str, str, int]] = field(default_factory=list)  # (mv, window, n) closed now
    watermark_moved: bool = False


class SourceState:
    """State of one source partition of the inputs topic (JSON via to_dict/from_dict)."""

    def __init__(self, partition: int, d: Mapping[str, Any] | None = None) -> None:
        d = d or {}
        self.partition = partition
        self.offset: int = int(d.get("offset", -1))
        self.wm: float | None = d.get("wm")
        # mv -> window -> {"mode": "acc"|"rows", "n": int, "acc": dict|None}
        self.open: dict[str, dict[str, dict[str, Any]]] = {k: dict(v) for k, v in (d.get("open") or {}).items()}
        self.late: int = int(d.get("late", 0))
        self.events: int = int(d.get("events", 0))
        self._live: dict[tuple[str, str], Any] = {}  # decoded accumulators (cache)

    def to_dict(self, port: EnginePort | None = None) -> dict[str, Any]:
        for (mv, w), acc in self._live.items():
            entry = self.open.get(mv, {}).get(w)
            if entry is not None:
                entry["acc"] = acc.to_dict()
        return {"offset": self.offset, "wm": self.wm, "open": self.open, "late": self.late, "events": self.events}

    def _acc(self, port: EnginePort, mv: str, w: str) -> Any:
        key = (mv, w)
        acc = self._live.get(key)
        if acc is None:
            entry = self.open[mv][w]
            acc = port.acc_from_dict(entry["acc"]) if entry.get("acc") else None
            if acc is not None:
                self._live[key] = acc
        return acc

    def ingest(
        self,
        batch: Sequence[tuple[int, InferenceEvent]],
        geom: Geometry,
        port: EnginePort,
        get_profile: Callable[[str, str], Any],
        max_rows_per_message: int = 500,
        mv: tuple[str, str] | None = None,
    ) -> InputOutcome:
        """Add a micro-batch of (offset, event) of this partition, in offset order (``mv``: the (model, version) of
        every event, when the caller knows there is one only)."""
        out = InputOutcome()
        done = self.offset
        fresh = batch if not batch or batch[0][0] > done else [(o, e) for o, e in batch if o > done]
        out.skipped = len(batch) - len(fresh)
        if not fresh:
            return out
        ts = np.fromiter((e.ts for _, e in fresh), dtype=float, count=len(fresh))
        wm0 = -math.inf if self.wm is None else float(self.wm)
        before = np.maximum.accumulate(np.concatenate([[wm0], ts]))[:-1]  # watermark before each event
        late_mask = geom.last_end(ts) + geom.lateness <= before
        # segments of constant "closed set": windows close when the watermark crosses end + lateness
        seg = np.floor((before - geom.lateness - geom.size) / geom.hop)
        seg[np.isinf(before)] = -np.inf
        rows_out: dict[tuple[str, str], list[list[Any]]] = {}
        n = len(fresh)
        cuts = (np.flatnonzero(seg[1:] != seg[:-1]) + 1).tolist()
        any_late = bool(late_mask.any())
        for start, stop in zip([0, *cuts], [*cuts, n]):
            wm_seg = before[start]
            if any_late and late_mask[start:stop].any():
                out.late.extend(fresh[i] for i in np.flatnonzero(late_mask[start:stop]) + start)
                items = [fresh[i] for i in np.flatnonzero(~late_mask[start:stop]) + start]
            else:
                items = fresh[start:stop]
            if items:
                wm = None if math.isinf(wm_seg) else float(wm_seg)
                self._add(port, geom, items, wm, get_profile, rows_out, out, mv)
        self.late += len(out.late)
        out.accepted = n - len(out.late)
        self.events += out.accepted
        new_wm = float(max(wm0, float(ts.max())))
        out.watermark_moved = self.wm is None or new_wm > self.wm
        self.wm = new_wm
        self.offset = fresh[-1][0]
        for (mv, w), rows in rows_out.items():
            m, v = mv_parts(mv)
            for i in range(0, len(rows), max_rows_per_message):
                out.records.append((mv, rows_record(self.partition, m, v, w, rows[i : i + max_rows_per_message])))
        self._close(geom, out)
        return out

    def _add(self, port, geom, items, wm_seg, get_profile, rows_out, out, mv=None) -> None:
        by_mv: dict[str, list[tuple[int, InferenceEvent]]] = {}
        keys = {mv} if mv is not None else set(map(model_version_of, map(_SECOND, items)))
        single = None  # the (model, version) of every item, when there is one only
        if len(keys) == 1:  # the usual micro-batch: one model version
            single = keys.pop()
            by_mv[mv_key(*single)] = items
        else:
            for o, e in items:
                by_mv.setdefault(mv_key(e.model, e.model_version), []).append((o, e))
        for mv, evs in by_mv.items():
            m, v = mv_parts(mv)
            windows = self.open.setdefault(mv, {})
            profile = get_profile(m, v)
            if profile is not None:
                parts = port.accumulate(profile, list(map(_SECOND, evs)), mv=single)
                for key, acc in parts.items():
                    w = win_str(key.start, key.end)
                    if geom.closed(key.end, wm_seg):
                        continue  # hopping windows: this window closed before these events (counted via late rules)
                    entry = windows.get(w)
                    if entry is None:
                        windows[w] = {"mode": "acc", "n": int(acc.n), "acc": None}
                        self._live[(mv, w)] = acc
                    elif entry["mode"] == "acc":
                        cur = self._acc(port, mv, w)
                        if cur is None:
                            self._live[(mv, w)] = acc
                        else:
                            cur.merge(acc)
                        entry["n"] += int(acc.n)
                    else:  # window opened in rows mode before the profile existed: keep shipping rows
                        self._rows(mv, w, evs, key, rows_out, entry)
            else:
                ts = np.fromiter((e.ts for _, e in evs), dtype=float, count=len(evs))
                base = np.floor(ts / geom.hop).astype(np.int64)
                per = int(round(geom.size / geom.hop))
                for j in range(per):
                    starts = (base - j) * geom.hop
                    for s in np.unique(starts):
                        end = float(s) + geom.size
                        if geom.closed(end, wm_seg):
                            continue
                        w = win_str(float(s), end)
                        sel = [evs[i] for i in np.flatnonzero(starts == s)]
                        entry = windows.setdefault(w, {"mode": "rows", "n": 0, "acc": None})
                        if entry["mode"] == "rows":
                            rows_out.setdefault((mv, w), []).extend([o, compact_event(e)] for o, e in sel)
                            entry["n"] += len(sel)
                        else:  # acc mode but profile vanished: should not happen; ship rows
                            rows_out.setdefault((mv, w), []).extend([o, compact_event(e)] for o, e in sel)
                            entry["n"] += len(sel)

    def _rows(self, mv, w, evs, key, rows_out, entry) -> None:
        sel = [(o, e) for o, e in evs if key.start <= e.ts < key.end]
        rows_out.setdefault((mv, w), []).extend([o, compact_event(e)] for o, e in sel)
        entry["n"] += len(sel)

    def _close(self, geom: Geometry, out: InputOutcome) -> None:
        for mv in sorted(self.open):
            windows = self.open[mv]
            m, v = mv_parts(mv)
            for w in sorted(windows, key=win_parse):
                start, end = win_parse(w)
                if not geom.closed(end, self.wm):
                    continue
                entry = windows.pop(w)
                acc = self._live.pop((mv, w), None)
                acc_d = acc.to_dict() if acc is not None else entry.get("acc")
                out.records.append((mv, partial_record(self.partition, INPUTS, m, v, w, entry["mode"], entry["n"],
                                                       acc_d if entry["mode"] == "acc" else None)))
                out.closed.append((mv, w, entry["n"]))
            if not windows:
                del self.open[mv]
