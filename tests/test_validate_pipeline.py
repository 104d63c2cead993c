"""The smallest real pipeline against the real broker: validate a topic, dead-letter bad records,
resume from committed offsets."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams.contracts.events import REASONS, DeadLetter
from streams.contracts.validate import parse_input
from streams.adapters.kafka_admin import ensure_topics
from streams.cli.sample import SampleTraffic, malformed
from streams.cli.validate import validate_topic

pytestmark = pytest.mark.kafka


def _publish(bootstrap: str, topic: str, records: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for r in records:
        producer.send(topic, r)
    producer.flush()
    producer.close()


def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    out = []
    for rec in consumer:
        out.append(rec.value)
        if len(out) >= expected:
            break
    consumer.close()
    return out


def test_bad_records_are_dead_lettered_with_reasons_and_nothing_is_lost(kafka_bootstrap, unique_topic):
    topic = unique_topic
    ensure_topics(kafka_bootstrap, [topic, f"{topic}.dlq"], partitions=3)
    good = [json.dumps(e).encode() for e in SampleTraffic(seed=3).events(600)]
    bad = malformed(90, seed=3)
    _publish(kafka_bootstrap, topic, good[:300] + bad + good[300:])

    counts = validate_topic(kafka_bootstrap, topic, group=f"{topic}-g", idle_timeout_s=3)
    assert counts.good == len(good)
    assert sum(counts.bad.values()) == len(bad)

    letters = [DeadLetter(**json.loads(v)) for v in _read_all(kafka_bootstrap, f"{topic}.dlq", len(bad))]
    assert len(letters) == len(bad)
    assert all(letter.reason in REASONS and letter.error for letter in letters)
    assert sorted(letter.raw_bytes() for letter in letters) == sorted(bad)
    for letter in letters:  # each dead letter still fails validation for the reason it gives
        with pytest.raises(Exception):
            parse_input(letter.raw_bytes())


def test_a_restarted_validator_resumes_from_committed_offsets(kafka_bootstrap, unique_topic):
    topic = unique_topic
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    good = [json.dumps(e).encode() for e in SampleTraffic(seed=4).events(500)]
    _publish(kafka_bootstrap, topic, good[:200])
    first = validate_topic(kafka_bootstrap, topic, group=f"{topic}-g", idle_timeout_s=3)
    _publish(kafka_bootstrap, topic, good[200:])
    second = validate_topic(kafka_bootstrap, topic, group=f"{topic}-g", idle_timeout_s=3)
    assert (first.good, second.good) == (200, 300)
