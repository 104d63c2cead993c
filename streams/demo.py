"""``driftloop demo``: the loop on one machine, on embedded defaults.

Starts what it needs (the local Kafka broker unless KAFKA_BOOTSTRAP_SERVERS points at one),
publishes sample card-payment traffic with malformed records mixed in, validates it with a
real consumer group (bad records to the dead-letter topic), and then runs each later stage
of the loop that this checkout provides.  Everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Iterator

from streams import config as cfg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=20000, help="good inference events to publish (default 20000)")
    p.add_argument("--bad", type=int, default=200, help="malformed records mixed in (default 200)")
    p.add_argument("--keep-running", action="store_true", help="leave the Kafka broker running afterwards")


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


@contextlib.contextmanager
def kafka_for_demo(raw: dict, keep_running: bool) -> Iterator[str]:
    """The bootstrap address of the configured cluster, or of a local broker started for the demo."""
    from infra.kafka.launcher import LocalKafka

    settings = cfg.kafka_settings(raw)
    kafka = LocalKafka(settings)
    res = kafka.start_detailed()
    if res.external:
        say(f"using your Kafka cluster at {res.bootstrap}")
    elif res.already_running:
        say(f"Kafka already running at {res.bootstrap} (pid {res.pid})")
    else:
        say(f"started Kafka {res.bootstrap} in {res.total_s:.1f}s (state in {kafka.state_dir})")
    started = not (res.external or res.already_running)
    try:
        yield res.bootstrap
    finally:
        if started and not keep_running:
            kafka.stop()
            say("stopped the Kafka broker it started")


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from streams.kafka_admin import ensure_topics
    from streams.sample import Drift, SampleTraffic, malformed
    from streams.validate_cmd import validate_topic

    raw = cfg.load_file(args.config)
    topics = cfg.topics(raw)
    run_id = uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    with kafka_for_demo(raw, args.keep_running) as bootstrap:
        # Fresh topic names per run so a rerun never mixes with old data.
        inputs = f"{topics.inputs}.demo-{run_id}"
        labels = f"{topics.labels}.demo-{run_id}"
        ensure_topics(bootstrap, [inputs, labels, f"{inputs}.dlq"], partitions=topics.partitions)
        say(f"created topics {inputs} ({topics.partitions} partitions), {labels}, {inputs}.dlq")

        traffic = SampleTraffic(seed=7)
        drift_at = traffic.start_ts + (args.events / 2) / traffic.rate_per_s
        traffic.drifts.append(Drift("amount", drift_at, scale=3.0))
        events = traffic.events(args.events)
        bad = malformed(args.bad, seed=7)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
        stride = max(1, len(events) // max(1, len(bad)))
        for i, ev in enumerate(events):
            producer.send(inputs, json.dumps(ev).encode(), key=ev["event_id"].encode())
            if i % stride == 0 and i // stride < len(bad):
                producer.send(inputs, bad[i // stride])
        for lab in traffic.labels(events):
            producer.send(labels, json.dumps(lab).encode(), key=lab["event_id"].encode())
        producer.flush()
        producer.close()
        say(
            f"published {len(events)} inference events (feature 'amount' x3 from the middle on), "
            f"{len(bad)} malformed records and {len(events)} labels"
        )

        counts = validate_topic(bootstrap, inputs, group=f"driftloop-demo-{run_id}", idle_timeout_s=3.0)
        say("validated the inputs topic with a real consumer group:")
        for line in counts.summary().splitlines():
            print(f"       {line}")
        ok = counts.good == len(events) and sum(counts.bad.values()) == len(bad)
        say(("every record accounted for" if ok else "MISMATCH: records lost or extra") + f" ({time.monotonic() - t0:.1f}s)")
        return 0 if ok else 1

