"""The Faust adapter writes a batch's state to the changelog only after the batch's sends are acknowledged,
and keeps the order of the batches' state writes (streams/adapters/faust_agents.py, Worker.run).

SIGKILLed between the two, a state that said "done through offset X" while the partials of the records up to X
were still in flight lost those events (tests/test_faults.py caught it: a window judged with 399 of its 500
events).  Kafka is replaced by futures the test resolves by hand: this checks the adapter's ordering alone;
the fault suite checks the worker end to end on a real cluster."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from streams.adapters.faust_agents import Worker
from streams.worker.effects import Effects, Send, StateWrite


class Topic:
    def __init__(self) -> None:
        self.pending: list[asyncio.Future] = []

    async def send(self, key, value, partition=None):
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        return fut


class Table:
    def __init__(self, log: list) -> None:
        self.data: dict = {}
        self.log = log

    def send_changelog(self, partition, key, value):
        self.log.append(key)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def adapter(log: list) -> tuple[Worker, Topic]:
    w = Worker.__new__(Worker)
    topic = Topic()
    w.t = {"partials": topic}
    w.tables = {"state": Table(log), "joins": Table(log)}
    w.app = SimpleNamespace(consumer=SimpleNamespace(pause_partitions=None, resume_partitions=None))
    w._order = asyncio.Lock()
    w._state_chain = None
    return w, topic


def test_state_waits_for_the_sends_and_keeps_the_batch_order():
    async def scenario():
        log: list = []
        w, topic = adapter(log)
        first = await w.run(Effects(sends=[Send("partials", b"k", b"v")], state=[StateWrite("state", 0, "in|0", {"offset": 9})]))
        second = await w.run(Effects(state=[StateWrite("state", 0, "in|0", {"offset": 19})]))
        assert w.tables["state"].data["in|0"] == {"offset": 19}  # in memory at once: the next core call reads it
        for _ in range(5):
            await asyncio.sleep(0)
        assert log == []  # the partials are not acknowledged: no state may say they are done
        assert not first.done() and not second.done()
        topic.pending[0].set_result(None)
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        assert log == ["in|0", "in|0"]  # both, in the batches' order (the later value lands last)

    asyncio.run(scenario())


def test_a_failed_send_writes_no_state_and_fails_the_batch():
    async def scenario():
        log: list = []
        w, topic = adapter(log)
        done = await w.run(Effects(sends=[Send("partials", b"k", b"v")], state=[StateWrite("state", 0, "in|0", 1)]))
        topic.pending[0].set_exception(RuntimeError("broker gone"))
        try:
            await asyncio.wait_for(done, 5)
        except RuntimeError as exc:
            assert "broker gone" in str(exc)
        else:
            raise AssertionError("a batch whose send failed must not be acknowledged")
        assert log == []

    asyncio.run(scenario())


def test_a_cancelled_waiter_cancels_no_other_batch():
    """The waiter of one batch's acks is cancelled (a timer at stop): the next batch's state still lands once the
    sends are acknowledged, and the sends themselves are not cancelled."""
    async def scenario():
        log: list = []
        w, topic = adapter(log)
        first = await w.run(Effects(sends=[Send("partials", b"k", b"v")], state=[StateWrite("state", 0, "in|0", 1)]))
        second = await w.run(Effects(state=[StateWrite("state", 0, "in|0", 2)]))
        waiter = asyncio.ensure_future(asyncio.wait_for(first, 60))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.sleep(0)
        assert not topic.pending[0].cancelled()
        topic.pending[0].set_result(None)
        await asyncio.wait_for(second, 5)
        assert log == ["in|0", "in|0"]

    asyncio.run(scenario())
