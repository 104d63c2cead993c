"""A dead letter that cannot be written is resent, then stops processing; it is never skipped (issue 11)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from streams.contracts.events import DEFAULT_DLQ_MAX_BYTES, DeadLetter, InvalidRecord


class FailingFuture:
    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def get(self, timeout=None):
        if not self.ok:
            raise RuntimeError("MessageSizeTooLargeError")


class FakeProducer:
    def __init__(self, fail_times: int) -> None:
        self.fail_times, self.sent = fail_times, []

    def send(self, topic, value, key=None):
        self.sent.append((topic, key, value))
        return FailingFuture(len(self.sent) > self.fail_times)


def _letter():
    return DeadLetter.from_bytes("t", 0, 7, InvalidRecord("not_json", "x"), b"{bad")


def test_validate_resends_a_failed_dead_letter_then_stops(monkeypatch):
    from streams.cli import validate as validate_cmd

    monkeypatch.setattr(validate_cmd.time, "sleep", lambda s: None)
    value = _letter().to_bytes()
    p = FakeProducer(fail_times=2)
    validate_cmd._deliver(p, "t.dlq", p.send("t.dlq", value), value, None, _letter())
    assert len(p.sent) == 3  # two failures, then delivered
    p = FakeProducer(fail_times=10)
    with pytest.raises(validate_cmd.DeadLetterError, match="t\\[0\\]@7"):
        validate_cmd._deliver(p, "t.dlq", p.send("t.dlq", value), value, None, _letter())
    assert len(p.sent) == validate_cmd.DLQ_ATTEMPTS


class FakeTopic:
    def __init__(self, fail_times: int) -> None:
        self.fail_times, self.sent = fail_times, []

    async def send(self, key=None, value=None, partition=None):
        self.sent.append((key, value))
        fut = asyncio.get_running_loop().create_future()
        if len(self.sent) <= self.fail_times:
            fut.set_exception(RuntimeError("broker said no"))
        else:
            fut.set_result(None)
        return fut


def _core_letter(dlq_max_bytes: int, rec):
    """The dead letter the worker core makes of ``rec`` (encoded within ``dlq_max_bytes``), and its counter."""
    from streams.worker.core import WorkerCore

    core = WorkerCore.__new__(WorkerCore)  # only what _dead_letter uses
    counter = SimpleNamespace(n=0)
    core.s = SimpleNamespace(worker=SimpleNamespace(dlq_max_bytes=dlq_max_bytes))
    core.m = SimpleNamespace(invalid=SimpleNamespace(labels=lambda **kw: SimpleNamespace(inc=lambda: setattr(counter, "n", counter.n + 1))))
    from streams.worker.effects import Recorder

    core.rec = Recorder(lambda table: {})
    core._dead_letter("in", "inputs_dlq", rec, InvalidRecord("not_json", "x"))
    (letter,) = core.rec.fx.dead_letters
    return letter, counter


@pytest.mark.parametrize("fail_times, ok", [(0, True), (2, True), (3, False)])
def test_worker_dead_letters_fit_are_resent_and_a_lasting_failure_raises(monkeypatch, fail_times, ok):
    from streams.adapters import faust_agents as agents

    async def no_sleep(s):
        return None

    monkeypatch.setattr(agents.asyncio, "sleep", no_sleep)
    rec = SimpleNamespace(key=b"k" * 5000, value=b'"\\' * 200_000, partition=1, offset=9)
    letter, counter = _core_letter(100_000, rec)

    async def run():
        await agents.deliver_dead_letter(topic, letter)

    topic = FakeTopic(fail_times)
    if ok:
        asyncio.run(run())
    else:
        with pytest.raises(RuntimeError, match="dead letter of in\\[1\\]@9"):
            asyncio.run(run())
    assert len(topic.sent) == min(fail_times + 1, 3)
    key, value = topic.sent[-1]
    assert key == DeadLetter.key_for(rec.key) and len(value) <= 100_000 < DEFAULT_DLQ_MAX_BYTES
    assert json.loads(value)["raw_truncated"] and json.loads(value)["raw_length"] == 400_000
    assert counter.n == 1
