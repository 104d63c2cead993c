"""Faust agents of the drift worker: thin loops around :mod:`streams.worker_state`.

Three agents (see :mod:`streams.app` for the wiring):

* ``inputs``: micro-batches of the inputs topic (each fetched batch, see :mod:`streams.batch_delivery`,
  or ``stream.take_events`` with ``worker.delivery: stream``) -> validate ->
  dead letters | per-partition :class:`SourceState` -> partials + watermarks on the internal topic;
  inputs stored for the label join;
* ``labels``: micro-batches of the labels topic -> validate -> :class:`JoinState` ->
  labelled examples topic, labelled-window partials;
* ``aggregate``: the internal topic -> :class:`AggState` per (model, version) -> judge ->
  alerts topic, retrain requests.

Every batch waits for its sends and state writes to be acknowledged by Kafka before the
batch's offsets can be committed, so state is never behind the committed offsets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from typing import Any, Awaitable, Iterable, Mapping, Sequence

from streams import worker_state as ws
from streams.events import Alert, DeadLetter, InvalidRecord, parse_input, parse_label
from streams.dedupe import EventDedup
from streams.partitioners import PartitionerCheck
from streams.retrain_policy import RetrainPolicyConfig, RetrainState, decide

log = logging.getLogger("driftloop.worker")
BOOTSTRAP_SOURCE = "worker-bootstrap"


# Reference profiles by (model, version), looked up by a hash of the names inside
# ``worker.reference_dir`` (never a path built from an event): see streams/reference_store.py.
from streams.reference_store import ReferenceStore as Profiles  # noqa: E402


def _decoded(data: Any, key: str, default: Any = None) -> Any:
    """A table value; values recovered from the changelog arrive as JSON bytes and are decoded once."""
    v = data.get(key, default)
    if isinstance(v, (bytes, bytearray)):
        v = ws.decode_state(v)
        data[key] = v
    return v


class TableKV:
    """Mutable-mapping view of one changelog partition's keys (``<prefix><key>``) of a Faust table.

    Values live decoded in the table's memory store; writes also send a changelog record (JSON
    encoded by msgspec: the tables use the raw serializer) to partition ``partition``, collected
    in ``futs`` and awaited by the caller before the batch is acknowledged.
    """

    def __init__(self, table: Any, prefix: str, partition: int, futs: list | None = None) -> None:
        self.table, self.prefix, self.partition = table, prefix, partition
        self.futs: list = [] if futs is None else futs

    def keys(self) -> list[str]:
        n = len(self.prefix)
        return [k[n:] for k in list(self.table.data.keys()) if isinstance(k, str) and k.startswith(self.prefix)]

    def get(self, k: str, default: Any = None) -> Any:
        return _decoded(self.table.data, self.prefix + k, default)

    def __setitem__(self, k: str, v: Any) -> None:
        self.table.data[self.prefix + k] = v
        self.futs.append(self.table.send_changelog(self.partition, self.prefix + k, ws.encode_state(v)))

    def pop(self, k: str, default: Any = None) -> Any:
        key = self.prefix + k
        if key not in self.table.data:
            return default
        v = _decoded(self.table.data, key)
        del self.table.data[key]
        self.futs.append(self.table.send_changelog(self.partition, key, None))
        return v


class Worker:
    """State caches, locks and the batch handlers the agents call."""

    def __init__(self, app: Any, settings: Any, metrics: Any, topics: dict[str, Any], state: Any, joins: Any,
                 parity_step: Any = None) -> None:
        self.app, self.s, self.m, self.t = app, settings, metrics, topics
        self.state, self.joins = state, joins
        self.parity = parity_step
        w = settings.worker
        d = settings.drift
        self.geom = ws.Geometry(float(d.window_seconds), float(d.hop), w.lateness(d.allowed_lateness_s))
        self.ttl = float(w.label_ttl_s)
        self.port = ws.engine_port(d)
        self.profiles = Profiles(settings.reference_dir, on_broken=lambda *_: metrics.broken_references.inc())
        self.max_future_s = None if w.max_future_s is None or w.max_future_s < 0 else float(w.max_future_s)
        self.retrain_cfg = _retrain_config(w.retrain)
        self.n = settings.partitions
        self.locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.agg_lock = asyncio.Lock()
        self.sources: dict[int, ws.SourceState] = {}
        self.joinstates: dict[int, ws.JoinState] = {}
        self.stores: dict[int, ws.InputStore] = {}
        self.aggs: dict[str, ws.AggState] = {}
        self.wms: dict[int, ws.Watermarks] = {}
        self.active_at: dict[int, float] = {}  # owned source partition -> wall time of its last records (or assignment)
        self.idle: set[int] = set()  # owned source partitions announced idle to the aggregators
        self.partitioner = PartitionerCheck()
        self.dedup: dict[int, EventDedup] = {}  # without the label join: recent event ids per partition (memory only)
        self.paused: set = set()  # inputs/labels partitions held back by _pace

    # ------------------------------------------------------------------ state helpers
    def reset_caches(self, keep_stores: set[int] = frozenset()) -> None:
        self.paused.clear()  # a rebalance resumes every partition Faust assigns
        self.sources.clear()
        self.joinstates.clear()
        for p in [p for p in self.stores if p not in keep_stores]:
            del self.stores[p]
        self.aggs.clear()
        self.wms.clear()
        self.active_at.clear()
        self.idle.clear()
        self.dedup.clear()

    def _put(self, key: str, value: Any, partition: int, futs: list) -> None:
        TableKV(self.state, "", partition, futs)[key] = value

    def _get(self, key: str) -> Any:
        return _decoded(self.state.data, key)

    def source(self, p: int) -> ws.SourceState:
        st = self.sources.get(p)
        if st is None:
            st = self.sources[p] = ws.SourceState(p, self._get(f"in|{p}"))
        return st

    def joinstate(self, p: int) -> ws.JoinState:
        st = self.joinstates.get(p)
        if st is None:
            st = self.joinstates[p] = ws.JoinState(p, self._get(f"lb|{p}"))
        return st

    def store(self, p: int, futs: list) -> ws.InputStore:
        st = self.stores[p]  # created by _ensure_store at the start of the batch
        st.kv.futs = futs
        return st

    async def _ensure_store(self, p: int) -> None:
        """The label-join store of partition ``p``: in memory, or rebuilt from the inputs topic (its changelog)."""
        if p in self.stores:
            return
        st = ws.InputStore(TableKV(self.joins, f"j|{p}|", p))
        js = self.joinstate(p)
        if js.store_from is not None and js.store_from <= js.in_offset:
            t0 = time.perf_counter()
            records = await read_partition(self.s.bootstrap, self.s.topics.inputs, p, js.store_from, js.in_offset)
            n = st.rebuild(records)
            log.info("label join, partition %d: %d stored inputs rebuilt from %s offsets %d..%d in %.1f s", p, n,
                     self.s.topics.inputs, js.store_from, js.in_offset, time.perf_counter() - t0)
        self.stores[p] = st

    def agg(self, mv: str) -> ws.AggState:
        st = self.aggs.get(mv)
        if st is None:
            m, v = ws.mv_parts(mv)
            st = self.aggs[mv] = ws.AggState(m, v, self._get(f"agg|{mv}"))
            if st.profile is None and not st.ref_windows and not st.judged_through:
                prof = self.profiles.get(m, v)
                # a profile this worker group bootstrapped is rebuilt from the rows in the state,
                # never taken from the file (a stale state must not skip its reference windows)
                if prof is not None and prof.source != BOOTSTRAP_SOURCE:
                    st.set_profile(prof, "registered")
            if st.profile is not None:
                self.profiles.put(st.profile_obj(self.port), save=st.profile_source == "bootstrap")
                self.m.reference.labels(model=m, model_version=v, source=st.profile_source).set(1)
        return st

    def watermarks(self, q: int) -> ws.Watermarks:
        st = self.wms.get(q)
        if st is None:
            st = self.wms[q] = ws.Watermarks(self._get(f"wm|{q}"))
        return st

    async def _send(self, topic: Any, key: Any, value: Any, futs: list, partition: int | None = None) -> None:
        if not isinstance(value, (bytes, bytearray)):
            value = ws.encode_state(value)
        futs.append(await topic.send(key=key, value=value, partition=partition))

    @staticmethod
    def _wait(futs: list) -> Awaitable[None]:
        """An awaitable for the sends in ``futs`` (taken now: ``futs`` is cleared)."""
        pending = [asyncio.ensure_future(f) if not isinstance(f, asyncio.Future) else f for f in futs]
        futs.clear()
        return asyncio.gather(*pending)

    async def _dead_letter(self, topic_name: str, dlq: Any, rec: Any, err: Any, futs: list) -> None:
        # A dead letter always fits (its payload is cut to worker.dlq_max_bytes, raw_length/raw_sha256
        # kept).  Its delivery (resent up to 3 times) is an awaitable in ``futs``: if it still fails, the
        # awaiting batch raises and the worker stops before the batch's offsets are acknowledged.
        # The caller must await these before writing a state that moves past the record (issue 11).
        from streams.events import DEFAULT_DLQ_MAX_BYTES

        raw = rec.value if isinstance(rec.value, (bytes, bytearray)) else (rec.value or b"")
        dl = DeadLetter.from_bytes(topic_name, rec.partition, rec.offset, err, bytes(raw))
        value = dl.to_bytes(int(self.s.worker.dlq_max_bytes or DEFAULT_DLQ_MAX_BYTES))
        key = DeadLetter.key_for(rec.key)
        where = f"{topic_name}[{rec.partition}]@{rec.offset}"
        first = await dlq.send(key=key, value=value)

        async def delivered(fut: Any = first, attempts: int = 3) -> None:
            for attempt in range(1, attempts + 1):
                try:
                    await fut
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if attempt == attempts:
                        log.error("dead letter of %s (%d bytes) could not be written after %d attempts (%r); stopping the "
                                  "worker before its offsets move past the record", where, len(value), attempts, exc)
                        raise RuntimeError(f"dead letter of {where} could not be written: {exc!r}") from exc
                    log.warning("dead letter of %s failed (%r); attempt %d of %d", where, exc, attempt + 1, attempts)
                    await asyncio.sleep(0.5 * attempt)
                    fut = await dlq.send(key=key, value=value)

        futs.append(delivered())
        self.m.invalid.labels(topic=topic_name, reason=dl.reason).inc()

    def _fresh(self, topic_name: str, recs: Sequence[Any], done_through: int) -> list:
        """Records after the state's offset (earlier ones are already in the state: a replay after a restart)."""
        if recs and recs[0].offset > done_through:
            return list(recs)
        fresh = [r for r in recs if r.offset > done_through]
        if len(recs) > len(fresh):
            self.m.replayed.labels(topic=topic_name).inc(len(recs) - len(fresh))
        return fresh

    def _count_events(self, topic_name: str, events: Iterable[Any]) -> None:
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for e in events:
            counts[(e.model, e.model_version or "")] += 1
        for (m, v), k in counts.items():
            self.m.events.labels(topic=topic_name, model=m, model_version=v).inc(k)

    # ------------------------------------------------------------------ inputs
    async def on_inputs(self, by_partition: Mapping[int, Sequence[Any]]) -> Awaitable[None]:
        """One micro-batch of the inputs topic: records (``.partition/.offset/.key/.value``) per partition, offset order.

        Applies the batch to the state and queues its sends; returns an awaitable that completes when
        Kafka has acknowledged them (the batch's offsets may be acknowledged only after that)."""
        t0 = time.perf_counter()
        name = self.s.topics.inputs
        futs: list = []
        accepted_all = []
        n_records = 0
        for p in sorted(by_partition):
            async with self.locks[p]:
                src = self.source(p)
                recs = self._fresh(name, by_partition[p], src.offset)
                n_records += len(recs)
                if not recs:
                    continue
                await self._announce_active(p, futs)
                self._check_partitioner("inputs", p, recs)
                valid = []
                dead: list = []  # dead letters of this partition: delivered before its state moves past them
                for r in recs:
                    try:
                        valid.append((r.offset, parse_input(r.value or b"", max_future_s=self.max_future_s)))
                    except InvalidRecord as err:
                        await self._dead_letter(name, self.t["inputs_dlq"], r, err, dead)
                if valid:
                    valid = await self._first_occurrences(p, valid)
                if not valid:
                    await self._wait(dead)
                    src.offset = recs[-1].offset
                    self._put(f"in|{p}", src.to_dict(), p, futs)
                    continue
                out = src.ingest(valid, self.geom, self.port, self.profiles.get, self.s.worker.max_rows_per_message)
                src.offset = max(src.offset, recs[-1].offset)
                accepted = valid
                by_offset = {r.offset: r for r in recs} if (out.late or len(valid) < len(recs)) else None
                if out.late:
                    late_ids = {o for o, _ in out.late}
                    for o, e in out.late:
                        err = InvalidRecord("late", f"event time {e.ts} is older than the closed window (watermark {src.wm}, "
                                                    f"allowed lateness {self.geom.lateness} s); raise worker.allowed_lateness_s to accept it")
                        await self._dead_letter(name, self.t["inputs_dlq"], by_offset[o], err, dead)
                        self.m.late.labels(topic=name, model=e.model, model_version=e.model_version).inc()
                    accepted = [(o, e) for o, e in valid if o not in late_ids]
                if dead:
                    await self._wait(dead)
                accepted_all.extend(e for _, e in accepted)
                for mv, rec in out.records:
                    await self._send(self.t["partials"], mv.encode(), rec, futs)
                    self.m.partials.labels(action="published").inc()
                if out.watermark_moved:
                    for q in range(self.n):
                        await self._send(self.t["partials"], b"wm", ws.watermark_record(p, ws.INPUTS, src.wm), futs, partition=q)
                    self.m.watermark.labels(stream="inputs", partition=str(p)).set(src.wm)
                    self.m.event_time_lag.labels(stream="inputs", partition=str(p)).set(time.time() - src.wm)
                if self.s.worker.label_join and accepted:
                    await self._ensure_store(p)
                    js = self.joinstate(p)
                    raws = [r.value for r in recs] if by_offset is None else [by_offset[o].value for o, _ in accepted]
                    js.store_inputs(self.store(p, futs), accepted, src.wm, raws, ttl=self.ttl,
                                    labels_behind=self._labels_behind(p))
                    self._put(f"lb|{p}", js.to_dict(), p, futs)
                self._put(f"in|{p}", src.to_dict(), p, futs)
                self._pace(p)
        self._count_events(name, accepted_all)
        if self.parity is not None and accepted_all:
            try:
                alerts = await self.parity.check(accepted_all)
            except Exception as exc:  # the parity step must never stop drift detection
                log.warning("parity step failed: %r", exc)
                alerts = []
            await self._publish_alerts(alerts, futs)
        self.m.batch_size.labels(agent="inputs").observe(n_records)
        self.m.processing.labels(agent="inputs").observe(time.perf_counter() - t0)
        return self._wait(futs)

    # ------------------------------------------------------------------ labels
    async def on_labels(self, by_partition: Mapping[int, Sequence[Any]]) -> Awaitable[None]:
        """One micro-batch of the labels topic (same shape and contract as :meth:`on_inputs`)."""
        t0 = time.perf_counter()
        name = self.s.topics.labels
        futs: list = []
        n_records = 0
        for p in sorted(by_partition):
            async with self.locks[p]:
                js = self.joinstate(p)
                recs = self._fresh(name, by_partition[p], js.offset)
                n_records += len(recs)
                if not recs:
                    continue
                await self._announce_active(p, futs)
                self._check_partitioner("labels", p, recs)
                valid = []
                dead = []
                for r in recs:
                    try:
                        valid.append((r.offset, parse_label(r.value or b"", max_future_s=self.max_future_s)))
                    except InvalidRecord as err:
                        await self._dead_letter(name, self.t["labels_dlq"], r, err, dead)
                if dead:
                    await self._wait(dead)  # delivered before the join state moves past them
                self._count_events(name, (lab for _, lab in valid))
                if self.s.worker.label_join:
                    await self._ensure_store(p)
                    src = self.source(p)
                    if src.wm is not None and (js.input_wm is None or src.wm > js.input_wm):
                        js.input_wm = src.wm
                    out = js.ingest_labels(self.store(p, futs), valid, self.geom, self.ttl, self.port, self._profile_for_labels)
                    await self._join_outputs(p, out, futs)
                js.offset = max(js.offset, recs[-1].offset)
                self._put(f"lb|{p}", js.to_dict(), p, futs)
                self._pace(p)
        self.m.batch_size.labels(agent="labels").observe(n_records)
        self.m.processing.labels(agent="labels").observe(time.perf_counter() - t0)
        return self._wait(futs)

    def _profile_for_labels(self, model: str, version: str) -> Any:
        return self.profiles.get(model, version)

    async def _join_outputs(self, p: int, out: ws.JoinOutcome, futs: list) -> None:
        for ex in out.pairs:
            await self._send(self.t["labelled"], ex.event_id.encode(), json.dumps(ex.to_dict(), sort_keys=True).encode(), futs)
        for outcome in ("matched", "duplicate", "unknown", "expired_inputs", "too_late", "late_pairs"):
            k = getattr(out, outcome)
            if k:
                self.m.labels.labels(outcome=outcome).inc(k)
        for mv, rec in out.records:
            await self._send(self.t["partials"], mv.encode(), rec, futs)
        if out.watermark is not None:
            for q in range(self.n):
                await self._send(self.t["partials"], b"wm", ws.watermark_record(p, ws.LABELS, out.watermark), futs, partition=q)

    def _pace(self, p: int) -> None:
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
        tps = {tp.topic: tp for tp in self._assigned(p)}
        tp_in, tp_lab = tps.get(self.s.topics.inputs), tps.get(self.s.topics.labels)
        if src is None or js is None or tp_in is None or tp_lab is None:
            return
        in_wm, lab_wm = src.wm, js.label_wm
        lead = None if in_wm is None or lab_wm is None else in_wm - lab_wm
        hold = None
        if in_wm is not None and (lab_wm is None or lead > self.ttl) and self._backlog(tp_lab):
            hold = tp_in
        elif lab_wm is not None and (in_wm is None or lead < -self.ttl) and self._backlog(tp_in):
            hold = tp_lab
        for tp in (tp_in, tp_lab):
            if tp == hold and tp not in self.paused:
                self.app.consumer.pause_partitions([tp])
                self.paused.add(tp)
                self.m.paced.labels(topic=tp.topic, partition=str(p)).inc()
                log.info("%s[%d] paused: ahead of the other stream by more than the label TTL (%.0f s of event time) "
                         "while the other has unread records", tp.topic, p, abs(lead) if lead is not None else float("inf"))
            elif tp != hold and tp in self.paused:
                self.app.consumer.resume_partitions([tp])
                self.paused.discard(tp)

    def _labels_behind(self, p: int) -> bool:
        tp = next((tp for tp in self._assigned(p) if tp.topic == self.s.topics.labels), None)
        return tp is not None and self._backlog(tp)

    def _backlog(self, tp: Any, unknown: bool = False) -> bool:
        """Records of ``tp`` on the broker not handed to the worker yet (``unknown`` while nothing was fetched)."""
        consumer = self.app.consumer
        try:
            hw = consumer.highwater(tp)
        except Exception:  # not fetched yet
            return unknown
        if hw is None:
            return unknown
        read = consumer._read_offset.get(tp)
        return hw > (read + 1 if read is not None else 0)

    def _assigned(self, p: int) -> list:
        return [tp for tp in self._assigned_all() if tp.partition == p]

    def _assigned_all(self) -> list:
        try:
            return list(self.app.consumer.assignment())
        except Exception:  # pragma: no cover - not started
            return []

    async def join_tick(self) -> None:
        """Periodic: retry waiting labels and close labelled windows when only inputs moved."""
        if not self.s.worker.label_join:
            return
        for tp in list(self.paused):  # the other stream may have caught up without a batch of this one
            self._pace(tp.partition)
        for p in list(self.joinstates):
            async with self.locks[p]:
                js = self.joinstates.get(p)
                if js is None or not (js.waiting or js.open):
                    continue
                await self._ensure_store(p)
                futs: list = []
                src = self.sources.get(p)
                if src is not None and src.wm is not None and (js.input_wm is None or src.wm > js.input_wm):
                    js.input_wm = src.wm
                out = js.ingest_labels(self.store(p, futs), [], self.geom, self.ttl, self.port, self._profile_for_labels)
                if out.pairs or out.records or out.unknown or out.expired_inputs:
                    await self._join_outputs(p, out, futs)
                    self._put(f"lb|{p}", js.to_dict(), p, futs)
                    await self._wait(futs)

    # ------------------------------------------------------------------ aggregate
    async def on_partials(self, events: list) -> None:
        t0 = time.perf_counter()
        by_q: dict[int, list] = defaultdict(list)
        for ev in events:
            by_q[ev.message.partition].append(ev)
        futs: list = []
        async with self.agg_lock:
            for q in sorted(by_q):
                touched: dict[str, ws.AggState] = {}
                wmst = self.watermarks(q)
                wm_touched = False
                for ev in sorted(by_q[q], key=lambda e: e.message.offset):
                    o, rec = ev.message.offset, ws.decode_state(ev.value)
                    if rec.get("type") == "wm":
                        if o <= wmst.offset:
                            continue
                        wmst.offset = o
                        wm_touched = True
                        if wmst.update(rec["stream"], int(rec["src"]), rec["wm"], idle=bool(rec.get("idle"))):
                            for mv in list(wmst.mvs):
                                agg = self.agg(mv)
                                if o <= agg.offset:
                                    continue
                                agg.offset = o
                                touched[mv] = agg
                                await self._judge(agg, rec["stream"], wmst, futs, q)
                        continue
                    mv = ws.mv_key(rec["model"], rec["version"])
                    agg = self.agg(mv)
                    if o <= agg.offset:
                        continue
                    if mv not in wmst.mvs:
                        wmst.mvs.append(mv)
                        wm_touched = True
                    agg.offset = o
                    touched[mv] = agg
                    if agg.add(rec, self.port, TableKV(self.state, "", q, futs)):
                        self.m.partials.labels(action="merged").inc()
                    else:
                        self.m.partials.labels(action="duplicate").inc()
                    await self._judge(agg, rec["stream"], wmst, futs, q)
                await self._wait(futs)  # alerts and requests out before the state says they are done
                for mv in sorted(touched):  # objects held locally: a rebalance may reset the caches meanwhile
                    self._put(f"agg|{mv}", touched[mv].to_dict(), q, futs)
                if wm_touched:
                    self._put(f"wm|{q}", wmst.to_dict(), q, futs)
                await self._wait(futs)
        self.m.processing.labels(agent="aggregate").observe(time.perf_counter() - t0)

    async def _announce_active(self, p: int, futs: list) -> None:
        """Records arrived on source partition ``p``: if it was announced idle, it holds the watermark again."""
        self.active_at[p] = time.time()
        if p in self.idle:
            self.idle.discard(p)
            self.m.source_idle.labels(partition=str(p)).set(0)
            log.info("source partition %d is active again: it holds the event-time watermark again", p)
            await self._send_watermarks(p, futs, idle=False)

    async def _first_occurrences(self, p: int, valid: list) -> list:
        """``valid`` (offset, event) without events whose ``event_id`` was seen already (a producer's retry).

        With the label join, the ids of the join store (the inputs of the last label TTL, rebuilt from
        the inputs topic after a restart) say what was seen; without it, an in-memory
        :class:`streams.dedupe.EventDedup` over one window plus the allowed lateness."""
        ids = [e.event_id for _, e in valid]
        if self.s.worker.label_join:
            await self._ensure_store(p)
            seen = self.stores[p].index
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
            self.m.duplicates.labels(topic=self.s.topics.inputs).inc(n_dup)
            return [v for v, k in zip(valid, keep) if k]
        return valid

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

    async def _send_watermarks(self, p: int, futs: list, idle: bool) -> None:
        src, js = self.source(p), self.joinstate(p)
        for stream, wm in ((ws.INPUTS, src.wm), (ws.LABELS, js.labelled_wm(self.ttl))):
            for q in range(self.n):
                await self._send(self.t["partials"], b"wm", ws.watermark_record(p, stream, wm, idle=idle), futs, partition=q)

    async def idle_tick(self) -> None:
        """Periodic: announce owned source partitions that went idle, so they stop holding the watermark back.

        A source partition is idle when nothing arrived on its inputs and labels for
        ``worker.idle_source_timeout_s`` of wall time *and* the broker holds nothing unread there (as
        Flink's ``withIdleness``, but a partition with a backlog is never idle, so a slow or rebalancing
        worker does not close windows early).  Without this, a producer that keys by model name (all of
        one model's traffic on one partition) stalls every window: the silent partitions never advance
        the event-time watermark.  The aggregators then take the smallest watermark of the active
        partitions; an idle partition's events, when they come, count in windows not judged yet."""
        t = self.s.worker.idle_source_timeout_s
        if t <= 0:
            return
        now = time.time()
        owned: dict[int, list] = defaultdict(list)
        for tp in self._assigned_all():
            if tp.topic in (self.s.topics.inputs, self.s.topics.labels):
                owned[tp.partition].append(tp)
        for p, tps in sorted(owned.items()):
            if p in self.idle:
                continue
            since = self.active_at.setdefault(p, now)
            if now - since < t or any(self._backlog(tp, unknown=True) for tp in tps):
                continue
            async with self.locks[p]:
                futs: list = []
                await self._send_watermarks(p, futs, idle=True)
                await self._wait(futs)
            self.idle.add(p)
            self.m.source_idle.labels(partition=str(p)).set(1)
            log.warning("source partition %d of %s: nothing for %.0f s and nothing unread; it no longer holds the "
                        "event-time watermark back (worker.idle_source_timeout_s)", p, self.s.topics.inputs, t)

    async def _judge(self, agg: ws.AggState, stream: str, wmst: ws.Watermarks, futs: list, q: int) -> None:
        stream = ws.LABELS if stream == ws.LABELS else ws.INPUTS
        gwm = wmst.global_wm(stream, self.n)
        if gwm is None or not agg.pending.get(stream):
            return
        out = agg.judge_ready(stream, gwm, self.geom, self.port, self.s.worker.reference_bootstrap_n, TableKV(self.state, "", q, futs))
        m, v = agg.model, agg.version
        for w, n in out.reference_windows:
            self.m.reference_windows.labels(model=m, model_version=v).inc(n)
        if out.reference_built is not None:
            prof = out.reference_built
            log.info("built reference %s for %s v%s from the first %d events (windows %s .. %s); judging from now on",
                     prof.id, m, v, agg.ref_n, agg.ref_windows[0], agg.ref_windows[-1])
            self.m.reference.labels(model=m, model_version=v, source="bootstrap").set(1)
            try:
                self.profiles.put(prof, save=True)
            except OSError as exc:
                log.warning("could not save the bootstrapped reference: %r", exc)
        for st, w, n in out.judged:
            self.m.window_samples.labels(model=m, model_version=v, stream=st).set(n)
            self.m.windows_judged.labels(model=m, model_version=v, stream=st).inc()
        alerts = out.alerts
        if not alerts:
            return
        if self.parity is not None and hasattr(self.parity, "explain"):
            alerts = self.parity.explain(alerts)
        await self._publish_alerts(alerts, futs)
        rstate = RetrainState.from_dict(agg.retrain)
        open_parity = ()
        if self.parity is not None and hasattr(self.parity, "open_parity_features"):
            open_parity = self.parity.open_parity_features(m, v)
        dec = decide(self.retrain_cfg, rstate, alerts, agg.n_labelled, open_parity)
        agg.retrain = dec.state.to_dict()
        self.m.retrain_requests.labels(model=m, decision=dec.reason).inc()
        if dec.request is not None:
            await self._send(self.t["retrain_requests"], dec.request.request_id.encode(), dec.request.to_json().encode(), futs)
            log.info("retrain request %s for %s v%s (%s)", dec.request.request_id, m, v, dec.request.reason)

    async def _publish_alerts(self, alerts: Iterable[Alert], futs: list) -> None:
        for a in alerts:
            await self._send(self.t["alerts"], a.alert_id.encode(), a.to_json().encode(), futs)
            self.m.alerts.labels(kind=a.kind, severity=a.severity).inc()
            if a.feature:
                self.m.drift_score.labels(model=a.model, model_version=a.model_version, feature=a.feature, metric=a.metric).set(a.score)
            log.info("alert %s %s %s/%s %s=%.4g (%s) window [%s, %s) n=%d", a.alert_id, a.kind, a.model, a.model_version,
                     a.metric, a.score, a.severity, a.window.start, a.window.end, a.window.n)

    # ------------------------------------------------------------------ lag
    async def update_lag(self) -> None:
        consumer = self.app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:  # pragma: no cover - not started yet
            return
        for tp in assignment:
            try:
                hw = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)
            except Exception:
                continue
            if hw is None:
                continue
            pos = committed if committed is not None else 0
            self.m.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, hw - pos))


async def read_partition(bootstrap: str, topic: str, partition: int, first: int, last: int) -> list[tuple[int, bytes]]:
    """(offset, value) of ``topic``/``partition`` from offset ``first`` through ``last`` (what the log still has)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                         max_partition_fetch_bytes=8 * 1024 * 1024)
    await c.start()
    out: list[tuple[int, bytes]] = []
    try:
        c.assign([tp])
        begin = (await c.beginning_offsets([tp]))[tp]
        if begin > first:
            log.warning("label join: %s[%d] no longer has offsets %d..%d (retention); inputs stored there are lost "
                        "for the join: keep the inputs topic at least two label TTLs", topic, partition, first, begin - 1)
        c.seek(tp, max(first, begin))
        end = (await c.end_offsets([tp]))[tp]
        stop = min(last + 1, end)
        while await c.position(tp) < stop:
            for recs in (await c.getmany(tp, timeout_ms=1000)).values():
                out.extend((r.offset, r.value) for r in recs if r.offset <= last and r.value is not None)
    finally:
        await c.stop()
    return out


def _retrain_config(raw: Any) -> RetrainPolicyConfig:
    from streams import config as cfg

    raw = dict(raw or {})
    if "kinds" in raw:
        raw["kinds"] = tuple(raw["kinds"])
    return cfg.section(RetrainPolicyConfig, raw, "worker.retrain")


def _by_partition(events: Iterable[Any]) -> dict[int, list]:
    out: dict[int, list] = defaultdict(list)
    for ev in events:
        out[ev.message.partition].append(ev.message)
    for recs in out.values():
        recs.sort(key=lambda m: m.offset)
    return out


def register(app: Any, settings: Any, metrics: Any, parity_step: Any = None, delivery: Any = None) -> Worker:
    """Create topics, tables and agents on ``app``; returns the :class:`Worker`.

    With ``delivery`` (a :class:`streams.batch_delivery.BatchDelivery` installed on ``app``) the inputs
    and labels topics are handed to the worker batch by batch; their agents stay subscribed (Faust
    assigns their partitions together with the tables') but see no message.
    """
    t = settings.topics
    n = settings.partitions
    raw = dict(value_serializer="raw", key_serializer="raw")
    topics = {
        "inputs": app.topic(t.inputs, partitions=n, **raw),
        "labels": app.topic(t.labels, partitions=n, **raw),
        "inputs_dlq": app.topic(t.dlq(t.inputs), **raw),
        "labels_dlq": app.topic(t.dlq(t.labels), **raw),
        "alerts": app.topic(t.alerts, **raw),
        "labelled": app.topic(t.labelled, **raw),
        "retrain_requests": app.topic(t.retrain_requests, **raw),
        "partials": app.topic(settings.partials_topic, partitions=n, internal=True, **raw),
    }
    import faust

    schema = faust.Schema(key_serializer="json", value_serializer="raw")  # values: msgspec JSON (TableKV)
    state = app.Table("state", default=None, partitions=n, schema=schema,
                      extra_topic_configs={"max.message.bytes": "8000000"})
    joins = app.Table("joinstore", default=None, partitions=n, schema=schema)
    worker = Worker(app, settings, metrics, topics, state, joins, parity_step)
    app.driftloop_worker = worker
    w = settings.worker

    if delivery is not None:
        delivery.handlers[t.inputs] = worker.on_inputs
        delivery.handlers[t.labels] = worker.on_labels

    @app.agent(topics["inputs"], name="driftloop.inputs")
    async def inputs(stream):
        async for events in stream.take_events(w.batch_size, within=w.batch_within_s):
            await (await worker.on_inputs(_by_partition(events)))

    @app.agent(topics["labels"], name="driftloop.labels")
    async def labels(stream):
        async for events in stream.take_events(w.batch_size, within=w.batch_within_s):
            await (await worker.on_labels(_by_partition(events)))

    @app.agent(topics["partials"], name="driftloop.aggregate")
    async def aggregate(stream):
        async for events in stream.take_events(w.batch_size, within=min(w.batch_within_s, 0.1)):
            await worker.on_partials(list(events))

    @app.timer(max(0.5, w.lag_interval_s))
    async def lag():
        await worker.update_lag()

    @app.timer(1.0)
    async def join_tick():
        await worker.join_tick()

    @app.timer(1.0)
    async def idle_tick():
        await worker.idle_tick()

    @app.task
    async def serve_metrics():
        if w.metrics_port:
            try:
                metrics.serve(w.metrics_port)
                log.info("serving /metrics on port %d", w.metrics_port)
            except OSError as exc:
                log.error("cannot serve /metrics on port %d: %s; set worker.metrics_port", w.metrics_port, exc)

    def _on_revoked(*_a, **_kw):
        worker.reset_caches(keep_stores=set(worker.stores))  # eager rebalancing revokes everything; see below

    def _on_assigned(sender: Any = None, assigned: Any = (), **_kw):
        # a label-join store stays only for an inputs partition this worker keeps (rebuilding one means
        # reading two label TTLs of the inputs topic); a partition that left may come back changed
        mine = {tp.partition for tp in assigned or () if getattr(tp, "topic", None) == t.inputs}
        worker.reset_caches(keep_stores=mine)

    app.on_partitions_revoked.connect(_on_revoked)
    app.on_partitions_assigned.connect(_on_assigned)
    return worker
