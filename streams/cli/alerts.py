"""``driftloop alerts``: follow the alerts topic and print each alert once (deduplicated by ``alert_id``).

Readable lines by default, JSON lines with ``--json``.  New alerts only, unless
``--from-beginning``; stops after ``--max`` alerts or ``--timeout`` seconds without one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from typing import IO, Iterable, Iterator

from streams.contracts.events import Alert, InvalidRecord


NEEDS_KAFKA = True  # streams/cli/main.py checks the broker answers before run()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest alert, not at new ones")
    parser.add_argument("--max", type=int, default=0, help="stop after N alerts (0: no limit)")
    parser.add_argument("--timeout", type=float, default=0.0, help="stop after S seconds without a new alert (0: never)")
    parser.add_argument("--topic", default=None, help="alerts topic (default from config)")


def format_alert(a: Alert) -> str:
    """One readable line: time, severity, kind, model/version, feature, metric=score (threshold), window."""
    start = datetime.fromtimestamp(a.window.start, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    secs = a.window.end - a.window.start
    what = a.feature or "-"
    line = (f"{start}Z  {a.severity.upper():8s} {a.kind:16s} {a.model}/v{a.model_version}  {what}: "
            f"{a.metric}={a.score:.4g} (threshold {a.threshold:.4g}"
            + (f", p={a.p_value:.2g}" if a.p_value is not None else "")
            + f")  window {secs:g}s n={a.window.n}  id={a.alert_id}")
    if a.explained_by:
        line += f"  explained by {a.explained_by}"
    if a.reference is not None and a.reference.id:
        line += f"  reference {a.reference.id}"
    reason = (a.details or {}).get("reason") if isinstance(a.details, dict) else None
    if reason:  # the live gate's verdicts (shadow_rejected, rollback) say why in words
        line += f"\n    why: {reason}"
    return line


def dedupe(records: Iterable[bytes], seen: set[str] | None = None) -> Iterator[Alert | str]:
    """Alerts of raw records, each ``alert_id`` once; unreadable records come back as a message string."""
    seen = set() if seen is None else seen
    for raw in records:
        try:
            a = Alert.from_dict(json.loads(raw))
        except (ValueError, InvalidRecord) as exc:
            yield f"unreadable record on the alerts topic: {exc}"
            continue
        if a.alert_id in seen:
            continue
        seen.add(a.alert_id)
        yield a


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    from kafka import KafkaConsumer

    from streams import config as cfg

    out = out or sys.stdout
    raw = cfg.load_file(args.config)
    from streams.adapters.kafka_clients import connection

    topic = args.topic or cfg.topics(raw).alerts
    consumer = KafkaConsumer(
        topic,
        **connection(raw).kafka_python(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        consumer_timeout_ms=500,
    )
    print(f"following {topic} " + ("from its beginning" if args.from_beginning else
                                   "from now (--from-beginning shows the earlier alerts too)") + "; Ctrl-C stops",
          file=sys.stderr, flush=True)
    shown = 0
    seen: set[str] = set()
    last = time.monotonic()
    try:
        while True:
            batch = [r.value for r in consumer]
            for item in dedupe(batch, seen):
                if isinstance(item, str):
                    print(item, file=sys.stderr)
                    continue
                print(item.to_json() if args.json else format_alert(item), file=out, flush=True)
                shown += 1
                last = time.monotonic()
                if args.max and shown >= args.max:
                    return 0
            if args.timeout and time.monotonic() - last >= args.timeout:
                return 0
    finally:
        consumer.close()
