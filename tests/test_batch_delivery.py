"""streams.adapters.batch_delivery against the real faust-streaming/aiokafka classes (no broker needed).

The worker's end-to-end tests (tests/test_worker_kafka.py) run batch delivery on a real broker and
wait for the group's committed offsets to reach the end of the inputs topic; these tests pin the
Faust/aiokafka internals it relies on, so an upgrade that moves them fails here, loudly.
"""

from __future__ import annotations

import asyncio
import threading
from collections import namedtuple

import pytest

from streams.adapters.batch_delivery import BatchDelivery, install

Rec = namedtuple("Rec", "partition offset key value")


@pytest.fixture
def app(tmp_path):
    import faust

    a = faust.App(f"bd-test-{tmp_path.name}", broker="kafka://127.0.0.1:9", store="memory://", datadir=str(tmp_path),
                  web_enabled=False, autodiscover=False)
    yield a


def test_consumer_gets_the_configured_fetch_wait(app):
    delivery = BatchDelivery(fetch_max_wait_ms=37)
    install(app, delivery)
    consumer = app.consumer
    assert type(consumer).__name__ == "Consumer" and type(consumer).__module__ == "streams.adapters.batch_delivery"

    async def create():  # aiokafka wants a running loop; nothing connects before start()
        return consumer._thread._create_worker_consumer(app.transport)

    assert asyncio.run(create())._fetch_max_wait_ms == 37


def test_handled_batches_are_acknowledged_like_faust_messages_with_gaps(app):
    delivery = BatchDelivery()
    install(app, delivery)
    consumer = app.consumer
    from faust.types import TP

    tp = TP("inputs", 0)

    async def go():
        consumer._acked_through[tp] = 4  # last offset acknowledged before
        await consumer._ack({0: tp}, {0: [Rec(0, 5, None, b""), Rec(0, 6, None, b""), Rec(0, 9, None, b"")]})
        return consumer._new_offset(tp)

    assert asyncio.run(go()) == 10  # 5, 6, the gap 7-8 (transaction markers or compaction), 9
    assert consumer._acked_through[tp] == 9
    assert consumer._n_acked == 3


def test_only_the_chosen_topics_are_diverted(app):
    from faust.types import TP

    seen: list = []

    async def handler(by_partition):
        seen.append({p: [r.offset for r in recs] for p, recs in by_partition.items()})

    delivery = BatchDelivery(handlers={"inputs": handler})
    install(app, delivery)
    consumer = app.consumer
    from aiokafka import TopicPartition

    # aiokafka's own TopicPartition, as fetched: Kafka transactions (exactly_once) reject Faust's TP in commits
    fetched = {TopicPartition("inputs", 0): [Rec(0, 0, None, b"a"), Rec(0, 1, None, b"b")], TP("other", 0): [Rec(0, 0, None, b"x")]}

    async def fake_parent_getmany(self, active, timeout):
        return dict(fetched)

    base = type(consumer).__mro__[1]
    original = base._getmany
    base._getmany = fake_parent_getmany
    try:
        rest = asyncio.run(consumer._getmany({TP("inputs", 0), TP("other", 0)}, 1.0))
    finally:
        base._getmany = original
    assert seen == [{0: [0, 1]}]
    assert list(rest) == [TP("other", 0)]  # Faust's per-message path keeps the rest
    assert consumer._read_offset[TP("inputs", 0)] == 1
    assert [type(k) for k in consumer._acked] == [TopicPartition]


def test_offsets_are_acknowledged_only_after_the_batch_settles_and_in_batch_order(app):
    from faust.types import TP

    tp = TP("inputs", 0)
    gates: list[asyncio.Future] = []

    async def handler(by_partition):
        gate = asyncio.get_running_loop().create_future()
        gates.append(gate)
        return gate  # settles when the test says so (as if Kafka acknowledged the batch's writes)

    delivery = BatchDelivery(handlers={"inputs": handler}, max_unsettled=2)
    install(app, delivery)
    consumer = app.consumer

    async def go():
        batches = [[Rec(0, 0, None, b""), Rec(0, 1, None, b"")], [Rec(0, 2, None, b"")]]
        for b in batches:
            fetched = {tp: b}

            async def parent(self, active, timeout, fetched=fetched):
                return dict(fetched)

            base = type(consumer).__mro__[1]
            original, base._getmany = base._getmany, parent
            try:
                await consumer._getmany({tp}, 1.0)
            finally:
                base._getmany = original
        await asyncio.sleep(0.01)
        assert list(consumer._acked[tp]) == []  # nothing settled yet
        gates[1].set_result(None)  # the second batch settles first ...
        await asyncio.sleep(0.01)
        assert list(consumer._acked[tp]) == []  # ... but waits for the first
        gates[0].set_result(None)
        await asyncio.sleep(0.01)
        return list(consumer._acked[tp])

    assert asyncio.run(go()) == [0, 1, 2]


def test_a_settled_batch_whose_callbacks_have_not_run_yet_does_not_stall_the_fetcher(app):
    """Awaiting a finished future does not yield to the loop, so the done callback that drops it from
    the pending list cannot run: the fetcher must drop it itself (it spun at 100 % CPU before)."""
    from faust.types import TP

    tp = TP("inputs", 0)

    async def handler(by_partition):
        return None

    install(app, BatchDelivery(handlers={"inputs": handler}, max_unsettled=1))
    consumer = app.consumer

    async def go():
        finished = asyncio.get_running_loop().create_future()
        finished.set_result(None)
        consumer._unsettled = [finished]  # settled, its done callbacks still queued
        base = type(consumer).__mro__[1]

        async def parent(self, active, timeout):
            return {tp: [Rec(0, 0, None, b"")]}

        original, base._getmany = base._getmany, parent
        try:
            await asyncio.wait_for(consumer._getmany({tp}, 1.0), 5)
        finally:
            base._getmany = original
        await asyncio.sleep(0.01)
        return list(consumer._acked[tp])

    # a spinning loop never reaches wait_for's timeout: run it in a thread and give up on it
    result: list = []
    t = threading.Thread(target=lambda: result.append(asyncio.run(go())), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "the fetcher spins on a settled batch"
    assert result == [[0]]
