"""streams.batch_delivery against the real faust-streaming/aiokafka classes (no broker needed).

The worker's end-to-end tests (tests/test_worker_kafka.py) run batch delivery on a real broker and
wait for the group's committed offsets to reach the end of the inputs topic; these tests pin the
Faust/aiokafka internals it relies on, so an upgrade that moves them fails here, loudly.
"""

from __future__ import annotations

import asyncio
from collections import namedtuple

import pytest

from streams.batch_delivery import BatchDelivery, install

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
    assert type(consumer).__name__ == "Consumer" and type(consumer).__module__ == "streams.batch_delivery"

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
        consumer._read_offset[tp] = 4  # last offset handed out before
        await consumer._ack("inputs", {0: [Rec(0, 5, None, b""), Rec(0, 6, None, b""), Rec(0, 9, None, b"")]})
        return consumer._new_offset(tp)

    assert asyncio.run(go()) == 10  # 5, 6, the gap 7-8 (transaction markers or compaction), 9
    assert consumer._read_offset[tp] == 9
    assert consumer._n_acked == 3


def test_only_the_chosen_topics_are_diverted(app):
    from faust.types import TP

    seen: list = []

    async def handler(by_partition):
        seen.append({p: [r.offset for r in recs] for p, recs in by_partition.items()})

    delivery = BatchDelivery(handlers={"inputs": handler})
    install(app, delivery)
    consumer = app.consumer
    fetched = {TP("inputs", 0): [Rec(0, 0, None, b"a"), Rec(0, 1, None, b"b")], TP("other", 0): [Rec(0, 0, None, b"x")]}

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
