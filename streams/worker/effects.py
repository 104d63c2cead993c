"""What the worker core asks its adapter to do: records to send, state to write, partitions to pause.

The core (:mod:`streams.worker.core`) never touches Kafka: each call returns one
:class:`Effects`, and the adapter (the Faust agents, or the in-memory harness of the tests)
carries it out in this order:

1. ``dead_letters``: sent, each resent up to 3 times, and all delivered before anything else
   (a bad record is never skipped: a failed letter stops the worker before its state moves on);
2. ``sends`` in order (records of one partition keep their order: watermark records follow
   the partials they cover);
3. ``state`` writes (table, changelog partition, key, value; value ``None`` deletes), applied at once
   in memory and written to the changelog only once the sends above (and the state of earlier calls)
   are acknowledged: a state that says "done through offset X" never outlives, in a SIGKILL, what the
   records up to X produced (alerts, partials, labelled records), so a restart replays them instead
   of skipping them (replays are dropped downstream by offset and event id);
4. ``pause`` / ``resume`` of (topic, partition);
5. the batch's offsets are acknowledged once everything above is acknowledged by Kafka.

Topics are named by role (``partials``, ``alerts``, ``labelled``, ``retrain_requests``,
``inputs_dlq``, ``labels_dlq``); the adapter maps roles to real topics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The roles a :class:`Send` may name (the adapter maps each to a topic).
ROLES = ("partials", "alerts", "labelled", "retrain_requests", "inputs_dlq", "labels_dlq")
#: Tables the core writes: ``state`` (sources, joins, aggregators, watermarks) and ``joins`` (join marks).
TABLES = ("state", "joins")


@dataclass(frozen=True, slots=True)
class Send:
    """One record for topic role ``role``; ``partition`` None: the producer's partitioner chooses."""

    role: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    where: str = ""  # for dead letters: the record it stands for, ``topic[partition]@offset`` (logs)


@dataclass(frozen=True, slots=True)
class StateWrite:
    """Set (or delete, ``value is None``) ``key`` of table ``table``, changelog partition ``partition``."""

    table: str
    partition: int
    key: str
    value: Any


@dataclass
class Effects:
    """Everything one core call asks for, in the order of the module docstring."""

    dead_letters: list[Send] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    state: list[StateWrite] = field(default_factory=list)
    pause: list[tuple[str, int]] = field(default_factory=list)
    resume: list[tuple[str, int]] = field(default_factory=list)
    #: valid, first, on-time inputs of an inputs batch (the adapter's parity step checks them)
    accepted: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.dead_letters or self.sends or self.state or self.pause or self.resume)

    def extend(self, other: "Effects") -> "Effects":
        self.dead_letters += other.dead_letters
        self.sends += other.sends
        self.state += other.state
        self.pause += other.pause
        self.resume += other.resume
        self.accepted += other.accepted
        return self





_DELETED = object()


class Recorder:
    """The effects of the core call in progress, and the state it reads (pure; one per worker).

    ``reader(table)`` gives the adapter's current view of a table (``get(key)``, ``keys()``):
    Faust's table data on the worker, a dict in the harness.  Writes are recorded as
    :class:`StateWrite` effects and kept in an overlay until the call ends, so a value
    written earlier in the same call is read back (the adapter applies the writes to its
    tables before the next call).
    """

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.fx = Effects()
        self._overlay: dict[tuple[str, str], Any] = {}

    def begin(self) -> Effects:
        self.fx = Effects()
        self._overlay = {}
        return self.fx

    def end(self) -> Effects:
        fx, self.fx = self.fx, Effects()
        self._overlay = {}
        return fx

    def get(self, table: str, key: str, default: Any = None) -> Any:
        if (table, key) in self._overlay:  # written earlier in this call
            v = self._overlay[(table, key)]
            return default if v is _DELETED else v
        got = self.reader(table).get(key)
        return default if got is None else got

    def keys(self, table: str, prefix: str) -> list[str]:
        return [k for k in list(self.reader(table).keys()) if isinstance(k, str) and k.startswith(prefix)]

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self._overlay[(table, key)] = _DELETED if value is None else value
        self.fx.state.append(StateWrite(table, partition, key, value))

    def send(self, role: str, key: bytes | None, value: bytes, partition: int | None = None) -> None:
        self.fx.sends.append(Send(role, key, value, partition))


class StateKV:
    """Mutable-mapping view of the keys ``<prefix>...`` of one table partition, writes through a :class:`Recorder`."""

    def __init__(self, rec: Recorder, table: str, prefix: str, partition: int) -> None:
        self.rec, self.table, self.prefix, self.partition = rec, table, prefix, partition

    def keys(self) -> list[str]:
        n = len(self.prefix)
        return [k[n:] for k in self.rec.keys(self.table, self.prefix)]

    def get(self, k: str, default: Any = None) -> Any:
        return self.rec.get(self.table, self.prefix + k, default)

    def __setitem__(self, k: str, v: Any) -> None:
        self.rec.put(self.table, self.partition, self.prefix + k, v)

    def pop(self, k: str, default: Any = None) -> Any:
        v = self.get(k, _DELETED)
        if v is _DELETED:
            return default
        self.rec.put(self.table, self.partition, self.prefix + k, None)
        return v

__all__ = ["Effects", "Send", "StateWrite", "Recorder", "StateKV", "ROLES", "TABLES"]
