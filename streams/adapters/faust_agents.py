"""Faust agents of the drift worker: a thin shell around :class:`streams.worker.core.WorkerCore`.

Three agents (see :mod:`streams.adapters.faust_app` for the wiring):

* ``inputs``: micro-batches of the inputs topic (each fetched batch, see :mod:`streams.adapters.batch_delivery`,
  or ``stream.take_events`` with ``worker.delivery: stream``);
* ``labels``: micro-batches of the labels topic;
* ``aggregate``: the internal partials topic;

plus timers (join retries and pacing, idle partitions, consumer lag).  Each hands its input to
the core and carries out the :class:`streams.worker.effects.Effects` it returns: dead letters
first (resent, and awaited, before any state moves past them), then the records, then the
state's changelog records, in call order.  A batch's offsets are acknowledged only when
Kafka acknowledged all of it, so state is never behind the committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any, Awaitable, Iterable, Mapping, Sequence

from streams.worker import state as ws
from streams.adapters.reference_store import ReferenceStore
from streams.worker.core import WorkerCore
from streams.worker.effects import Effects, Send

log = logging.getLogger("driftloop.worker")


class TableReader:
    """The core's read view of a Faust table: values recovered from the changelog arrive as JSON bytes
    and are decoded once."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str, default: Any = None) -> Any:
        data = self.table.data
        v = data.get(key, default)
        if isinstance(v, (bytes, bytearray)):
            v = ws.decode_state(v)
            data[key] = v
        return v

    def keys(self) -> list:
        return list(self.table.data.keys())


#: A partition's highwater is trusted for "nothing unread" only when a fetch answered for it this recently.
HIGHWATER_FRESH_S = 5.0


class ConsumerView:
    """The core's view of Faust's consumer: assignment and unread records (aiokafka internals, pinned by tests)."""

    @staticmethod
    def _fresh(consumer: Any, tp: Any) -> bool:
        """A fetch answered for ``tp`` within :data:`HIGHWATER_FRESH_S` (aiokafka's ``last_poll_timestamp``);
        True when the client does not say (an older aiokafka: the highwater alone, as before)."""
        client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
        if client is None or not hasattr(client, "last_poll_timestamp"):
            return True
        try:
            polled_ms = client.last_poll_timestamp(tp)
        except Exception:  # not assigned to the client (yet)
            return False
        return polled_ms is not None and time.time() * 1000 - polled_ms <= HIGHWATER_FRESH_S * 1000

    def __init__(self, app: Any) -> None:
        self.app = app
        self._tps: dict[tuple[str, int], Any] = {}

    def _assignment(self) -> list:
        try:
            return list(self.app.consumer.assignment())
        except Exception:  # pragma: no cover - not started
            return []

    def assigned(self) -> list[tuple[str, int]]:
        out = []
        for tp in self._assignment():
            self._tps[(tp.topic, tp.partition)] = tp
            out.append((tp.topic, tp.partition))
        return out

    def tp(self, topic: str, partition: int) -> Any:
        if (topic, partition) not in self._tps:
            self.assigned()
        return self._tps.get((topic, partition))

    def backlog(self, topic: str, partition: int) -> bool | None:
        """Whether ``partition`` has records not read yet; None when not known: nothing fetched yet, or the last
        fetch answer is older than :data:`HIGHWATER_FRESH_S` (a broker down or paused leaves the highwater
        standing, and a partition that only *looks* read up must not be announced idle: its records would come
        after the watermark moved past them)."""
        tp = self.tp(topic, partition)
        if tp is None:
            return None
        consumer = self.app.consumer
        try:
            hw = consumer.highwater(tp)
        except Exception:  # not fetched yet
            return None
        if hw is None:
            return None
        read = consumer._read_offset.get(tp)
        if hw > (read + 1 if read is not None else 0):
            return True
        return False if self._fresh(consumer, tp) else None  # "all read" only on a fresh answer


async def deliver_dead_letter(topic: Any, letter: Send, attempts: int = 3) -> None:
    """Send one dead letter and wait for Kafka's acknowledgement, resending up to ``attempts`` times.

    A letter that cannot be written stops the worker (RuntimeError) before its offsets move past the record."""
    for attempt in range(1, attempts + 1):
        try:
            await (await topic.send(key=letter.key, value=letter.value))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if attempt == attempts:
                log.error("dead letter of %s (%d bytes) could not be written after %d attempts (%r); stopping the "
                          "worker before its offsets move past the record", letter.where, len(letter.value), attempts, exc)
                raise RuntimeError(f"dead letter of {letter.where} could not be written: {exc!r}") from exc
            log.warning("dead letter of %s failed (%r); attempt %d of %d", letter.where, exc, attempt + 1, attempts)
            await asyncio.sleep(0.5 * attempt)


class Worker:
    """Runs the core's effects on Kafka and Faust's tables."""

    def __init__(self, app: Any, settings: Any, metrics: Any, topics: dict[str, Any], state: Any, joins: Any,
                 parity_step: Any = None) -> None:
        self.app, self.s, self.m, self.t = app, settings, metrics, topics
        self.tables = {"state": state, "joins": joins}
        readers = {name: TableReader(t) for name, t in self.tables.items()}
        profiles = ReferenceStore(settings.reference_dir, on_broken=lambda *_: metrics.broken_references.inc())
        self.core = WorkerCore(settings, metrics, readers.__getitem__, profiles, parity=parity_step)
        self.parity = parity_step
        self.view = ConsumerView(app)
        self._order = asyncio.Lock()  # effects go out in the order the core produced them
        self._state_chain: asyncio.Future | None = None  # the last batch's changelog writes, once handed over
        self._lag_series: set[tuple[str, str]] = set()  # (topic, partition) with a consumer lag series

    def reset_caches(self, keep_stores: Iterable[int] = ()) -> None:
        self.core.on_rebalance(keep_stores)

    @property
    def stores(self) -> dict:
        return self.core.stores

    async def _ensure_stores(self, partitions: Iterable[int]) -> None:
        """Join stores of ``partitions`` in memory: rebuilt from the inputs topic (their changelog) when needed."""
        for p in partitions:
            rng = self.core.store_to_rebuild(p)
            if rng is None:
                continue
            t0 = time.perf_counter()
            records = await read_partition(self.s.connection, self.s.topics.inputs, p, *rng)
            if self.core.store_to_rebuild(p) is None:  # rebuilt meanwhile (another batch)
                continue
            n = self.core.install_store(p, records)
            log.info("label join, partition %d: %d stored inputs rebuilt from %s offsets %d..%d in %.1f s", p, n,
                     self.s.topics.inputs, rng[0], rng[1], time.perf_counter() - t0)

    async def run(self, fx: Effects) -> Awaitable[None]:
        """Carry out ``fx`` (see :mod:`streams.worker.effects`); returns an awaitable for Kafka's acknowledgements."""
        writes = []
        for w in fx.state:  # applied (and encoded) now: the next core call reads them; the changelog follows
            table = self.tables[w.table]
            if w.value is None:
                table.data.pop(w.key, None)
                writes.append((table, w, None))
            else:
                table.data[w.key] = w.value
                writes.append((table, w, ws.encode_state(w.value)))
        futs: list = []
        async with self._order:
            if fx.dead_letters:
                await asyncio.gather(*(deliver_dead_letter(self.t[d.role], d) for d in fx.dead_letters))
            for snd in fx.sends:
                futs.append(await self.t[snd.role].send(key=snd.key, value=snd.value, partition=snd.partition))
            sent = self._wait(futs) if futs else None
            if writes:  # the state follows the sends it accounts for, and the state of earlier batches
                self._state_chain = asyncio.ensure_future(self._write_state(self._state_chain, sent, writes))
                done: Awaitable[Any] = asyncio.ensure_future(self._state_acked(self._state_chain))
            else:
                done = sent if sent is not None else self._wait(futs)
        consumer = self.app.consumer
        for topic, p in fx.pause:
            consumer.pause_partitions([self.view.tp(topic, p)])
        for topic, p in fx.resume:
            consumer.resume_partitions([self.view.tp(topic, p)])
        return done

    @staticmethod
    async def _write_state(before: "asyncio.Future | None", sent: "Awaitable[Any] | None", writes: list) -> list:
        """Hand ``writes`` to the changelog once the previous batch's writes were handed over and this batch's
        sends are acknowledged.  A state that says "done through offset X" never lands before what the records up
        to X produced: SIGKILLed between the two, the worker replays those records instead of skipping them
        (partials and labelled records are idempotent downstream: offsets, event ids)."""
        if before is not None:  # shielded: one batch's waiter cancelled (a timer at stop) cancels no other batch
            await asyncio.shield(before)
        if sent is not None:
            await asyncio.shield(sent)
        return [table.send_changelog(w.partition, w.key, value) for table, w, value in writes]

    @staticmethod
    async def _state_acked(issued: "asyncio.Future") -> None:
        await asyncio.gather(*(await asyncio.shield(issued)))

    @staticmethod
    def _wait(futs: list) -> Awaitable[None]:
        """An awaitable for the sends in ``futs`` (taken now: ``futs`` is cleared)."""
        pending = [asyncio.ensure_future(f) if not isinstance(f, asyncio.Future) else f for f in futs]
        futs.clear()
        return asyncio.gather(*pending)

    # ------------------------------------------------------------------ agents and timers
    async def on_inputs(self, by_partition: Mapping[int, Sequence[Any]]) -> Awaitable[None]:
        """One micro-batch of the inputs topic (the batch-delivery contract: an awaitable for the acks)."""
        t0 = time.perf_counter()
        if self.s.worker.label_join:
            await self._ensure_stores(by_partition)
        fx = self.core.on_inputs(by_partition, self.view)
        if self.parity is not None and fx.accepted:
            try:
                alerts = await self.parity.check(fx.accepted)
            except Exception as exc:  # the parity step must never stop drift detection
                log.warning("parity step failed: %r", exc)
                alerts = []
            if alerts:
                fx.extend(self.core.publish_alerts(alerts))
        done = await self.run(fx)
        self.m.processing.labels(agent="inputs").observe(time.perf_counter() - t0)
        return done

    async def on_labels(self, by_partition: Mapping[int, Sequence[Any]]) -> Awaitable[None]:
        t0 = time.perf_counter()
        if self.s.worker.label_join:
            await self._ensure_stores(by_partition)
        done = await self.run(self.core.on_labels(by_partition, self.view))
        self.m.processing.labels(agent="labels").observe(time.perf_counter() - t0)
        return done

    async def on_partials(self, events: list) -> None:
        t0 = time.perf_counter()
        recs = [(ev.message.partition, ev.message.offset, ev.value) for ev in events]
        await (await self.run(self.core.on_partials(recs)))
        self.m.processing.labels(agent="aggregate").observe(time.perf_counter() - t0)

    async def join_tick(self) -> None:
        await (await self.run(self.core.join_tick(self.view)))

    async def idle_tick(self) -> None:
        fx = self.core.idle_tick(self.view)
        if fx:
            await (await self.run(fx))
            # the aggregators this worker owns judge what the idle partitions were holding back
            # (other workers' aggregators see the idle records on their partitions of the internal topic)

    async def update_lag(self) -> None:
        """Consumer lag of the assigned partitions; a partition given away in a rebalance loses its series
        (a stale value would hold the lag panel and DriftloopConsumerLagHigh up for ever)."""
        consumer = self.app.consumer
        assigned = self.view._assignment()
        current = {(tp.topic, str(tp.partition)) for tp in assigned}
        for key in self._lag_series - current:
            try:
                self.m.consumer_lag.remove(*key)
            except KeyError:
                pass
        self._lag_series = current
        for tp in assigned:
            try:
                hw = consumer.highwater(tp)
                committed = consumer._committed_offset.get(tp)
            except Exception:
                continue
            if hw is None:
                continue
            pos = committed if committed is not None else 0
            self.m.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, hw - pos))


async def read_partition(bootstrap: Any, topic: str, partition: int, first: int, last: int) -> list[tuple[int, bytes]]:
    """(offset, value) of ``topic``/``partition`` from offset ``first`` through ``last`` (what the log still has).

    ``bootstrap``: an address or a :class:`streams.adapters.kafka_clients.KafkaConnection`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.adapters.kafka_clients import resolve

    tp = TopicPartition(topic, partition)
    c = AIOKafkaConsumer(**resolve(bootstrap).aiokafka(), enable_auto_commit=False, group_id=None,
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


def _by_partition(events: Iterable[Any]) -> dict[int, list]:
    out: dict[int, list] = defaultdict(list)
    for ev in events:
        out[ev.message.partition].append(ev.message)
    for recs in out.values():
        recs.sort(key=lambda m: m.offset)
    return out


def register(app: Any, settings: Any, metrics: Any, parity_step: Any = None, delivery: Any = None) -> Worker:
    """Create topics, tables and agents on ``app``; returns the :class:`Worker`.

    With ``delivery`` (a :class:`streams.adapters.batch_delivery.BatchDelivery` installed on ``app``) the inputs
    and labels topics are handed to the worker batch by batch; their agents stay subscribed (Faust
    assigns their partitions together with the tables') but see no message.
    """
    t = settings.topics
    n = settings.partitions
    raw = dict(value_serializer="raw", key_serializer="raw")
    durable = getattr(app, "driftloop_topic_configs", {})  # min.insync.replicas on a cluster of 3+ brokers
    topics = {
        "inputs": app.topic(t.inputs, partitions=n, **raw),
        "labels": app.topic(t.labels, partitions=n, **raw),
        "inputs_dlq": app.topic(t.dlq(t.inputs), **raw),
        "labels_dlq": app.topic(t.dlq(t.labels), **raw),
        "alerts": app.topic(t.alerts, **raw),
        "labelled": app.topic(t.labelled, **raw),
        "retrain_requests": app.topic(t.retrain_requests, **raw),
        "partials": app.topic(settings.partials_topic, partitions=n, internal=True, config=dict(durable), **raw),
    }
    import faust

    schema = faust.Schema(key_serializer="json", value_serializer="raw")  # values: msgspec JSON (TableKV)
    state = app.Table("state", default=None, partitions=n, schema=schema,
                      extra_topic_configs={"max.message.bytes": "8000000", **durable})
    joins = app.Table("joinstore", default=None, partitions=n, schema=schema, extra_topic_configs=dict(durable))
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
                metrics.serve(w.metrics_port, w.metrics_host)
                log.info("serving /metrics on %s:%d", w.metrics_host, w.metrics_port)
            except OSError as exc:
                log.error("cannot serve /metrics on %s:%d: %s; set worker.metrics_port (and worker.metrics_host)",
                          w.metrics_host, w.metrics_port, exc)

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
