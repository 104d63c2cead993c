"""Integration tests against the session's real Kafka broker (see tests/fixtures_kafka.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.adapters.kafka_admin import describe_topic, ensure_topics, list_user_topics, topic_end_offsets

pytestmark = pytest.mark.kafka

DEADLINE_S = 30.0  # upper bound for waiting on records; never a timing assertion


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=DEADLINE_S)
    finally:
        producer.close()


def _consume(consumer, want: int) -> list:
    """Poll until ``want`` records arrived or the deadline passed; return them in arrival order."""
    got: list = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            got.extend(batch)
    return got


def test_topic_with_several_partitions(kafka_bootstrap: str, unique_topic: str) -> None:
    assert ensure_topics(kafka_bootstrap, [unique_topic], partitions=3) == [unique_topic]
    assert ensure_topics(kafka_bootstrap, [unique_topic], partitions=3) == []  # idempotent

    meta = describe_topic(kafka_bootstrap, unique_topic)
    parts = sorted(meta["partitions"], key=lambda p: p["partition_index"])
    assert [p["partition_index"] for p in parts] == [0, 1, 2]
    assert all(p["leader_id"] >= 0 for p in parts)
    assert unique_topic in list_user_topics(kafka_bootstrap)
    assert topic_end_offsets(kafka_bootstrap, unique_topic) == {0: 0, 1: 0, 2: 0}


def test_kafka_python_roundtrip(kafka_bootstrap: str, kafka_topic_factory) -> None:
    from kafka import KafkaConsumer

    topic = kafka_topic_factory(partitions=2)
    sent = [(f"k{i % 5}".encode(), f"v{i}".encode()) for i in range(20)]
    _produce(kafka_bootstrap, topic, sent)

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
    try:
        got = _consume(consumer, len(sent))
    finally:
        consumer.close()

    assert sorted((r.key, r.value) for r in got) == sorted(sent)
    # One key always lands on one partition.
    partitions_by_key: dict[bytes, set[int]] = {}
    for r in got:
        partitions_by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(ps) == 1 for ps in partitions_by_key.values())
    assert sum(topic_end_offsets(kafka_bootstrap, topic).values()) == len(sent)


def test_aiokafka_roundtrip(kafka_bootstrap: str, kafka_topic_factory) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = kafka_topic_factory(partitions=2)
    sent = [f"event-{i}".encode() for i in range(15)]

    async def main() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i, value in enumerate(sent):
                await producer.send(topic, value=value, key=str(i).encode())
            await producer.flush()
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + DEADLINE_S
            while len(got) < len(sent) and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(r.value for r in batch)
        finally:
            await consumer.stop()
        return got

    assert sorted(asyncio.run(main())) == sorted(sent)


def test_consumer_group_resumes_from_committed_offsets(kafka_bootstrap: str, kafka_topic_factory) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    topic = kafka_topic_factory(partitions=3)
    group = f"{topic}.group"
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(30)]
    _produce(kafka_bootstrap, topic, sent)

    def consumer() -> KafkaConsumer:
        return KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=4)

    # First run: take some records, commit exactly what was taken, "crash" (close).
    first = consumer()
    try:
        taken = _consume(first, 10)
        assert taken, "the first consumer received nothing"
        commits: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in taken:
            tp = TopicPartition(r.topic, r.partition)
            commits[tp] = OffsetAndMetadata(max(r.offset + 1, commits[tp].offset if tp in commits else 0), "", -1)
        first.commit(commits)
    finally:
        first.close(autocommit=False)

    # Restart: the same group gets exactly the records that were not committed, none twice.
    second = consumer()
    try:
        rest = _consume(second, len(sent) - len(taken))
        rest += _consume_extra(second)
    finally:
        second.close(autocommit=False)

    taken_ids = [(r.partition, r.offset) for r in taken]
    rest_ids = [(r.partition, r.offset) for r in rest]
    assert not set(taken_ids) & set(rest_ids)
    assert len(set(rest_ids)) == len(rest_ids)
    assert sorted((r.key, r.value) for r in taken + rest) == sorted(sent)


def _consume_extra(consumer) -> list:
    """One more short poll: catches records delivered twice (there must be none)."""
    return [r for batch in consumer.poll(timeout_ms=300).values() for r in batch]


def test_transactions_on_single_broker(kafka_bootstrap: str, kafka_topic_factory) -> None:
    """Exactly-once (Faust's processing_guarantee) needs the transaction state log on one broker."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = kafka_topic_factory()

    async def main() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}.tx")
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed-1")
                await producer.send_and_wait(topic, b"committed-2")
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"aborted")
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed-3")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                    isolation_level="read_committed", enable_auto_commit=False)
        await consumer.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + DEADLINE_S
            while len(got) < 3 and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(r.value for r in batch)
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                got.extend(r.value for r in batch)
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(main()) == [b"committed-1", b"committed-2", b"committed-3"]


def test_ensure_topics_reports_what_the_broker_refused(kafka_bootstrap: str, unique_topic: str) -> None:
    from streams.adapters.kafka_admin import TopicSetupError

    with pytest.raises(TopicSetupError, match=unique_topic):
        ensure_topics(kafka_bootstrap, [unique_topic], partitions=1, replication=3)  # one broker only
    assert unique_topic not in list_user_topics(kafka_bootstrap)
