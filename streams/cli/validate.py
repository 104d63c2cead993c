"""``driftloop validate``: consume a topic, validate every record, dead-letter the bad ones.

The smallest real pipeline: a kafka-python consumer group reads the inputs (or labels)
topic, every record goes through the contract validator, bad records go to
``<topic>.dlq`` with their reason and original bytes, and offsets are committed only
after the dead letters are acknowledged (at-least-once; a restart resumes where it stopped).

A dead letter always fits the DLQ: it is encoded within ``dlq_max_bytes`` (the payload is cut
and ``raw_truncated``/``raw_length``/``raw_sha256`` say so, see DeadLetter.to_bytes).  A dead
letter that still cannot be written is retried, then the command stops without committing
past its record (never skips it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streams.contracts.events import DEFAULT_DLQ_MAX_BYTES, DEFAULT_MAX_FUTURE_S, DeadLetter, InvalidRecord
from streams.contracts.validate import parse_input, parse_label

log = logging.getLogger("driftloop.validate")
#: Attempts to write one dead letter before the command stops (each after the producer's own retries).
DLQ_ATTEMPTS = 3


class DeadLetterError(RuntimeError):
    """A dead letter could not be written: processing stops before committing past its record."""


@dataclass
class ValidationCounts:
    good: int = 0
    bad: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.good + sum(self.bad.values())

    def summary(self) -> str:
        lines = [f"records read: {self.total}", f"valid: {self.good}", f"dead-lettered: {sum(self.bad.values())}"]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.bad.items())]
        lines += [f"model {m}: {n} valid events" for m, n in sorted(self.models.items())]
        return "\n".join(lines)


def validate_topic(
    bootstrap: Any,
    topic: str,
    *,
    kind: str = "inputs",
    group: str = "driftloop-validate",
    idle_timeout_s: float = 5.0,
    max_records: int | None = None,
    max_future_s: float | None = DEFAULT_MAX_FUTURE_S,
    dlq_max_bytes: int = DEFAULT_DLQ_MAX_BYTES,
) -> ValidationCounts:
    """Consume ``topic`` until it has been idle for ``idle_timeout_s`` (or ``max_records``).

    ``max_future_s``: event times further ahead of the wall clock are dead-lettered (``future``);
    ``dlq_max_bytes``: the byte budget of one encoded dead letter.  ``bootstrap``: an address or a
    :class:`streams.adapters.kafka_clients.KafkaConnection`."""
    from kafka import KafkaConsumer, KafkaProducer

    from streams.adapters.kafka_clients import resolve

    conn = resolve(bootstrap)

    parse_fn = parse_input if kind == "inputs" else parse_label

    def parse(raw: bytes | None, now: float):
        return parse_fn(raw if raw is not None else b"", now=now, max_future_s=max_future_s)
    counts = ValidationCounts()
    consumer = KafkaConsumer(
        topic,
        **conn.kafka_python(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
    )
    producer = KafkaProducer(**conn.kafka_python(), acks="all", linger_ms=5)
    dlq = f"{topic}.dlq"
    last_data = time.monotonic()
    try:
        while max_records is None or counts.total < max_records:
            batches = consumer.poll(timeout_ms=500)
            if not batches:
                if time.monotonic() - last_data > idle_timeout_s:
                    break
                continue
            last_data = time.monotonic()
            pending = []
            now = time.time()
            for tp, records in batches.items():
                for rec in records:
                    try:
                        ev = parse(rec.value, now)
                    except InvalidRecord as err:
                        counts.bad[err.reason] += 1
                        letter = DeadLetter.from_bytes(tp.topic, tp.partition, rec.offset, err, rec.value)
                        value, key = letter.to_bytes(dlq_max_bytes), DeadLetter.key_for(rec.key)
                        pending.append((producer.send(dlq, value, key=key), value, key, letter))
                    else:
                        counts.good += 1
                        counts.models[f"{ev.model}/{getattr(ev, 'model_version', None) or '-'}"] += 1
            for fut, value, key, letter in pending:  # dead letters are durable before the offsets move
                _deliver(producer, dlq, fut, value, key, letter)
            consumer.commit()
    finally:
        consumer.close()
        producer.close()
    return counts


def _deliver(producer, dlq: str, fut, value: bytes, key: bytes | None, letter: DeadLetter) -> None:
    """Wait for one dead letter; resend it on failure; raise DeadLetterError after DLQ_ATTEMPTS."""
    for attempt in range(1, DLQ_ATTEMPTS + 1):
        try:
            fut.get(timeout=30)
            return
        except Exception as exc:
            where = f"{letter.topic}[{letter.partition}]@{letter.offset}"
            if attempt == DLQ_ATTEMPTS:
                raise DeadLetterError(f"dead letter of {where} ({len(value)} bytes) could not be written to {dlq} after "
                                      f"{attempt} attempts: {exc!r}; stopping before committing past it") from exc
            log.warning("dead letter of %s to %s failed (%r); attempt %d of %d", where, dlq, exc, attempt + 1, DLQ_ATTEMPTS)
            time.sleep(0.5 * attempt)
            fut = producer.send(dlq, value, key=key)


NEEDS_KAFKA = True  # streams/cli/main.py checks the broker answers before run()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", help="topic to validate (default: the inputs topic)")
    p.add_argument("--kind", choices=["inputs", "labels"], default="inputs")
    p.add_argument("--group", default="driftloop-validate", help="consumer group (offsets resume from here)")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="stop after this many idle seconds")
    p.add_argument("--max", type=int, default=None, help="stop after this many records")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.add_argument("--max-future-s", type=float, default=DEFAULT_MAX_FUTURE_S,
                   help="dead-letter events dated more than this many seconds ahead of the clock (reason future; <0: no check)")
    p.add_argument("--dlq-max-bytes", type=int, default=DEFAULT_DLQ_MAX_BYTES,
                   help="byte budget of one dead letter (the payload is cut beyond it)")


def run(args: argparse.Namespace) -> int:
    from streams import config as cfg

    from streams.adapters.kafka_clients import from_settings

    raw = cfg.load_file(args.config)
    kafka = cfg.kafka_settings(raw)
    topics = cfg.topics(raw)
    topic = args.topic or (topics.inputs if args.kind == "inputs" else topics.labels)
    counts = validate_topic(
        from_settings(kafka), topic, kind=args.kind, group=args.group, idle_timeout_s=args.idle_timeout, max_records=args.max,
        max_future_s=None if args.max_future_s < 0 else args.max_future_s, dlq_max_bytes=args.dlq_max_bytes,
    )
    if args.json:
        print(json.dumps({"good": counts.good, "bad": dict(counts.bad), "models": dict(counts.models)}))
    else:
        print(counts.summary(), file=sys.stdout)
    return 0
