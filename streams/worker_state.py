"""Pure logic of the streaming worker: what the Faust agents in ``streams/agents.py`` call.

Nothing here imports Faust or Kafka.  State is plain JSON-safe dicts, so the agents can
keep it in Faust tables (changelog-backed) and a restarted worker resumes exactly.

Three roles, one per input of the worker:

* **source** (:class:`SourceState`, one per partition of the inputs topic): keeps the
  partition's event-time watermark (largest event time seen) and the open window
  accumulators of that partition.  An event is *late* when every window it belongs to
  has already closed in its partition (``window.end + allowed_lateness <= watermark``
  before the event); late events are returned to the caller (dead-lettered with reason
  ``late`` and counted), never silently dropped.  When the watermark passes a window's
  end plus the allowed lateness, the window closes and its *partial* accumulator is
  emitted for the aggregator.  Lateness is decided event by event in offset order, so
  the result does not depend on how the stream was cut into micro-batches.

* **aggregator** (:class:`AggState`, one per (model, version)): merges the partials of
  a window from every source partition and judges the window once the *global*
  watermark (the smallest watermark over all source partitions, reported by watermark
  records on the same internal topic, in order after the partials they cover) has
  passed it.  Windows are judged in start order, so hysteresis state evolves the same
  way whether one worker or several produced the partials.

* **label join** (:class:`JoinState`, one per partition of the labels topic; inputs
  and labels must be keyed by ``event_id`` with the same partition count, so that a
  label lands on the partition of its input): joins labels to stored inputs by
  ``event_id`` within ``label_ttl_s``; labels that arrive before their input wait; a
  label whose input never arrives is counted ``unknown`` once the inputs watermark has
  passed it; a second label for a joined event is counted ``duplicate``.

Exactly-once state under at-least-once delivery: every state record stores the last
source offset it includes; the caller skips records at or below it after a restart
(state may be ahead of the committed consumer offset, never behind, because the agent
waits for its state writes before acknowledging a batch).  Partials and alerts may be
re-sent after a crash; partials are deduplicated by (window, source partition), alerts
carry deterministic ids (consumers deduplicate by ``alert_id``).

Reference profiles: a registered profile (:class:`streams.reference_store.ReferenceStore`, ``<reference_dir>/by-id/<sha256>.json``)
is used when present.  Otherwise sources ship the raw rows of that version's windows to
the aggregator, which uses whole windows, in start order, until it holds at least
``reference_bootstrap_n`` events, builds the profile from them (deterministically: rows
sorted by event time, partition, offset), saves it, and judges the following windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, MutableMapping, Sequence

import msgspec
import numpy as np

from streams.events import InferenceEvent, LabelEvent, LabelledExample, json_default
from streams.keys import ModelKey, model_key

INPUTS = "inputs"
LABELS = "labels"

_STATE_ENCODER = msgspec.json.Encoder(enc_hook=json_default)


def encode_state(value: Any) -> bytes:
    """State and partial records -> JSON bytes (msgspec: ~5x faster than json.dumps on these dicts)."""
    return _STATE_ENCODER.encode(value)


def decode_state(data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:  # e.g. a lone surrogate escape in an event's text (bootstrap rows): only json accepts it
        import json

        return json.loads(data)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class WorkerConfig:
    """The ``worker`` config section (all optional)."""

    app_id: str = "driftloop-worker"
    data_dir: str = ""  # default: $DRIFTLOOP_HOME/worker/<app_id>
    batch_size: int = 1000  # records per micro-batch (most per fetch with batch delivery; stream.take's n otherwise)
    batch_within_s: float = 0.5
    allowed_lateness_s: float | None = None  # None: drift.allowed_lateness_s, else 0
    label_join: bool = True
    label_ttl_s: float = 600.0  # a label must arrive within this much event time after its input
    reference_dir: str = ""  # default: $DRIFTLOOP_HOME/references
    reference_bootstrap_n: int = 10_000
    metrics_port: int = 9108  # 0: no /metrics server
    web_port: int = 0  # Faust's own web server; 0 picks a free port
    source_partitions: int = 0  # 0: topics.partitions
    internal_partitions: int = 0  # 0: topics.partitions (tables' changelogs get the same count)
    partials_topic: str = ""  # default: <app_id>.partials
    processing_guarantee: str = "at_least_once"  # or exactly_once (see streams/app.py)
    # A source partition that sent no watermark for this long (wall time) stops holding the global event-time
    # watermark back (Flink's withIdleness); 0: every partition must report before any window closes.
    idle_source_timeout_s: float = 10.0
    max_rows_per_message: int = 500
    # Event times further ahead of the wall clock are dead-lettered with reason "future" (a clock-poisoned
    # producer must not move the watermark years ahead); None or a negative value: no check.
    max_future_s: float | None = 300.0
    # Byte budget of one encoded dead letter: its raw payload is cut to fit (raw_length and raw_sha256 kept);
    # keep it well under the broker's max.message.bytes (1 MiB by default).
    dlq_max_bytes: int = 512 * 1024
    producer_linger_ms: int = 5
    # How records of the inputs and labels topics reach the worker: "batch" hands each fetched batch to
    # one call (streams/batch_delivery.py, ~10x the events/s); "stream" is Faust's per-message path
    # (agents with stream.take_events(batch_size, within=batch_within_s)).
    delivery: str = "batch"
    # The consumer's fetch_max_wait_ms (Faust fixes it at 1500; only "batch" delivery changes it): an
    # empty partition (the assignor topic, an idle labels topic) holds the broker's one fetch slot this
    # long, and the inputs wait behind it (bench/results/worker_throughput.tuning.md).
    fetch_max_wait_ms: int = 100
    # Python's cyclic GC: young-generation threshold (0: Python's default, 700); see streams/worker_cmd.py.
    gc_threshold: int = 50_000
    # Kafka fetch size per partition (Faust consumer_max_fetch_size).
    fetch_max_bytes: int = 4 * 1024 * 1024
    lag_interval_s: float = 5.0
    session_timeout_s: float = 10.0  # a killed worker's partitions move to the others after this long
    retrain: dict = field(default_factory=dict)  # RetrainPolicyConfig fields

    def lateness(self, drift_allowed_lateness: float | None) -> float:
        if self.allowed_lateness_s is not None:
            return float(self.allowed_lateness_s)
        return float(drift_allowed_lateness or 0.0)


@dataclass(frozen=True)
class Geometry:
    """Window size, hop and allowed lateness (seconds of event time)."""

    size: float
    hop: float
    lateness: float

    def last_end(self, ts: np.ndarray) -> np.ndarray:
        """End of the latest window containing each event time."""
        return np.floor(ts / self.hop) * self.hop + self.size

    def closed(self, end: float, watermark: float | None) -> bool:
        return watermark is not None and end + self.lateness <= watermark


def mv_key(model: str, version: str) -> str:
    """The (model, version) key of state dicts, message keys and table keys (:mod:`streams.keys`)."""
    return model_key(model, version)


def mv_parts(mv: str) -> tuple[str, str]:
    """Inverse of :func:`mv_key`."""
    k = ModelKey.decode(mv)
    return k.model, k.version


def win_str(start: float, end: float) -> str:
    return f"{float(start)!r}|{float(end)!r}"


def win_parse(s: str) -> tuple[float, float]:
    a, b = s.split("|")
    return float(a), float(b)


# --------------------------------------------------------------------------- engine port


class EnginePort:
    """What the worker needs from the drift engine; :func:`engine_port` builds the real one.

    ``accumulate(profile, events)`` and ``accumulate_labelled(profile, examples)`` return
    {WindowKey: WindowAccumulator}; ``acc_from_dict(d)``; ``new_judge(profile)`` returns an
    object with ``judge(key, acc) -> list[Alert]``, ``state_dict()`` and ``load_state_dict(d)``;
    ``build_profile(events, model, version)``; ``profile_from_dict(d)``;
    ``window_key(model, version, start, end, stream)``.
    """

    def __init__(self, **fns: Callable[..., Any]) -> None:
        for name in ("accumulate", "accumulate_labelled", "acc_from_dict", "new_judge", "build_profile",
                     "profile_from_dict", "window_key"):
            if name not in fns:
                raise TypeError(f"EnginePort needs {name}")
        self.__dict__.update(fns)


# --------------------------------------------------------------------------- records on the internal topic


def partial_record(src: int, stream: str, model: str, version: str, window: str, mode: str, n: int, acc: dict | None) -> dict:
    return {"type": "partial", "src": src, "stream": stream, "model": model, "version": version,
            "window": window, "mode": mode, "n": n, "acc": acc}


def rows_record(src: int, model: str, version: str, window: str, rows: list[list[Any]]) -> dict:
    """``rows``: [offset, event dict] pairs of one window of a version without a profile."""
    return {"type": "rows", "src": src, "stream": INPUTS, "model": model, "version": version, "window": window, "rows": rows}


def watermark_record(src: int, stream: str, wm: float | None, idle: bool = False) -> dict:
    """Watermark of source partition ``src``; ``idle``: the partition stops holding the global watermark back."""
    rec = {"type": "wm", "src": src, "stream": stream, "wm": wm}
    if idle:
        rec["idle"] = True
    return rec


def compact_event(ev: InferenceEvent) -> dict[str, Any]:
    return ev.to_dict()


# --------------------------------------------------------------------------- source side


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
    ) -> InputOutcome:
        """Add a micro-batch of (offset, event) of this partition, in offset order."""
        out = InputOutcome()
        fresh = [(o, e) for o, e in batch if o > self.offset]
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
                self._add(port, geom, items, None if math.isinf(wm_seg) else float(wm_seg), get_profile, rows_out, out)
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

    def _add(self, port, geom, items, wm_seg, get_profile, rows_out, out) -> None:
        by_mv: dict[str, list[tuple[int, InferenceEvent]]] = {}
        keys = {(e.model, e.model_version) for _, e in items}
        if len(keys) == 1:  # the usual micro-batch: one model version
            by_mv[mv_key(*keys.pop())] = items
        else:
            for o, e in items:
                by_mv.setdefault(mv_key(e.model, e.model_version), []).append((o, e))
        for mv, evs in by_mv.items():
            m, v = mv_parts(mv)
            windows = self.open.setdefault(mv, {})
            profile = get_profile(m, v)
            if profile is not None:
                parts = port.accumulate(profile, [e for _, e in evs])
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


# --------------------------------------------------------------------------- aggregator side


class Watermarks:
    """Per internal partition: the latest watermark of every source partition, per stream."""

    def __init__(self, d: Mapping[str, Any] | None = None) -> None:
        d = d or {}
        self.offset: int = int(d.get("offset", -1))
        self.wm: dict[str, dict[str, float]] = {k: dict(v) for k, v in (d.get("wm") or {}).items()}
        self.mvs: list[str] = list(d.get("mvs") or [])  # (model, version) keys aggregated on this partition
        self.idle: dict[str, list[str]] = {k: list(v) for k, v in (d.get("idle") or {}).items()}  # stream -> idle sources

    def to_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "wm": self.wm, "mvs": self.mvs, "idle": self.idle}

    def update(self, stream: str, src: int, wm: float | None, idle: bool = False) -> bool:
        """Apply a watermark record; True when the global watermark may have moved."""
        idle_now = self.idle.setdefault(stream, [])
        changed = (str(src) in idle_now) != idle
        if idle and changed:
            idle_now.append(str(src))
        elif changed:
            idle_now.remove(str(src))
        cur = self.wm.setdefault(stream, {}).get(str(src))
        if wm is None or (cur is not None and wm <= cur):
            return changed
        self.wm[stream][str(src)] = float(wm)
        return True

    def global_wm(self, stream: str, n_sources: int) -> float | None:
        """Smallest watermark over the ``n_sources`` partitions that are not idle; None until each has reported.

        When every partition is idle, the largest watermark any of them reached (as Flink's watermark valve
        does): everything sent so far is complete."""
        seen = self.wm.get(stream, {})
        skip = set(self.idle.get(stream, ()))
        vals = [seen.get(str(p)) for p in range(n_sources) if str(p) not in skip]
        if not vals:
            known = [v for v in seen.values() if v is not None]
            return float(max(known)) if known else None
        if any(v is None for v in vals):
            return None
        return float(min(vals))  # type: ignore[type-var]


@dataclass
class JudgeOutcome:
    alerts: list[Any] = field(default_factory=list)
    judged: list[tuple[str, str, int]] = field(default_factory=list)  # (stream, window, n)
    reference_windows: list[tuple[str, int]] = field(default_factory=list)  # windows used to build the reference
    reference_built: Any = None  # the ReferenceProfile built now, if any
    skipped_labelled: int = 0  # labelled examples of windows before a profile existed


class AggState:
    """Aggregator state of one (model, version): pending partials, reference, judge state."""

    def __init__(self, model: str, version: str, d: Mapping[str, Any] | None = None) -> None:
        d = d or {}
        self.model, self.version = model, version
        self.offset: int = int(d.get("offset", -1))
        # stream -> window -> {"srcs": {src: {"mode", "n", "acc"}}, "rows": {src: {"max_offset", "n", "acc"}}}
        self.pending: dict[str, dict[str, dict[str, Any]]] = {k: dict(v) for k, v in (d.get("pending") or {}).items()}
        self.judged_through: dict[str, float] = dict(d.get("judged_through") or {})
        self.judge_state: dict | None = d.get("judge_state")
        self.profile: dict | None = d.get("profile")
        self.profile_source: str = d.get("profile_source", "")
        self.ref_windows: list[str] = list(d.get("ref_windows") or [])
        self.ref_n: int = int(d.get("ref_n", 0))
        # rows kept until the profile exists, in chunks of a chunk store: window -> src -> [chunk key, ...]
        self.rows: dict[str, dict[str, list[str]]] = {k: dict(v) for k, v in (d.get("rows") or {}).items()}
        self.n_labelled: int = int(d.get("n_labelled", 0))
        self.retrain: dict = dict(d.get("retrain") or {})
        self.duplicates: int = int(d.get("duplicates", 0))
        self._prof: tuple[str, Any] | None = None
        self._judge: Any = None

    def to_dict(self) -> dict[str, Any]:
        if self._judge is not None:
            self.judge_state = self._judge.state_dict()
        return {
            "offset": self.offset, "pending": self.pending, "judged_through": self.judged_through,
            "judge_state": self.judge_state, "profile": self.profile, "profile_source": self.profile_source,
            "ref_windows": self.ref_windows, "ref_n": self.ref_n, "rows": self.rows, "n_labelled": self.n_labelled,
            "retrain": self.retrain, "duplicates": self.duplicates,
        }

    # -- profile and judge objects (decoded lazily, cached)
    def profile_obj(self, port: EnginePort) -> Any:
        if self.profile is None:
            return None
        pid = str(self.profile.get("id"))
        if self._prof is None or self._prof[0] != pid:
            self._prof = (pid, port.profile_from_dict(self.profile))
        return self._prof[1]

    def set_profile(self, profile: Any, source: str) -> None:
        self.profile = profile.to_dict()
        self.profile_source = source
        self._prof = (str(profile.id), profile)
        self._judge = None

    def judge_obj(self, port: EnginePort) -> Any:
        if self._judge is None:
            self._judge = port.new_judge(self.profile_obj(port))
            if self.judge_state:
                self._judge.load_state_dict(self.judge_state)
        return self._judge

    # -- records
    def _is_old(self, stream: str, window: str) -> bool:
        done = self.judged_through.get(stream)
        return done is not None and win_parse(window)[0] <= done

    def add(self, rec: Mapping[str, Any], port: EnginePort, chunks: "MutableMapping[str, Any] | None" = None) -> bool:
        """Apply a partial or rows record.  False when it duplicates something already judged.

        ``chunks`` stores bootstrap rows (one key per record, so no state value grows large).
        """
        stream, w, src = rec["stream"], rec["window"], str(rec["src"])
        if self._is_old(stream, w):
            self.duplicates += 1
            return False
        slot = self.pending.setdefault(stream, {}).setdefault(w, {"srcs": {}, "rows": {}})
        if rec["type"] == "partial":
            # A partial is complete for (window, source).  An "acc" partial supersedes rows that a
            # previous owner of the partition shipped for this window before a rebalance (the new
            # owner opened the window in acc mode and counted all of its events).
            slot["srcs"][src] = {"mode": rec["mode"], "n": int(rec["n"]), "acc": rec.get("acc")}
            if rec["mode"] == "acc" and slot["rows"].pop(src, None) is not None:
                for k in self.rows.get(w, {}).pop(src, []):
                    if chunks is not None:
                        chunks.pop(k, None)
            return True
        if slot["srcs"].get(src, {}).get("mode") == "acc":
            return True  # rows from a previous owner, after the complete acc partial: already counted
        r = slot["rows"].setdefault(src, {"max_offset": -1, "n": 0, "acc": None})
        fresh = [row for row in rec["rows"] if int(row[0]) > r["max_offset"]]
        if not fresh:
            return True
        r["max_offset"] = int(fresh[-1][0])
        r["n"] += len(fresh)
        if self.profile is None:
            if chunks is None:
                raise ValueError("rows of a version without a profile need a chunk store")
            ck = f"r|{mv_key(self.model, self.version)}|{w}|{src}|{fresh[0][0]}"
            chunks[ck] = fresh
            self.rows.setdefault(w, {}).setdefault(src, []).append(ck)
        else:
            self._rows_to_acc(port, w, r, fresh)
        return True

    def _rows_to_acc(self, port: EnginePort, w: str, r: dict, rows: list[list[Any]]) -> None:
        from streams.events import parse_input

        evs = [parse_input(row[1]) for row in rows]
        start, end = win_parse(w)
        for key, acc in port.accumulate(self.profile_obj(port), evs).items():
            if float(key.start) == start and float(key.end) == end:
                if r["acc"] is not None:
                    acc = port.acc_from_dict(r["acc"]).merge(acc)
                r["acc"] = acc.to_dict()

    # -- judging
    def ready(self, stream: str, global_wm: float | None, geom: Geometry) -> list[str]:
        wins = self.pending.get(stream, {})
        return sorted((w for w in wins if geom.closed(win_parse(w)[1], global_wm)), key=win_parse)

    def judge_ready(self, stream: str, global_wm: float | None, geom: Geometry, port: EnginePort, bootstrap_n: int,
                    chunks: "MutableMapping[str, Any] | None" = None) -> JudgeOutcome:
        out = JudgeOutcome()
        for w in self.ready(stream, global_wm, geom):
            slot = self.pending[stream].pop(w)
            start, end = win_parse(w)
            self.judged_through[stream] = start
            n = sum(int(s["n"]) for s in slot["srcs"].values())
            if stream == INPUTS and self.profile is None:
                self.ref_windows.append(w)
                self.ref_n += n
                out.reference_windows.append((w, n))
                if self.ref_n >= bootstrap_n:
                    out.reference_built = self._build_reference(port, chunks if chunks is not None else {})
                continue
            if self.profile is None:
                out.skipped_labelled += n
                continue
            acc = None
            for part in [s.get("acc") for s in slot["srcs"].values()] + [r.get("acc") for r in slot["rows"].values()]:
                if part:
                    a = port.acc_from_dict(part)
                    acc = a if acc is None else acc.merge(a)
            if acc is None:
                continue
            key = port.window_key(self.model, self.version, start, end, stream)
            alerts = list(self.judge_obj(port).judge(key, acc))
            if stream == LABELS:
                self.n_labelled += int(getattr(acc, "n_labelled", 0) or 0)
            out.alerts.extend(alerts)
            out.judged.append((stream, w, int(getattr(acc, "n", n))))
        return out

    def _build_reference(self, port: EnginePort, chunks: "MutableMapping[str, Any]") -> Any:
        from streams.events import parse_input

        def load(keys: list[str]) -> list[list[Any]]:
            out: list[list[Any]] = []
            for k in keys:
                out.extend(chunks.get(k) or [])
            return out

        ref = set(self.ref_windows)
        rows: list[tuple[float, int, int, dict]] = []
        for w in ref:
            for src, keys in self.rows.get(w, {}).items():
                rows.extend((float(row[1]["ts"]), int(src), int(row[0]), row[1]) for row in load(keys))
        rows.sort(key=lambda t: t[:3])
        seen: set[tuple[int, int]] = set()
        evs = []
        for _, src, off, d in rows:  # hopping windows ship an event once per window: count it once
            if (src, off) not in seen:
                seen.add((src, off))
                evs.append(parse_input(d))
        profile = port.build_profile(evs, self.model, self.version)
        self.set_profile(profile, "bootstrap")
        for w, by_src in self.rows.items():
            if w in ref:
                continue
            slot = self.pending.get(INPUTS, {}).get(w)
            if slot is None:
                continue
            for src, keys in by_src.items():
                r = slot["rows"].setdefault(src, {"max_offset": -1, "n": 0, "acc": None})
                rr = load(keys)
                if rr:
                    self._rows_to_acc(port, w, r, rr)
        for by_src in self.rows.values():
            for keys in by_src.values():
                for k in keys:
                    chunks.pop(k, None)
        self.rows = {}
        return profile


# --------------------------------------------------------------------------- label join


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
        from streams.events import InvalidRecord, parse_input

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

    def add_new(self, batch: Sequence[tuple[int, InferenceEvent]], raws: Sequence[bytes] | None) -> int:
        """Add inputs whose event ids are not stored yet (the first of duplicates wins)."""
        events = [e for _, e in batch]
        ids = [e.event_id for e in events]
        if not self.index.keys().isdisjoint(ids) or len(set(ids)) < len(ids):
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
                     raws: Sequence[bytes] | None = None, ttl: float | None = None, labels_behind: bool = False) -> int:
        """Remember accepted inputs (offset order) for joining; ``raws``: their JSON bytes (stored as they are).

        ``labels_behind``: the labels partition has records not read yet (a backlog), so no input leaves
        before the labels read so far have passed it by the TTL (its label may be in the backlog)."""
        if batch and batch[0][0] <= self.in_offset:  # replayed after a restart: already stored
            keep = [i for i, (o, _) in enumerate(batch) if o > self.in_offset]
            batch = [batch[i] for i in keep]
            raws = None if raws is None else [raws[i] for i in keep]
        stored = store.add_new(batch, raws)
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
        from streams.events import parse_input

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
                                         e.prediction, e.scores, e.entity))

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


# --------------------------------------------------------------------------- the real engine


def engine_port(drift_config: Any) -> EnginePort:
    """An :class:`EnginePort` on :class:`streams.engine.DriftEngine` (one engine per reference profile)."""
    from streams.engine import DriftEngine
    from streams.profile import ReferenceProfile, build_profile
    from streams.windows import WindowAccumulator, WindowKey

    engines: dict[str, Any] = {}

    def _engine(profile: Any) -> Any:
        eng = engines.get(profile.id)
        if eng is None:
            if len(engines) > 256:
                engines.clear()
            eng = engines[profile.id] = DriftEngine(drift_config, [profile])
        return eng

    def new_judge(profile: Any) -> Any:
        return DriftEngine(drift_config, [profile])

    def build(events: Sequence[InferenceEvent], model: str, version: str) -> Any:
        return build_profile(list(events), model, version, n_bins=drift_config.n_bins, fine_bins=drift_config.fine_bins, top_k=drift_config.top_k,
                             source="worker-bootstrap")

    return EnginePort(
        accumulate=lambda profile, events: _engine(profile).accumulate(events),
        accumulate_labelled=lambda profile, examples: _engine(profile).accumulate_labelled(examples),
        acc_from_dict=WindowAccumulator.from_dict,
        new_judge=new_judge,
        build_profile=build,
        profile_from_dict=ReferenceProfile.from_dict,
        window_key=lambda m, v, s, e, stream: WindowKey(m, v, s, e, stream),
    )
