"""The drift worker's decisions, without Kafka or Faust: batches and ticks in, :class:`Effects` out.

:class:`WorkerCore` takes the decoded micro-batches of the inputs and labels topics (records
with ``.partition``, ``.offset``, ``.key``, ``.value``, per partition in offset order), the
records of the internal partials topic, and timer ticks; each call returns the
:class:`streams.worker.effects.Effects` the adapter carries out (records to send, state to
write, partitions to pause or resume).  What the core needs from the consumer is asked of a
:class:`ConsumerView` (assignment, unread records), so the in-memory harness of the tests can
drive it through scripted batches, restarts and rebalances without a broker.

Per source partition (:mod:`streams.worker.state`): validate (bad records become dead letters with their
reason), drop retried ``event_id``\\ s, window the inputs
(:class:`SourceState`, partials and watermarks to the internal topic), store them for the
label join (:class:`JoinState`, :class:`InputStore`), keep inputs and labels together in
event time while one lags (pacing), and announce partitions that went idle.  Per internal
partition: :class:`streams.worker.aggregator.Aggregator`.
"""

from __future__ import annotations

import json
import logging
import operator
import time
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from streams.contracts.events import DEFAULT_DLQ_MAX_BYTES, Alert, DeadLetter, InvalidRecord, model_version_of
from streams.contracts.validate import parse_input_batch, parse_label
from streams.judge.dedupe import EventDedup
from streams.worker import state as ws
from streams.worker.aggregator import Aggregator
from streams.worker.cardinality import CardinalityGuard, cardinality_alert
from streams.worker.effects import Effects, Recorder, Send, StateKV
from streams.worker.label_join import InputStore, JoinOutcome, JoinState
from streams.worker.partitioners import PartitionerCheck
from streams.worker.source import SourceState

log = logging.getLogger("driftloop.worker")
_SECOND = operator.itemgetter(1)
_EVENT_ID = operator.attrgetter("event_id")
_OFFSET = operator.attrgetter("offset")


class ConsumerView(Protocol):
    """What the core asks of the consumer: its assignment, and whether a partition has unread records."""

    def assigned(self) -> Iterable[tuple[str, int]]: ...

    def backlog(self, topic: str, partition: int) -> bool | None:  # None: not known yet (nothing fetched)
        ...


class WorkerCore:
    """All per-partition state of one worker, and the rules that move it (see the module docstring).

    ``reader(table)``: the adapter's view of table ``state`` or ``joins`` (``get``, ``keys``).
    ``profiles``: reference profiles by (model, version) (:class:`streams.adapters.reference_store.ReferenceStore`).
    ``metrics``: :class:`streams.adapters.metrics.WorkerMetrics` (set directly: counters need no ordering).
    """

    def __init__(self, settings: Any, metrics: Any, reader: Callable[[str], Any], profiles: Any, *,
                 parity: Any = None, clock: Callable[[], float] = time.time) -> None:
        w, d = settings.worker, settings.drift
        self.s, self.m, self.clock = settings, metrics, clock
        self.rec = Recorder(reader)
        self.geom = ws.Geometry(float(d.window_seconds), float(d.hop), w.lateness(d.allowed_lateness_s))
        self.ttl = float(w.label_ttl_s)
        self.port = ws.engine_port(d, getattr(settings, "slo", None))
        self.profiles = profiles
        self.max_future_s = None if w.max_future_s is None or w.max_future_s < 0 else float(w.max_future_s)
        self.n = settings.partitions
        self.topics = settings.topics
        self.aggregator = Aggregator(self.rec, settings, metrics, self.port, self.geom, profiles,
                                     _retrain_config(w.retrain), parity)
        self.sources: dict[int, SourceState] = {}
        self.joinstates: dict[int, JoinState] = {}
        self.stores: dict[int, InputStore] = {}
        self.active_at: dict[int, float] = {}  # owned source partition -> wall time of its last records (or assignment)
        self.idle: set[int] = set()  # owned source partitions announced idle to the aggregators
        self.partitioner = PartitionerCheck()
        self.dedup: dict[int, EventDedup] = {}  # without the label join: recent event ids per partition (memory only)
        self.guards: dict[int, CardinalityGuard] = {}  # model versions tracked per source partition
        self.paused: set[tuple[str, int]] = set()  # (topic, partition) held back by pacing

    # ------------------------------------------------------------------ state
    def on_rebalance(self, keep_stores: Iterable[int] = ()) -> None:
        """Forget cached state (it is read back from the tables); keep the join stores of ``keep_stores``."""
        keep = set(keep_stores)
        self.paused.clear()  # a rebalance resumes every partition Faust assigns
        self.sources.clear()
        self.joinstates.clear()
        for p in [p for p in self.stores if p not in keep]:
            del self.stores[p]
        self.aggregator.reset()
        self.active_at.clear()
        self.idle.clear()
        self.dedup.clear()
        self.guards.clear()

    def source(self, p: int) -> SourceState:
        st = self.sources.get(p)
        if st is None:
            st = self.sources[p] = SourceState(p, self.rec.get("state", f"in|{p}"))
        return st

    def joinstate(self, p: int) -> JoinState:
        st = self.joinstates.get(p)
        if st is None:
            st = self.joinstates[p] = JoinState(p, self.rec.get("state", f"lb|{p}"))
        return st

    def store_to_rebuild(self, p: int) -> tuple[int, int] | None:
        """Inputs offsets (first, last) the adapter must read back before partition ``p``'s join store is used;
        None when the store is in memory or empty (then :meth:`install_store` with no records)."""
        if p in self.stores or not self.s.worker.label_join:
            return None
        js = self.joinstate(p)
        if js.store_from is not None and js.store_from <= js.in_offset:
            return js.store_from, js.in_offset
        return None

    def install_store(self, p: int, records: Iterable[tuple[int, bytes]] = ()) -> int:
        """Partition ``p``'s join store from the inputs records (offset, bytes) it held (the inputs topic is its changelog)."""
        st = InputStore(StateKV(self.rec, "joins", f"j|{p}|", p))
        n = st.rebuild(records)
        self.stores[p] = st
        return n

    def _store(self, p: int) -> InputStore:
        st = self.stores.get(p)
        if st is None:
            if self.store_to_rebuild(p) is not None:
                raise RuntimeError(f"join store of partition {p} must be rebuilt first (store_to_rebuild/install_store)")
            self.install_store(p)
            st = self.stores[p]
        return st

    def _put(self, key: str, value: Any, partition: int) -> None:
        self.rec.put("state", partition, key, value)

    # ------------------------------------------------------------------ inputs
    def on_inputs(self, by_partition: Mapping[int, Sequence[Any]], view: ConsumerView) -> Effects:
        """One micro-batch of the inputs topic (records per partition, offset order)."""
        self.rec.begin()
        name = self.topics.inputs
        now = self.clock()  # one wall-clock reading per batch bounds its event times (max_future_s)
        accepted_all: list = []
        counts: Counter = Counter()  # accepted events per (model, version)
        n_records = 0
        for p in sorted(by_partition):
            src = self.source(p)
            recs = self._fresh(name, by_partition[p], src.offset)
            n_records += len(recs)
            if not recs:
                continue
            self.m.source_records.labels(stream="inputs", partition=str(p)).inc(len(recs))
            self._announce_active(p)
            self._check_partitioner("inputs", p, recs)
            values = [r.value or b"" for r in recs]
            parsed, keys = parse_input_batch(values, now=now, max_future_s=self.max_future_s)  # keys: (model, version)s
            if keys is not None:
                valid = list(zip(map(_OFFSET, recs), parsed))
            else:
                valid = [(r.offset, ev) for r, ev in zip(recs, parsed) if ev.__class__ is not InvalidRecord]
                for r, ev in zip(recs, parsed):
                    if ev.__class__ is InvalidRecord:
                        self._dead_letter(name, "inputs_dlq", r, ev)
                keys = set(map(model_version_of, map(_SECOND, valid)))
            if valid:
                n_valid = len(valid)
                valid = self._first_occurrences(p, valid)
                if len(valid) < n_valid:  # retries dropped: the pairs of what is left
                    keys = set(map(model_version_of, map(_SECOND, valid)))
            if valid:
                valid, keys = self._tracked(p, valid, keys)
            if not valid:
                src.offset = recs[-1].offset
                self._put(f"in|{p}", src.to_dict(), p)
                continue
            mv = next(iter(keys)) if len(keys) == 1 else None  # the usual batch: one (model, version), no grouping
            out = src.ingest(valid, self.geom, self.port, self.profiles.get, self.s.worker.max_rows_per_message, mv=mv)
            src.offset = max(src.offset, recs[-1].offset)
            accepted = valid
            by_offset = {r.offset: r for r in recs} if (out.late or len(valid) < len(recs)) else None
            if out.late:
                late_ids = {o for o, _ in out.late}
                for o, e in out.late:
                    err = InvalidRecord("late", f"event time {e.ts} is older than the closed window (watermark {src.wm}, "
                                                f"allowed lateness {self.geom.lateness} s); raise worker.allowed_lateness_s to accept it")
                    self._dead_letter(name, "inputs_dlq", by_offset[o], err)
                    self.m.late.labels(topic=name, model=e.model, model_version=e.model_version).inc()
                accepted = [(o, e) for o, e in valid if o not in late_ids]
            accepted_all.extend(map(_SECOND, accepted))
            if mv is not None:
                counts[mv] += len(accepted)
            else:
                counts.update(map(model_version_of, map(_SECOND, accepted)))
            for mv, rec in out.records:
                self.rec.send("partials", mv.encode(), ws.encode_state(rec))
                self.m.partials.labels(action="published").inc()
            if out.watermark_moved:
                self._send_watermark(p, ws.INPUTS, src.wm)
                self.m.watermark.labels(stream="inputs", partition=str(p)).set(src.wm)
                self.m.event_time_lag.labels(stream="inputs", partition=str(p)).set(self.clock() - src.wm)
            if self.s.worker.label_join and accepted:
                js = self.joinstate(p)
                raws = values if by_offset is None else [by_offset[o].value for o, _ in accepted]
                js.store_inputs(self._store(p), accepted, src.wm, raws, ttl=self.ttl,
                                labels_behind=self._backlog(view, self.topics.labels, p), checked=True)
                self._put(f"lb|{p}", js.to_dict(), p)
            self._put(f"in|{p}", src.to_dict(), p)
            self._pace(p, view)
        self._count(name, counts)
        self.m.batch_size.labels(agent="inputs").observe(n_records)
        fx = self.rec.end()
        fx.accepted = accepted_all
        return fx

    def publish_alerts(self, alerts: Sequence[Alert]) -> Effects:
        """Alerts found outside the core (the parity step) to the alerts topic."""
        self.rec.begin()
        self.aggregator.publish(alerts)
        return self.rec.end()

    def _fresh(self, topic_name: str, recs: Sequence[Any], done_through: int) -> list:
        """Records after the state's offset (earlier ones are already in the state: a replay after a restart)."""
        if recs and recs[0].offset > done_through:
            return list(recs)
        fresh = [r for r in recs if r.offset > done_through]
        if len(recs) > len(fresh):
            self.m.replayed.labels(topic=topic_name).inc(len(recs) - len(fresh))
        return fresh

    def _dead_letter(self, topic_name: str, role: str, r: Any, err: InvalidRecord) -> None:
        """A dead letter within ``worker.dlq_max_bytes`` (payload cut, ``raw_length``/``raw_sha256`` kept)."""
        raw = r.value if isinstance(r.value, (bytes, bytearray)) else (r.value or b"")
        dl = DeadLetter.from_bytes(topic_name, r.partition, r.offset, err, bytes(raw))
        value = dl.to_bytes(int(self.s.worker.dlq_max_bytes or DEFAULT_DLQ_MAX_BYTES))
        self.rec.fx.dead_letters.append(Send(role, DeadLetter.key_for(r.key), value, None,
                                             f"{topic_name}[{r.partition}]@{r.offset}"))
        self.m.invalid.labels(topic=topic_name, reason=dl.reason).inc()

    def _first_occurrences(self, p: int, valid: list) -> list:
        """``valid`` (offset, event) without events whose ``event_id`` was seen already (a producer's retry).

        With the label join, the ids of the join store (the inputs of the last label TTL, rebuilt from
        the inputs topic after a restart) say what was seen; without it, an in-memory
        :class:`streams.judge.dedupe.EventDedup` over one window plus the allowed lateness."""
        ids = list(map(_EVENT_ID, map(_SECOND, valid)))
        if self.s.worker.label_join:
            seen = self._store(p).index
            if seen.keys().isdisjoint(ids) and len(set(ids)) == len(ids):  # the usual batch: C-level checks only
                return valid
            batch: set[str] = set()
            keep = [not (eid in seen or eid in batch or batch.add(eid)) for eid in ids]
        else:
            dedup = self.dedup.get(p)
            if dedup is None:
                dedup = self.dedup[p] = EventDedup(self.geom.size + self.geom.lateness + self.geom.hop)
            keep = dedup.first_occurrences(ids, [e.ts for _, e in valid]).tolist()
        n_dup = len(keep) - sum(keep)
        if n_dup:
            self.m.duplicates.labels(topic=self.topics.inputs).inc(n_dup)
            return [v for v, k in zip(valid, keep) if k]
        return valid

    def _count(self, topic_name: str, counts: Mapping[tuple[str, str | None], int], p: int | None = None) -> None:
        """Count events per model version (``counts``); with ``p`` (labels), versions that partition does not track
        count as ``_untracked`` (the label sets of /metrics stay bounded)."""
        guard = None if p is None else self._guard(p)
        for (m, v), k in counts.items():
            v = v or ""
            if guard is not None and not (m in guard.admitted and (not v or guard.tracked(m, v))):
                m, v = "_untracked", "_untracked"
            self.m.events.labels(topic=topic_name, model=m, model_version=v).inc(k)

    def _guard(self, p: int) -> CardinalityGuard:
        g = self.guards.get(p)
        if g is None:
            w = self.s.worker
            g = self.guards[p] = CardinalityGuard(w.max_models, w.max_versions_per_model, self.rec.get("state", f"card|{p}"))
        return g

    def _tracked(self, p: int, valid: list, keys: set) -> tuple[list, set]:
        """``valid`` without the events of model versions beyond the cardinality limits (counted and reported),
        and the (model, version) pairs kept (``keys``: those of ``valid``)."""
        guard = self._guard(p)
        if all(guard.tracked(*k) for k in keys):  # the usual batch
            return valid, keys
        refused = {k: why for k in sorted(keys) if (why := guard.admit(*k)) is not None}
        if refused:
            counts: dict[str, int] = defaultdict(int)
            first: dict[str, tuple[str, str, float]] = {}
            keep = []
            for o, e in valid:
                why = refused.get((e.model, e.model_version))
                if why is None:
                    keep.append((o, e))
                else:
                    counts[why] += 1
                    first.setdefault(why, (e.model, e.model_version, e.ts))
            for why, n in counts.items():
                self.m.untracked.labels(reason=why).inc(n)
                if not guard.refused.get(why):
                    self._cardinality_alert(p, why, n, first[why])
                guard.refused[why] = guard.refused.get(why, 0) + n
            valid = keep
            keys = keys.difference(refused)
        self._put(f"card|{p}", guard.to_dict(), p)
        return valid, keys

    def _cardinality_alert(self, p: int, why: str, n: int, first: tuple[str, str, float]) -> None:
        w = self.s.worker
        limit = w.max_models if why == "models" else w.max_versions_per_model
        alert = cardinality_alert(p, why, n, first, limit, self.geom.hop, self.geom.size, self.clock())
        log.warning("source partition %d: %s", p, alert.details["message"])
        self.aggregator.publish([alert])

    def _check_partitioner(self, role: str, p: int, recs: Sequence[Any], samples: int = 8) -> None:
        """Sample a few keyed records of the batch; say loudly when inputs and labels were partitioned differently."""
        if not self.s.worker.label_join:
            return
        for r in recs[:: max(1, len(recs) // samples)][:samples]:
            verdict = self.partitioner.observe(role, r.key, p, self.n)
            if verdict is None:
                continue
            self.m.partitioner_mismatch.set(1 if verdict.mismatch else 0)
            if verdict.mismatch:
                log.error("label join: %s", verdict.message())
            else:
                log.info("label join: inputs and labels are partitioned alike (%s)", verdict.families)

    # ------------------------------------------------------------------ labels
    def on_labels(self, by_partition: Mapping[int, Sequence[Any]], view: ConsumerView) -> Effects:
        """One micro-batch of the labels topic (same shape and contract as :meth:`on_inputs`)."""
        self.rec.begin()
        name = self.topics.labels
        now = self.clock()
        n_records = 0
        for p in sorted(by_partition):
            js = self.joinstate(p)
            recs = self._fresh(name, by_partition[p], js.offset)
            n_records += len(recs)
            if not recs:
                continue
            self._announce_active(p)
            self._check_partitioner("labels", p, recs)
            valid = []
            for r in recs:
                try:
                    valid.append((r.offset, parse_label(r.value or b"", now=now, max_future_s=self.max_future_s)))
                except InvalidRecord as err:
                    self._dead_letter(name, "labels_dlq", r, err)
            self._count(name, Counter(map(model_version_of, map(_SECOND, valid))), p)  # C-level counting
            if self.s.worker.label_join:
                self._sync_input_wm(p, js)
                out = js.ingest_labels(self._store(p), valid, self.geom, self.ttl, self.port, self.profiles.get)
                self._join_outputs(p, out)
            js.offset = max(js.offset, recs[-1].offset)
            self._put(f"lb|{p}", js.to_dict(), p)
            self._pace(p, view)
        self.m.batch_size.labels(agent="labels").observe(n_records)
        return self.rec.end()

    def _sync_input_wm(self, p: int, js: JoinState) -> None:
        src = self.sources.get(p) or self.source(p)
        if src.wm is not None and (js.input_wm is None or src.wm > js.input_wm):
            js.input_wm = src.wm

    def _join_outputs(self, p: int, out: JoinOutcome) -> None:
        for ex in out.pairs:
            self.rec.send("labelled", ex.event_id.encode(), json.dumps(ex.to_dict(), sort_keys=True).encode())
        for outcome in ("matched", "duplicate", "unknown", "expired_inputs", "too_late", "late_pairs"):
            k = getattr(out, outcome)
            if k:
                self.m.labels.labels(outcome=outcome).inc(k)
        for mv, rec in out.records:
            self.rec.send("partials", mv.encode(), ws.encode_state(rec))
        if out.watermark is not None:
            self._send_watermark(p, ws.LABELS, out.watermark)

    def _send_watermark(self, p: int, stream: str, wm: float | None, idle: bool = False) -> None:
        value = ws.encode_state(ws.watermark_record(p, stream, wm, idle=idle))
        for q in range(self.n):  # every aggregator needs every source's watermark
            self.rec.send("partials", b"wm", value, q)

    # ------------------------------------------------------------------ the internal topic
    def on_partials(self, records: Sequence[tuple[int, int, bytes]]) -> Effects:
        """Records of the internal partials topic: (partition, offset, value)."""
        self.rec.begin()
        self.aggregator.on_partials(records)
        return self.rec.end()

    # ------------------------------------------------------------------ timers
    def join_tick(self, view: ConsumerView) -> Effects:
        """Periodic: resume paced partitions whose other stream caught up; retry waiting labels; close labelled
        windows when only inputs moved.  Partitions whose join store must be rebuilt first are skipped."""
        self.rec.begin()
        if not self.s.worker.label_join:
            return self.rec.end()
        for _, p in list(self.paused):  # the other stream may have caught up without a batch of this one
            self._pace(p, view)
        for p in list(self.joinstates):
            js = self.joinstates.get(p)
            if js is None or not (js.waiting or js.open) or self.store_to_rebuild(p) is not None:
                continue
            self._sync_input_wm(p, js)
            out = js.ingest_labels(self._store(p), [], self.geom, self.ttl, self.port, self.profiles.get)
            if out.pairs or out.records or out.unknown or out.expired_inputs:
                self._join_outputs(p, out)
                self._put(f"lb|{p}", js.to_dict(), p)
        return self.rec.end()

    def idle_tick(self, view: ConsumerView) -> Effects:
        """Periodic: announce owned source partitions that went idle, so they stop holding the watermark back.

        A source partition is idle when nothing arrived on its inputs and labels for
        ``worker.idle_source_timeout_s`` of wall time *and* the broker holds nothing unread there (as
        Flink's ``withIdleness``, but a partition with a backlog is never idle, so a slow or rebalancing
        worker does not close windows early).  Without this, a producer that keys by model name (all of
        one model's traffic on one partition) stalls every window: the silent partitions never advance
        the event-time watermark.  The aggregators then take the smallest watermark of the active
        partitions (all idle: the largest); an idle partition's events, when they come, count in windows
        not judged yet."""
        self.rec.begin()
        now = self.clock()
        for p, src in self.sources.items():  # the lag keeps growing while a watermark stands still
            if src.wm is not None:
                self.m.event_time_lag.labels(stream="inputs", partition=str(p)).set(now - src.wm)
        t = self.s.worker.idle_source_timeout_s
        if t <= 0:
            return self.rec.end()
        owned: dict[int, list[str]] = defaultdict(list)
        for topic, p in view.assigned():
            if topic in (self.topics.inputs, self.topics.labels):
                owned[p].append(topic)
        for p, topics in sorted(owned.items()):
            if p in self.idle:
                continue
            if any(self._backlog(view, topic, p, unknown=True) for topic in topics):
                # records unread, or not known (no fresh fetch answer: a broker down or paused): not quiet, and
                # its quiet time starts again, so a partition is idle only after t seconds *known* to be quiet
                self.active_at[p] = now
                continue
            since = self.active_at.setdefault(p, now)
            if now - since < t:
                continue
            self._send_watermarks(p, idle=True)
            self.idle.add(p)
            self.m.source_idle.labels(partition=str(p)).set(1)
            log.warning("source partition %d of %s: nothing for %.0f s and nothing unread; it no longer holds the "
                        "event-time watermark back (worker.idle_source_timeout_s)", p, self.topics.inputs, t)
        return self.rec.end()

    def _announce_active(self, p: int) -> None:
        """Records arrived on source partition ``p``: if it was announced idle, it holds the watermark again."""
        self.active_at[p] = self.clock()
        if p in self.idle:
            self.idle.discard(p)
            self.m.source_idle.labels(partition=str(p)).set(0)
            log.info("source partition %d is active again: it holds the event-time watermark again", p)
            self._send_watermarks(p, idle=False)

    def _send_watermarks(self, p: int, idle: bool) -> None:
        self._send_watermark(p, ws.INPUTS, self.source(p).wm, idle)
        self._send_watermark(p, ws.LABELS, self.joinstate(p).labelled_wm(self.ttl), idle)

    # ------------------------------------------------------------------ pacing
    @staticmethod
    def _backlog(view: ConsumerView, topic: str, p: int, unknown: bool = False) -> bool:
        b = view.backlog(topic, p)
        return unknown if b is None else bool(b)

    def _pace(self, p: int, view: ConsumerView) -> None:
        """Keep the inputs and labels of partition ``p`` together in event time while one lags in *consumption*.

        A worker catching up a backlog fetches whatever partitions answer first and can read the inputs
        far ahead of their labels (the inputs watermark then expires stored inputs, two label TTLs behind
        it, before their labels are read: they come out ``unknown``), or the labels far ahead of their
        inputs (every label waits in the join state).  So while one stream's watermark is more than one
        TTL ahead of the other's and the other has records not read yet, the leading partition is paused
        (Kafka Streams synchronises co-partitioned topics by time for the same reason).  Labels that are
        late in the real world (nothing left to read) pause nothing: the TTL says how late they may be."""
        if not self.s.worker.label_join:
            return
        src, js = self.sources.get(p), self.joinstates.get(p)
        assigned = {t for t, q in view.assigned() if q == p}
        tp_in, tp_lab = (self.topics.inputs, p), (self.topics.labels, p)
        if src is None or js is None or tp_in[0] not in assigned or tp_lab[0] not in assigned:
            return
        in_wm, lab_wm = src.wm, js.label_wm
        lead = None if in_wm is None or lab_wm is None else in_wm - lab_wm
        hold = None
        if in_wm is not None and (lab_wm is None or lead > self.ttl) and self._backlog(view, *tp_lab):
            hold = tp_in
        elif lab_wm is not None and (in_wm is None or lead < -self.ttl) and self._backlog(view, *tp_in):
            hold = tp_lab
        for tp in (tp_in, tp_lab):
            if tp == hold and tp not in self.paused:
                self.rec.fx.pause.append(tp)
                self.paused.add(tp)
                self.m.paced.labels(topic=tp[0], partition=str(p)).inc()
                log.info("%s[%d] paused: ahead of the other stream by more than the label TTL (%.0f s of event time) "
                         "while the other has unread records", tp[0], p, abs(lead) if lead is not None else float("inf"))
            elif tp != hold and tp in self.paused:
                self.rec.fx.resume.append(tp)
                self.paused.discard(tp)


def _retrain_config(raw: Any) -> Any:
    from streams import config as cfg
    from streams.alerts.retrain_policy import RetrainPolicyConfig

    raw = {k: tuple(v) if k == "kinds" else v for k, v in dict(raw or {}).items()}
    return cfg.section(RetrainPolicyConfig, raw, "worker.retrain")


__all__ = ["WorkerCore", "ConsumerView"]
