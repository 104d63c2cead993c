"""``driftloop validate``: consume a topic, validate every record, dead-letter the bad ones.

The smallest real pipeline: a kafka-python consumer group reads the inputs (or labels)
topic, every record goes through the contract validator, bad records go to
``<topic>.dlq`` with their reason and original bytes, and offsets are committed only
after the dead letters are acknowledged (at-least-once; a restart resumes where it stopped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from streams.events import DeadLetter, InvalidRecord, parse_input, parse_label


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
    bootstrap: str,
    topic: str,
    *,
    kind: str = "inputs",
    group: str = "driftloop-validate",
    idle_timeout_s: float = 5.0,
    max_records: int | None = None,
) -> ValidationCounts:
    """Consume ``topic`` until it has been idle for ``idle_timeout_s`` (or ``max_records``)."""
    from kafka import KafkaConsumer, KafkaProducer

    parse = parse_input if kind == "inputs" else parse_label
    counts = ValidationCounts()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
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
            for tp, records in batches.items():
                for rec in records:
                    try:
                        ev = parse(rec.value)
                    except InvalidRecord as err:
                        counts.bad[err.reason] += 1
                        letter = DeadLetter.from_bytes(tp.topic, tp.partition, rec.offset, err, rec.value)
                        pending.append(producer.send(dlq, letter.to_json().encode(), key=rec.key))
                    else:
                        counts.good += 1
                        counts.models[f"{ev.model}/{getattr(ev, 'model_version', None) or '-'}"] += 1
            for fut in pending:
                fut.get(timeout=30)  # dead letters are durable before the offsets move
            consumer.commit()
    finally:
        consumer.close()
        producer.close()
    return counts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", help="topic to validate (default: the inputs topic)")
    p.add_argument("--kind", choices=["inputs", "labels"], default="inputs")
    p.add_argument("--group", default="driftloop-validate", help="consumer group (offsets resume from here)")
    p.add_argument("--idle-timeout", type=float, default=5.0, help="stop after this many idle seconds")
    p.add_argument("--max", type=int, default=None, help="stop after this many records")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")


def run(args: argparse.Namespace) -> int:
    from streams import config as cfg

    raw = cfg.load_file(args.config)
    kafka = cfg.kafka_settings(raw)
    topics = cfg.topics(raw)
    topic = args.topic or (topics.inputs if args.kind == "inputs" else topics.labels)
    counts = validate_topic(
        kafka.bootstrap_servers, topic, kind=args.kind, group=args.group, idle_timeout_s=args.idle_timeout, max_records=args.max
    )
    if args.json:
        print(json.dumps({"good": counts.good, "bad": dict(counts.bad), "models": dict(counts.models)}))
    else:
        print(counts.summary(), file=sys.stdout)
    return 0
