"""``driftloop produce FILE --topic inputs|labels|NAME``: replay a file of events to a Kafka topic.

FILE is JSON lines (one event per line), or a CSV/Parquet table whose rows become inference
inputs exactly as ``backtest`` reads them (:mod:`streams.cli.event_files`); to the labels topic
a table sends ``{event_id, model, ts, label}`` from its ``label`` column.  ``inputs`` and
``labels`` (and any other key of the config's ``topics`` section) name the configured topics;
anything else is a topic name.  Inputs and labels are validated as the worker will validate
them; an invalid line is reported with its line number and skipped (``--strict``: stop there).

Records are keyed by ``event_id`` (UTF-8) and put on the partition the worker expects: the
Java client's murmur2 partitioner (:func:`streams.worker.partitioners.murmur2_partition`), so a
label lands on its input's partition.  The producer waits for all in-sync replicas
(``acks=all``) and is idempotent (a retry is never written twice).  ``--rate`` caps events per
second with a token bucket (unlimited by default); ``--limit`` stops after N records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

NEEDS_KAFKA = True  # streams/cli/main.py checks the broker answers before run()
LISTED_INVALID = 20  # invalid lines listed one by one; the rest are only counted


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="events: .jsonl (one JSON object per line), .csv or .parquet")
    p.add_argument("--topic", required=True,
                   help="inputs, labels (the configured topics; any key of the topics section works), or a topic name")
    p.add_argument("--rate", type=float, default=0.0, metavar="EV_PER_S", help="events per second (default: unlimited)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="stop after N records (default: all)")
    p.add_argument("--strict", action="store_true", help="stop at the first invalid line instead of skipping it")
    p.add_argument("--model", help="model of a CSV/Parquet table without a model column")
    p.add_argument("--version", help="model version of a CSV/Parquet table without a model_version column")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# --------------------------------------------------------------------------- pure parts


class TokenBucket:
    """At most ``rate`` takes per second on average, bursts of up to ``burst`` (default: 100 ms worth, at least 1).

    ``rate <= 0`` means unlimited.  Pure: the clock is injected.

    >>> t = [0.0]; b = TokenBucket(10, burst=1, clock=lambda: t[0])
    >>> b.take(), b.take()
    (0.0, 0.1)
    """

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate * 0.1)
        self.clock = clock
        self.tokens = self.burst
        self.last = clock()

    def take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens; returns the seconds to wait before acting (0.0: now)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(frozen=True)
class Record:
    """A valid record: where it came from (line or row number), its key and its bytes."""

    number: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Invalid:
    number: int
    reason: str


ROLES = ("inputs", "labels", "other")


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    if hasattr(v, "isoformat"):  # timestamps
        return v.isoformat()
    if hasattr(v, "tolist"):
        return v.tolist()
    raise TypeError(f"{type(v).__name__} is not JSON")


def _check(obj: Any, role: str) -> str | None:
    """The event id of a valid ``obj`` for ``role`` (None: no id); raises InvalidRecord / ValueError."""
    from streams.contracts.validate import parse_input, parse_label

    if role == "inputs":
        return parse_input(obj).event_id
    if role == "labels":
        return parse_label(obj).event_id
    data = json.loads(obj) if isinstance(obj, (bytes, str)) else obj
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    eid = data.get("event_id")
    return eid if isinstance(eid, str) else None


def _record(number: int, obj: Any, raw: bytes | None, role: str) -> Record | Invalid:
    from streams.contracts.events import InvalidRecord

    try:
        eid = _check(raw if raw is not None else obj, role)
        value = raw if raw is not None else json.dumps(obj, default=_json_default, allow_nan=False).encode()
    except InvalidRecord as exc:
        return Invalid(number, f"{exc.reason}: {exc}")
    except (ValueError, TypeError) as exc:
        return Invalid(number, f"not_json: {exc}")
    return Record(number, eid.encode("utf-8") if eid is not None else None, value)


def read_records(path: Path, role: str, model: str | None = None, version: str | None = None
                 ) -> Iterator[Record | Invalid]:
    """The records of ``path`` for a topic of ``role`` (inputs, labels, other), valid or not, in file order."""
    from streams.cli.event_files import is_table, lines, table_rows

    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if not is_table(path):
        for lineno, _off, raw in lines(path):
            if raw.strip():
                yield _record(lineno, None, raw.rstrip(b"\r\n"), role)
        return
    for row in table_rows(path, model, version, need_version=role != "labels"):
        if role == "labels":
            if row.label is None:
                yield Invalid(row.number, "missing_field: no label in this row")
                continue
            ev = row.event
            obj = {"event_id": ev["event_id"], "model": ev["model"], "ts": ev["ts"], "label": row.label}
        else:
            obj = dict(row.event, **({"label": row.label} if role == "other" and row.label is not None else {}))
        yield _record(row.number, obj, None, role)


@dataclass
class ProduceSummary:
    topic: str
    sent: int = 0
    failed: int = 0
    invalid: int = 0
    by_partition: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    first_error: str = ""

    def lines(self) -> list[str]:
        parts = ", ".join(f"p{p}: {n}" for p, n in sorted(self.by_partition.items()))
        rate = self.sent / self.seconds if self.seconds > 0 else 0.0
        out = [f"sent {self.sent} record(s) to {self.topic} in {self.seconds:.1f} s ({rate:.0f}/s)"
               + (f"; partitions {parts}" if parts else "")]
        if self.invalid:
            out.append(f"skipped {self.invalid} invalid line(s) (listed above; --strict stops at the first)")
        if self.failed:
            out.append(f"FAILED to write {self.failed} record(s): {self.first_error}")
        return out


def resolve_topic(name: str, topics: Any) -> tuple[str, str]:
    """(topic name, role) for ``--topic``: a key of the topics section resolves through the config."""
    key = name.replace("-", "_")
    if key in ("inputs", "labels"):
        return getattr(topics, key), key
    if key != "partitions" and isinstance(getattr(topics, key, None), str):
        return getattr(topics, key), "other"
    if name == topics.inputs:
        return name, "inputs"
    if name == topics.labels:
        return name, "labels"
    return name, "other"


def _count(path: Path) -> int | None:
    """Records in a JSON-lines file (non-empty lines), for the progress bar; None for tables (known later)."""
    from streams.cli.event_files import is_table

    if is_table(path):
        return None
    n = 0
    with path.open("rb") as fh:
        for raw in fh:
            n += bool(raw.strip())
    return n


# --------------------------------------------------------------------------- the command


def check_args(args: argparse.Namespace) -> None:
    """Before the broker is asked: the file is there (streams/cli/main.py calls this first)."""
    from streams.errors import MissingFile

    if not Path(args.file).is_file():
        raise MissingFile(args.file, "events file")


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    from streams import config as cfg
    from streams.adapters.kafka_admin import describe_topic, ensure_topics
    from streams.cli.event_files import is_table
    from streams.errors import BadInput
    from streams.judge.profile import ProfileError
    from streams.worker.partitioners import murmur2_partition

    check_args(args)
    path = Path(args.file)
    raw = cfg.load_file(args.config)
    from streams.adapters.kafka_clients import connection

    bootstrap = connection(raw)
    topics = cfg.topics(raw)
    topic, role = resolve_topic(args.topic, topics)
    ensure_topics(bootstrap, [topic], partitions=topics.partitions)  # as the worker creates them
    n_part = len(describe_topic(bootstrap, topic)["partitions"])
    summary = ProduceSummary(topic)
    bucket = TokenBucket(args.rate)
    table = is_table(path)
    total = _count(path)
    if args.limit:
        total = min(total, args.limit) if total is not None else args.limit
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="ev", desc=f"-> {topic}", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
    producer = KafkaProducer(**bootstrap.kafka_python(), acks="all", enable_idempotence=True, linger_ms=5)

    def failed(exc: BaseException) -> None:
        summary.failed += 1
        summary.first_error = summary.first_error or repr(exc)

    t0 = time.monotonic()
    try:
        for rec in read_records(path, role, args.model, args.version):
            if isinstance(rec, Invalid):
                summary.invalid += 1
                if bar is not None:
                    bar.update(1)  # the bar counts lines read
                where = f"{path}: row {rec.number}" if table else f"{path}:{rec.number}"
                if args.strict:
                    raise BadInput(f"{where}: {rec.reason}; stopped after {summary.sent} record(s) (--strict)",
                                   "fix the line, or drop --strict to skip invalid lines")
                if summary.invalid <= LISTED_INVALID:
                    (bar.write if bar is not None else print)(f"{where}: skipped ({rec.reason})", file=sys.stderr)
                continue
            wait = bucket.take()
            if wait > 0:
                time.sleep(wait)
            part = murmur2_partition(rec.key, n_part) if rec.key is not None else None
            producer.send(topic, rec.value, key=rec.key, partition=part).add_errback(failed)
            if part is not None:
                summary.by_partition[part] += 1
            summary.sent += 1
            if bar is not None:
                bar.update(1)
            if args.limit and summary.sent >= args.limit:
                break
    except ProfileError as exc:
        raise BadInput(str(exc), "a table needs a ts column and a model (column or --model/--version)") from None
    finally:
        producer.flush(timeout=60)
        producer.close(timeout=10)
        summary.seconds = time.monotonic() - t0
        if bar is not None:
            bar.close()
    summary.sent -= summary.failed
    print("\n".join(summary.lines()))
    if summary.failed or (summary.sent == 0 and summary.invalid):
        return 1
    return 0
