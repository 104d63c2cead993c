"""Batch delivery for Faust: whole fetched batches of chosen topics go to one handler call.

Faust delivers every message on its own: two asyncio tasks and a queue hop per message, about
85 us of CPU per event here, which caps any Faust agent at ~10k events/s on one core
(bench/results/worker_throughput.tuning.md).  The drift worker needs one call per micro-batch,
not one per event, so for its hot topics (inputs, labels) this module hands the record lists
that Faust's consumer fetched straight to an async handler, and leaves every other topic (the
internal partials topic, table changelogs) on Faust's normal path.

What stays Faust's: group membership and the co-partitioned assignment (the topics are still
subscribed by agents), table recovery (records of a partition arrive only once Faust has
resumed it, i.e. after its tables recovered), pausing on rebalance and the offset commits.  A
handled batch is acknowledged the way Faust acknowledges a message (offsets into the consumer's
``_acked`` list, gaps as Faust records them), so Faust's periodic commit covers it.

Rebalance safety: a batch is never cancelled half-way: the fetcher awaits it through
``asyncio.shield`` and ``wait_empty`` (called by Faust before partitions are revoked) waits
for the batch in flight.

It also lowers the consumer's ``fetch_max_wait_ms`` (hard-coded to 1500 ms by Faust): an
empty partition (the assignor's, a quiet labels topic) otherwise holds the broker's one fetch
slot for 1.5 s while a batch is processed, and the next batch of a busy partition waits behind
it.

This relies on three internals of faust-streaming 0.15 (``Consumer._getmany``,
``Consumer._acked``/``_acked_index``/``_read_offset``/``_committed_offset``, and
``AIOKafkaConsumerThread._create_worker_consumer``) and one of aiokafka (the consumer's
``_fetch_max_wait_ms``); ``pyproject.toml`` pins both, and tests/test_batch_delivery.py
fails if any of them moves.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

log = logging.getLogger("driftloop.batch")

#: ``handler({partition: [records in offset order]})``; records have ``.partition``, ``.offset``,
#: ``.key`` and ``.value`` (aiokafka ``ConsumerRecord``).  It returns once the batch is applied to
#: the worker's state, with ``None`` or an awaitable that completes when the batch's effects (state
#: writes, sends) are acknowledged by Kafka; only then are its offsets acknowledged.  Meanwhile the
#: next batch is processed (up to ``max_unsettled`` batches wait for Kafka at once).  Raising, in the
#: handler or the awaitable, stops the worker (like an agent crash).
BatchHandler = Callable[[Mapping[int, Sequence[Any]]], Awaitable[Awaitable[None] | None]]


@dataclass
class BatchDelivery:
    """Which topics go to which handler, the consumer's fetch wait, and the settle pipeline depth."""

    handlers: dict[str, BatchHandler] = field(default_factory=dict)
    fetch_max_wait_ms: int = 100
    max_unsettled: int = 2


def install(app: Any, delivery: BatchDelivery) -> None:
    """Make ``app`` use the batch-delivering consumer.  Call right after ``faust.App(...)``."""
    from faust.transport.drivers import aiokafka as drv

    class Thread(drv.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            if not hasattr(consumer, "_fetch_max_wait_ms"):
                raise RuntimeError("aiokafka moved AIOKafkaConsumer._fetch_max_wait_ms; update streams/adapters/batch_delivery.py")
            consumer._fetch_max_wait_ms = int(delivery.fetch_max_wait_ms)
            return consumer

    class Consumer(drv.Consumer):
        _inflight: asyncio.Future | None = None
        _unsettled: list | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._acked_through: dict = {}  # tp -> last offset acknowledged by batch delivery (gap detection)

        def _new_consumer_thread(self) -> Any:
            return Thread(self, loop=self.loop, beacon=self.beacon)

        async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
            records = await super()._getmany(active_partitions, timeout)
            if not records or not delivery.handlers:
                return records
            mine = [tp for tp in records if tp.topic in delivery.handlers]
            if not mine:
                return records
            batches: dict[str, dict[int, list]] = {}
            tp_objs: dict[tuple[str, int], Any] = {}  # aiokafka's TopicPartition: transactions insist on that type
            for tp in mine:
                recs = records.pop(tp)
                if not self.flow_active or (active_partitions is not None and tp not in active_partitions):
                    continue  # rebalancing: Faust seeks back to the committed offsets, these come again
                r_offset = self._read_offset[tp]
                if r_offset is not None and recs and recs[0].offset < r_offset:  # re-read after a seek
                    recs = [r for r in recs if r.offset >= r_offset]
                if recs:
                    batches.setdefault(tp.topic, {})[tp.partition] = recs
                    tp_objs[(tp.topic, tp.partition)] = tp
            for topic, by_partition in batches.items():
                task = asyncio.ensure_future(delivery.handlers[topic](by_partition))
                self._inflight = task
                try:
                    settled = await asyncio.shield(task)  # cancelled fetcher: the batch still completes (wait_empty awaits it)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._fail(topic, exc)
                    raise
                finally:
                    self._inflight = None
                tps = {p: tp_objs[(topic, p)] for p in by_partition}
                for p, recs in by_partition.items():
                    self._read_offset[tps[p]] = recs[-1].offset
                await self._queue_settle(tps, by_partition, settled)
            return records

        async def _queue_settle(self, tps: Mapping[int, Any], by_partition: Mapping[int, Sequence[Any]], settled: Any) -> None:
            """Acknowledge the batch once its effects are acknowledged, in batch order, in the background."""
            pending = self._unsettled = self._unsettled if self._unsettled is not None else []
            previous = pending[-1] if pending else None

            async def settle() -> None:
                if previous is not None:
                    await previous
                if settled is not None:
                    try:
                        await settled
                    except Exception as exc:
                        await self._fail(next(iter(tps.values())).topic, exc)
                        raise
                await self._ack(tps, by_partition)

            fut = asyncio.ensure_future(settle())
            pending.append(fut)
            fut.add_done_callback(lambda f: pending.remove(f) if f in pending else None)
            while len(pending) > delivery.max_unsettled:
                first = pending[0]
                try:
                    await asyncio.shield(first)
                finally:  # awaiting a finished future does not yield, so its done callback has not run yet
                    if first in pending:
                        pending.remove(first)

        async def _fail(self, topic: str, exc: BaseException) -> None:
            log.error("batch of %s failed (%r); stopping the worker", topic, exc, exc_info=exc)
            await self.app.crash(exc)

        async def _ack(self, tps: Mapping[int, Any], by_partition: Mapping[int, Sequence[Any]]) -> None:
            """Acknowledge handled records as Faust acknowledges messages (commit follows)."""
            for p, recs in by_partition.items():
                tp = tps[p]
                committed = self._committed_offset[tp]
                prev = self._acked_through.get(tp)
                first, last = recs[0].offset, recs[-1].offset
                if last - first + 1 == len(recs) and (prev is None or first - prev <= 1):
                    offsets: Any = range(first if committed is None else max(first, committed), last + 1)  # no gap
                else:
                    offsets = [r.offset for r in recs if committed is None or r.offset >= committed]
                    for o in offsets:  # gaps (transaction markers, compaction) count as acknowledged
                        if prev is not None and o - prev > 1:
                            await self._add_gap(tp, prev + 1, o)
                        prev = o
                acked_index = self._acked_index[tp]
                new = offsets if acked_index.isdisjoint(offsets) else [o for o in offsets if o not in acked_index]
                acked_index.update(new)
                self._acked[tp].extend(new)
                self._n_acked += len(new)
                self._acked_through[tp] = last

        async def wait_empty(self) -> None:
            for task in [self._inflight, *(self._unsettled or [])]:
                if task is not None:
                    try:
                        await asyncio.shield(task)
                    except Exception:  # reported where it failed
                        pass
            self._acked_through.clear()  # before a rebalance: partitions may come back at other offsets
            await super().wait_empty()

    class Transport(drv.Transport):
        pass

    Transport.Consumer = Consumer
    app.transport = Transport(app.conf.broker_consumer, app)
