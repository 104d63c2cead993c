"""The label join: inputs stored per partition, labels joined by ``event_id`` within the label TTL.

Inputs and labels are keyed by ``event_id`` with the same partition count, so a label lands on the
partition of its input.  Labels that arrive before their input wait; a label whose input never
arrives is counted ``unknown`` once the inputs watermark has passed it; a second label for a joined
event is counted ``duplicate``.  Joined pairs feed labelled windows (performance and concept drift);
a pair is late only when its window was already sent.  The inputs topic is the store's changelog.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, MutableMapping, Sequence

import numpy as np

from streams.contracts.events import InferenceEvent, LabelEvent, LabelledExample
from streams.worker.state import (
    LABELS,
    EnginePort,
    Geometry,
    mv_key,
    mv_parts,
    partial_record,
    win_parse,
    win_str,
)


class InputStore:
    """Inputs waiting for their label, in chunks of one micro-batch, kept in memory.

    The inputs topic itself is the store's changelog (as Kafka Streams reuses a source topic for a
    table): a chunk is never written to Kafka again; after a restart or rebalance the worker reads
    the partition back from :meth:`first_offset` (persisted in the join state) and :meth:`rebuild`\ s
    the store.  This halves what the worker writes to Kafka; the inputs topic must retain at least
    two label TTLs of data.  ``kv`` (a dict in tests; a Faust-table view on the worker, where every
    write is a changelog record) holds one key per joined event (``m|<event_id>`` -> label offset).
    Chunks are ``{"max_ts", "first", "ids": [event_id...], "ts": [...], "events": [JSON bytes or event...]}``;
    everything per event is done by C-level list/dict operations: this store is on the hot path.
    """

    def __init__(self, kv: "MutableMapping[str, Any] | None" = None, max_chunk: int = 500) -> None:
        import heapq

        self.kv = {} if kv is None else kv
        self.max_chunk = max_chunk
        self.chunks: dict[str, dict[str, Any]] = {}
        self.index: dict[str, str] = {}
        self._pos: dict[str, dict[str, int]] = {}  # chunk key -> event_id -> position (built on first lookup)
        self._joined: set[str] = set()  # event ids with an ``m|`` key (no per-event lookups on expiry)
        self._heap: list[tuple[float, str]] = []
        for k in list(self.kv.keys()):
            if k.startswith("c|"):  # chunks written to the changelog by earlier driftloop versions
                chunk = self.kv.get(k)
                if chunk:
                    self.chunks[k] = chunk
                    self.index.update(dict.fromkeys(_chunk_ids(chunk), k))
                    heapq.heappush(self._heap, (float(chunk["max_ts"]), k))
            elif k.startswith("m|"):
                self._joined.add(k[2:])

    def has(self, event_id: str) -> bool:
        return event_id in self.index

    def add(self, first_offset: int, ids: Sequence[str], ts: Sequence[float], events: Sequence[InferenceEvent],
            raws: Sequence[bytes] | None = None) -> None:
        """Store inputs received from ``first_offset`` on (``ids``/``ts``/``events``/``raws`` aligned;
        ``raws``: their JSON bytes, kept instead of the parsed events: less memory, parsed again on a label)."""
        import heapq

        for i in range(0, len(ids), self.max_chunk):
            key = f"c|{first_offset}|{i}"
            part_ids = list(ids[i : i + self.max_chunk])
            part_ts = list(ts[i : i + self.max_chunk])
            stored = list((raws if raws is not None else events)[i : i + self.max_chunk])
            chunk = {"max_ts": max(part_ts), "first": first_offset, "ids": part_ids, "ts": part_ts, "events": stored}
            self.chunks[key] = chunk
            self.index.update(dict.fromkeys(part_ids, key))
            heapq.heappush(self._heap, (float(chunk["max_ts"]), key))

    def get(self, event_id: str) -> tuple[float, Any] | None:
        """(event time, event) of a stored input: its JSON bytes, an InferenceEvent, or (after a restart) a dict."""
        key = self.index.get(event_id)
        if key is None:
            return None
        chunk = self.chunks.get(key)
        if not chunk:
            return None
        if "rows" in chunk:  # chunks written by driftloop before this format
            row = chunk["rows"].get(event_id)
            return None if row is None else (float(row[0]), row[1])
        pos = self._pos.get(key)
        if pos is None:
            pos = self._pos[key] = dict(zip(chunk["ids"], range(len(chunk["ids"]))))
        i = pos.get(event_id)
        if i is None:
            return None
        return float(chunk["ts"][i]), chunk["events"][i]

    def joined(self, event_id: str) -> int | None:
        if event_id not in self._joined:
            return None
        v = self.kv.get(f"m|{event_id}")
        return None if v is None else int(v)

    def mark_joined(self, event_id: str, label_offset: int) -> None:
        self.kv[f"m|{event_id}"] = int(label_offset)
        self._joined.add(event_id)

    def expire(self, horizon: float) -> tuple[int, int]:
        """Drop chunks whose newest input is older than ``horizon``; returns (expired unjoined, expired joined)."""
        import heapq

        unjoined = joined = 0
        while self._heap and self._heap[0][0] < horizon:
            _, key = heapq.heappop(self._heap)
            chunk = self.chunks.pop(key, None)
            if not chunk:
                continue
            ids = list(_chunk_ids(chunk))
            index = self.index
            for eid in ids:
                if index.get(eid) == key:
                    del index[eid]
            done = self._joined.intersection(ids)
            for eid in done:
                self.kv.pop(f"m|{eid}", None)
            self._joined -= done
            joined += len(done)
            unjoined += len(ids) - len(done)
            if "rows" in chunk:
                self.kv.pop(key, None)  # an earlier version's changelog chunk
            self._pos.pop(key, None)
        return unjoined, joined

    def first_offset(self) -> int | None:
        """The inputs offset a rebuild must read from (the oldest stored chunk's first record).

        Chunks are added in offset order and ``chunks`` keeps insertion order, so it is the first one."""
        return next((c["first"] for c in self.chunks.values() if "first" in c), None)

    def rebuild(self, records: Iterable[tuple[int, bytes]]) -> int:
        """Store again the inputs of ``records`` ((offset, JSON bytes), offset order) after a restart.

        Records that are not valid inputs are skipped (they were dead-lettered when first read); late
        inputs (dead-lettered too) are stored again, so a label for one can join after a restart.
        Stored event ids are kept once.  Returns how many inputs were stored."""
        from streams.contracts.events import InvalidRecord
        from streams.contracts.validate import parse_input

        batch: list[tuple[int, InferenceEvent]] = []
        raws: list[bytes] = []
        n = 0
        for o, raw in records:
            try:
                e = parse_input(raw)
            except InvalidRecord:
                continue
            batch.append((o, e))
            raws.append(raw)
            if len(batch) >= self.max_chunk:
                n += self.add_new(batch, raws)
                batch, raws = [], []
        if batch:
            n += self.add_new(batch, raws)
        return n

    def add_new(self, batch: Sequence[tuple[int, InferenceEvent]], raws: Sequence[bytes] | None,
                checked: bool = False) -> int:
        """Add inputs whose event ids are not stored yet (the first of duplicates wins); ``checked``: the caller
        already dropped ids stored or repeated (the worker's de-duplication uses this store's index)."""
        events = [e for _, e in batch]
        ids = [e.event_id for e in events]
        if not checked and (not self.index.keys().isdisjoint(ids) or len(set(ids)) < len(ids)):
            seen: set[str] = set()
            keep = [i for i, eid in enumerate(ids) if not (eid in self.index or eid in seen or seen.add(eid))]
            batch = [batch[i] for i in keep]
            events = [events[i] for i in keep]
            ids = [ids[i] for i in keep]
            raws = None if raws is None else [raws[i] for i in keep]
        if ids:
            self.add(batch[0][0], ids, [e.ts for e in events], events, raws)
        return len(ids)

    def __len__(self) -> int:
        return len(self.index)


def _chunk_ids(chunk: Mapping[str, Any]) -> Iterable[str]:
    return chunk["ids"] if "ids" in chunk else chunk["rows"].keys()


@dataclass
class JoinOutcome:
    pairs: list[LabelledExample] = field(default_factory=list)
    matched: int = 0
    duplicate: int = 0
    unknown: int = 0  # labels whose input never arrived (counted once the inputs watermark passed them)
    waiting: int = 0  # labels held until their input arrives
    expired_inputs: int = 0  # inputs whose label never arrived within the TTL
    too_late: int = 0  # labels that arrived more than the TTL after their input
    skipped: int = 0
    records: list[tuple[str, dict]] = field(default_factory=list)  # (mv key, partial record) of closed labelled windows
    late_pairs: int = 0
    watermark: float | None = None  # labelled-window watermark (input event time) of this partition


class JoinState:
    """Label-join state of one partition: stored inputs, waiting labels, open labelled windows.

    Inputs are stored by the inputs agent (:meth:`store_inputs`), labels processed by the
    labels agent (:meth:`ingest_labels`).  Labelled windows are windows of the *input*
    event time; one closes when the label watermark has passed its end plus the TTL and
    the allowed lateness, and the inputs watermark has passed its end plus the lateness.
    """

    def __init__(self, partition: int, d: Mapping[str, Any] | None = None) -> None:
        d = d or {}
        self.partition = partition
        self.offset: int = int(d.get("offset", -1))  # labels topic offset
        self.in_offset: int = int(d.get("in_offset", -1))  # inputs topic offset stored
        self.store_from: int | None = d.get("store_from")  # first inputs offset still in the store (rebuild from here)
        self.label_wm: float | None = d.get("label_wm")
        self.input_wm: float | None = d.get("input_wm")
        self.waiting: list[list[Any]] = [list(x) for x in d.get("waiting") or []]  # [label offset, label dict]
        self.open: dict[str, dict[str, dict[str, Any]]] = {k: dict(v) for k, v in (d.get("open") or {}).items()}
        self.counts: dict[str, int] = dict(d.get("counts") or {})
        # labelled watermark of the last close(): windows ending at or before it were sent; a pair of one is late
        self.closed_wm: float | None = d.get("closed_wm")
        self._live: dict[tuple[str, str], Any] = {}  # decoded open accumulators (encoded when the state is written)

    def to_dict(self) -> dict[str, Any]:
        for (mv, w), acc in self._live.items():
            entry = self.open.get(mv, {}).get(w)
            if entry is not None:
                entry["acc"] = acc.to_dict()
        return {"offset": self.offset, "in_offset": self.in_offset, "store_from": self.store_from,
                "label_wm": self.label_wm, "input_wm": self.input_wm, "closed_wm": self.closed_wm,
                "waiting": self.waiting, "open": self.open, "counts": self.counts}

    def _count(self, name: str, k: int = 1) -> None:
        if k:
            self.counts[name] = self.counts.get(name, 0) + k

    def store_inputs(self, store: "InputStore", batch: Sequence[tuple[int, InferenceEvent]], input_wm: float | None,
                     raws: Sequence[bytes] | None = None, ttl: float | None = None, labels_behind: bool = False,
                     checked: bool = False) -> int:
        """Remember accepted inputs (offset order) for joining; ``raws``: their JSON bytes (stored as they are).

        ``labels_behind``: the labels partition has records not read yet (a backlog), so no input leaves
        before the labels read so far have passed it by the TTL (its label may be in the backlog)."""
        if batch and batch[0][0] <= self.in_offset:  # replayed after a restart: already stored
            keep = [i for i, (o, _) in enumerate(batch) if o > self.in_offset]
            batch = [batch[i] for i in keep]
            raws = None if raws is None else [raws[i] for i in keep]
        stored = store.add_new(batch, raws, checked)
        if batch:
            self.in_offset = max(self.in_offset, batch[-1][0])
        if ttl is not None and input_wm is not None:
            # without labels (or labels late in the real world), inputs still leave after two TTLs of input event time
            horizon = input_wm - 2 * ttl
            if labels_behind:
                horizon = min(horizon, self.label_wm - ttl if self.label_wm is not None else -math.inf)
            if self.waiting:  # labels read before their inputs: those inputs stay until the labels are retried
                horizon = min(horizon, min(float(lab["ts"]) for _, lab in self.waiting) - ttl)
            unjoined, _ = store.expire(horizon)
            self._count("expired_inputs", unjoined)
        if input_wm is not None and (self.input_wm is None or input_wm > self.input_wm):
            self.input_wm = input_wm
        self.store_from = store.first_offset()
        return stored

    def labelled_wm(self, ttl: float) -> float | None:
        if self.label_wm is None or self.input_wm is None:
            return None
        return min(self.label_wm - ttl, self.input_wm)

    def ingest_labels(
        self,
        store: "InputStore",
        batch: Sequence[tuple[int, LabelEvent]],
        geom: Geometry,
        ttl: float,
        port: EnginePort,
        get_profile: Callable[[str, str], Any],
    ) -> JoinOutcome:
        """Join a micro-batch of (offset, label) in offset order; also retry waiting labels and expire."""
        out = JoinOutcome()
        fresh = [(o, lab) for o, lab in batch if o > self.offset]
        out.skipped = len(batch) - len(fresh)
        for o, lab in fresh:
            if self.label_wm is None or lab.ts > self.label_wm:
                self.label_wm = lab.ts
            self._join_one(store, o, lab.to_dict(), ttl, out)
            self.offset = o
        self.retry(store, geom, ttl, out)
        self._accumulate(out, geom, ttl, port, get_profile)
        return out

    def retry(self, store: "InputStore", geom: Geometry, ttl: float, out: JoinOutcome) -> None:
        """Join waiting labels whose input has arrived; count as unknown those whose input cannot arrive any more."""
        still = []
        for o, lab in self.waiting:
            rec = store.get(lab["event_id"])
            if rec is not None:
                self._pair(store, o, lab, rec, ttl, out)
            elif self.input_wm is not None and float(lab["ts"]) + geom.lateness < self.input_wm:
                out.unknown += 1
            else:
                still.append([o, lab])
        self.waiting = still
        out.waiting = len(still)
        # expire stored inputs whose label can no longer arrive
        if self.label_wm is not None:
            unjoined, _ = store.expire(self.label_wm - ttl - geom.lateness)
            out.expired_inputs += unjoined

    def _join_one(self, store: "InputStore", o: int, lab: dict, ttl: float, out: JoinOutcome) -> None:
        rec = store.get(lab["event_id"])
        if rec is None:
            self.waiting.append([o, lab])
            return
        self._pair(store, o, lab, rec, ttl, out)

    def _pair(self, store: "InputStore", o: int, lab: dict, rec: tuple[float, Any], ttl: float, out: JoinOutcome) -> None:
        from streams.contracts.validate import parse_input

        eid = lab["event_id"]
        lo = store.joined(eid)
        if lo is not None and lo != o:
            out.duplicate += 1
            return
        ts, ev = rec
        if float(lab["ts"]) - ts > ttl:
            out.too_late += 1
            return
        store.mark_joined(eid, o)
        out.matched += 1
        e = ev if isinstance(ev, InferenceEvent) else parse_input(ev.encode() if isinstance(ev, str) else ev)  # bytes: fast path
        out.pairs.append(LabelledExample(e.event_id, e.model, e.model_version, e.ts, e.features, lab["label"],
                                         e.prediction, e.scores, e.entity, None if e.shadow is None else e.shadow.to_dict()))

    def _accumulate(self, out: JoinOutcome, geom: Geometry, ttl: float, port: EnginePort, get_profile) -> None:
        # A pair is late only when its (last) window was already sent (closed at an earlier close()):
        # whether it is does not depend on how labels and inputs were interleaved before that.
        closed = self.closed_wm
        by_mv: dict[str, list[LabelledExample]] = {}
        pairs = out.pairs
        if pairs and closed is not None:
            ends = geom.last_end(np.fromiter((ex.ts for ex in pairs), dtype=float, count=len(pairs)))
            late = ends + geom.lateness <= closed
            if late.any():
                out.late_pairs += int(late.sum())  # training data (labelled topic), not judged
                pairs = [ex for ex, lt in zip(pairs, late.tolist()) if not lt]
        for ex in pairs:
            by_mv.setdefault(mv_key(ex.model, ex.model_version), []).append(ex)
        for mv, exs in by_mv.items():
            m, v = mv_parts(mv)
            profile = get_profile(m, v)
            windows = self.open.setdefault(mv, {})
            if profile is None:
                self._count("labelled_without_reference", len(exs))
                continue
            for key, acc in port.accumulate_labelled(profile, exs).items():
                w = win_str(key.start, key.end)
                if geom.closed(key.end, closed):
                    continue  # hopping windows: this one was sent already (the pair counts in its later windows)
                entry = windows.get(w)
                if entry is None:
                    windows[w] = {"n": int(acc.n_labelled), "acc": None}
                    self._live[(mv, w)] = acc
                else:
                    cur = self._live.get((mv, w))
                    if cur is None:
                        cur = port.acc_from_dict(entry["acc"]) if entry.get("acc") else None
                    self._live[(mv, w)] = acc if cur is None else cur.merge(acc)
                    entry["n"] += int(acc.n_labelled)
        self._count("matched", out.matched)
        self._count("duplicate", out.duplicate)
        self._count("unknown", out.unknown)
        self._count("expired_inputs", out.expired_inputs)
        self._count("too_late", out.too_late)
        self._count("late_pairs", out.late_pairs)
        self.close(geom, ttl, out)

    def close(self, geom: Geometry, ttl: float, out: JoinOutcome) -> None:
        lwm = self.labelled_wm(ttl)
        out.watermark = lwm
        if lwm is not None and (self.closed_wm is None or lwm > self.closed_wm):
            self.closed_wm = lwm
        for mv in sorted(self.open):
            m, v = mv_parts(mv)
            windows = self.open[mv]
            for w in sorted(windows, key=win_parse):
                if geom.closed(win_parse(w)[1], lwm):
                    entry = windows.pop(w)
                    acc = self._live.pop((mv, w), None)
                    acc_d = acc.to_dict() if acc is not None else entry["acc"]
                    out.records.append((mv, partial_record(self.partition, LABELS, m, v, w, "acc", entry["n"], acc_d)))
            if not windows:
                del self.open[mv]
