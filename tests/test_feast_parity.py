"""Parity against the real Feast repository: a buggy server vs. a real change in the world,
and a store that is down or hangs (the step reports "unknown" and does not block)."""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import datetime, timezone

import pandas as pd
import pytest

from streams.contracts.events import Alert, AlertReference, AlertWindow
from streams.contracts.validate import parse_input
from streams.adapters.feast_online import FeastOnlineClient, LookupConfig
from streams.alerts.parity import METRIC_MISMATCH, METRIC_UNKNOWN, ParityConfig
from streams.adapters.parity_step import ParityMetrics, ParityStep

pytestmark = pytest.mark.feast

FEATURE = "customer_avg_amount_30d"
CFG = ParityConfig(window_seconds=60, allowed_lateness_s=5, min_samples=50, schema_min_events=50)
START = 1_764_115_200.0


def make_step(repo_path, online="sqlite", redis=None, lookup=None, metrics=None) -> ParityStep:
    client = FeastOnlineClient.from_repo(repo_path, online, redis, lookup or LookupConfig(timeout_s=5.0))
    return ParityStep(client, CFG, metrics)


def stream(values, n=1500, skews=(), seed=1):
    from feature_repo.data_gen import serving_events

    return [parse_input(e) for e in serving_events(values, n, seed=seed, start_ts=START, skews=skews)]


async def drive(step: ParityStep, events, batch=200) -> list[Alert]:
    await step.start([("fraud", "1")])
    alerts: list[Alert] = []
    for i in range(0, len(events), batch):
        alerts += await step.check(events[i:i + batch])
    return alerts + step.flush()


def drift_alert(feature: str) -> Alert:
    return Alert("fraud", "1", "data_drift", feature, "psi", 2.3, 0.25, 1e-12, "critical",
                 AlertWindow(START, START + 60, 1500), AlertReference("ref-fraud-1", 3000))


def test_server_scaling_one_feature_for_20_percent_of_entities_gives_a_parity_alert(feast_repo):
    from feature_repo.data_gen import Skew

    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    skew = Skew(FEATURE, factor=100.0, fraction=0.2)
    step = make_step(feast_repo.path, metrics=ParityMetrics(registry))
    try:
        alerts = asyncio.run(drive(step, stream(feast_repo.values(), skews=[skew])))
    finally:
        step.close()
    assert [(a.kind, a.feature, a.metric) for a in alerts] == [("parity", FEATURE, METRIC_MISMATCH)]
    a = alerts[0]
    assert 0.1 < a.score < 0.35 and a.severity == "critical"
    assert a.details["typical_ratio"] == pytest.approx(100.0, rel=1e-3)
    assert a.details["entity_keys"] and all(skew.hits(k["customer_id"]) for k in a.details["entity_keys"])
    assert a.reference.id == "feast:driftloop_demo/fraud"
    assert step.open_parity_features("fraud", "1") == {FEATURE}
    assert step.client.stats.cache_hits > 0 and step.client.stats.timeouts == 0

    # the data-drift finding on the same feature is explained by the parity alert (no retrain)
    explained, other = step.explain([drift_alert(FEATURE), drift_alert("amount")])
    assert explained.explained_by == a.alert_id and explained.details["retrain"] is False
    assert other.explained_by is None

    text = generate_latest(registry).decode()
    assert f'driftloop_parity_mismatch_rate{{feature="{FEATURE}",model="fraud",model_version="1"}}' in text
    assert 'driftloop_parity_lookups_total{result="ok"}' in text


def test_same_shift_in_store_and_stream_gives_no_parity_alert(tmp_path):
    """A real change in the world: the store's values moved too (pushed), so served == stored."""
    from feature_repo.data_gen import Skew

    from tests.fixtures_feast import build_repo, copy_repo

    repo = build_repo(copy_repo(tmp_path / "repo"))
    values = repo.values()
    skew = Skew(FEATURE, factor=100.0, fraction=0.2)
    now = datetime.now(timezone.utc)
    moved = {c: dict(v) for c, v in values["customer_id"].items()}
    rows = []
    for cid, v in moved.items():
        if skew.hits(cid):
            v[FEATURE] = v[FEATURE] * 100.0
            rows.append({"customer_id": cid, "event_timestamp": now, "created": now, **v})
    repo.store.push("customer_stats_push", pd.DataFrame(rows))
    world = {"customer_id": moved, "merchant_id": values["merchant_id"]}
    events = stream(world)
    before = stream(values)
    mean = lambda evs: sum(e.features[FEATURE] for e in evs) / len(evs)  # noqa: E731
    assert mean(events) > 5 * mean(before)  # the data really shifted

    step = make_step(repo.path)
    try:
        alerts = asyncio.run(drive(step, events))
    finally:
        step.close()
    assert alerts == []
    assert step.checker.last_rates[("fraud", "1", FEATURE)] == (0.0, len(events))
    assert step.explain([drift_alert(FEATURE)])[0].explained_by is None  # drift stays unexplained


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_online_store_reports_unknown_once_and_does_not_raise(feast_repo):
    # Redis online store configured at a port where nothing listens (the registry is the repo's)
    step = make_step(feast_repo.path, "redis", f"127.0.0.1:{_closed_port()}",
                     LookupConfig(timeout_s=2.0, retry_after_s=0.0))
    events = stream(feast_repo.values(), n=600)
    try:
        alerts = asyncio.run(drive(step, events))
    finally:
        step.close()
    assert [(a.kind, a.metric) for a in alerts] == [("parity", METRIC_UNKNOWN)]
    assert alerts[0].details["status"] == "unknown"
    assert alerts[0].details["reason"].split(":")[0] in ("error", "timeout")
    assert step.checker.unknown_models() == {("fraud", "1"): alerts[0].details["reason"]}
    st = step.client.stats  # redis-py retries a refused connection for seconds: error or timeout, then back-off
    assert st.calls == 3 and st.failures + st.timeouts >= 1 and st.store_calls == 0


class Blackhole:
    """A TCP server that accepts connections and never answers (a hung store)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_hung_online_store_times_out_to_unknown_without_blocking_the_loop(feast_repo):
    hole = Blackhole()
    step = make_step(feast_repo.path, "redis", f"127.0.0.1:{hole.port}",
                     LookupConfig(timeout_s=0.3, retry_after_s=3600.0, warmup_lookup_s=0))
    events = stream(feast_repo.values(), n=400)

    async def main():
        await step.start([("fraud", "1")])
        ticks = 0
        done = asyncio.Event()

        async def other_work():  # stands for the drift detection sharing the event loop
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        worker = asyncio.create_task(other_work())
        first = await step.check(events[:200])
        ticks_during_first = ticks
        second = await step.check(events[200:])
        done.set()
        await worker
        return first, second, ticks_during_first

    try:
        first, second, ticks = asyncio.run(main())
    finally:
        step.close()
        hole.close()
    assert [a.metric for a in first] == [METRIC_UNKNOWN] and first[0].details["reason"].startswith("timeout")
    assert second == []  # alerted once; the second batch is not even sent to the hung store
    assert step.client.stats.timeouts == 1 and step.client.stats.skipped == 1
    assert ticks > 0  # the event loop kept running while the lookup hung


def test_hung_store_during_warm_up_is_reported_unknown(feast_repo):
    hole = Blackhole()
    step = make_step(feast_repo.path, "redis", f"127.0.0.1:{hole.port}", LookupConfig(timeout_s=0.3, warmup_lookup_s=0.5))
    events = stream(feast_repo.values(), n=200)

    async def main():
        await step.start([("fraud", "1")])  # returns although the warm-up lookup hangs
        return await step.check(events)

    try:
        alerts = asyncio.run(main())
    finally:
        step.close()
        hole.close()
    assert [a.metric for a in alerts] == [METRIC_UNKNOWN] and alerts[0].details["reason"].startswith("busy")


def test_first_batches_while_the_store_opens_are_counted_not_alerted(feast_repo):
    from feature_repo.data_gen import Skew

    from feature_repo.store import open_store

    gate = threading.Event()  # holds the store "opening" until the first batch went through

    def slow_open():
        assert gate.wait(60)
        return open_store(feast_repo.path)

    # no start(): the first lookup opens the store in the background
    step = ParityStep(FeastOnlineClient(slow_open, LookupConfig(timeout_s=5.0)), CFG)
    events = stream(feast_repo.values(), skews=[Skew(FEATURE, 100.0, 0.2)])

    async def main():
        first = await step.check(events[:100])
        assert step.client.stats.skipped == 1 and step.client.stats.store_calls == 0
        gate.set()
        await step.start([("fraud", "1")])  # wait for the store to be open
        rest = [a for i in range(100, len(events), 200) for a in await step.check(events[i:i + 200])]
        return first, rest + step.flush()

    try:
        first, rest = asyncio.run(main())
    finally:
        step.close()
    assert first == [] and step.checker.unknown_models() == {}
    assert [(a.feature, a.metric) for a in rest] == [(FEATURE, METRIC_MISMATCH)]
