"""Which partitioner put a keyed record on its partition, and whether inputs and labels agree.

The label join needs a label on the partition of its input: producers key both by
``event_id`` and the topics have the same partition count.  Kafka clients do not agree on
where a key goes: the Java client and kafka-python use murmur2 (``murmur2(key) & 0x7fffffff
% n``), librdkafka-based clients (confluent-kafka, kcat, rdkafka-go...) default to
``consistent_random``, i.e. ``crc32(key) % n``.  Inputs from one family and labels from the
other put most labels on the wrong partition, where they wait and expire as ``unknown``.

:class:`PartitionerCheck` is pure: it is shown a sample of keyed records of the inputs and
labels topics and returns a :class:`PartitionerVerdict` when it can tell that the two
topics were partitioned differently (or by something else than the key).

>>> murmur2_partition(b"e-1", 4), crc32_partition(b"e-1", 4)
(3, 0)
>>> chk = PartitionerCheck(min_records=1)
>>> chk.observe("inputs", b"e-1", 3, 4) is None
True
>>> chk.observe("labels", b"e-1", 0, 4).mismatch
True
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field

MURMUR2 = "murmur2"  # Java client, kafka-python, aiokafka
CRC32 = "crc32"  # librdkafka's consistent_random (confluent-kafka, kcat, ...)
OTHER = "other"  # neither: explicit partitions, a custom partitioner, or a different partition count


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (the Java client's ``Utils.murmur2``), as an unsigned 32-bit int."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail, extra = length & ~3, length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def murmur2_partition(key: bytes, n: int) -> int:
    """Partition of ``key`` among ``n`` with the Java client's default partitioner."""
    return (murmur2(key) & 0x7FFFFFFF) % n


def crc32_partition(key: bytes, n: int) -> int:
    """Partition of ``key`` among ``n`` with librdkafka's ``consistent_random`` (its default)."""
    return zlib.crc32(key) % n


def families(key: bytes, partition: int, n: int) -> tuple[str, ...]:
    """The partitioners that put ``key`` on ``partition`` of ``n`` (both, one, or neither: OTHER)."""
    fams = tuple(f for f, fn in ((MURMUR2, murmur2_partition), (CRC32, crc32_partition)) if fn(key, n) == partition)
    return fams or (OTHER,)


@dataclass(frozen=True)
class PartitionerVerdict:
    """What the check found: the partitioners consistent with each topic role's records, and whether
    no single partitioner explains both roles."""

    families: dict[str, tuple[str, ...]]
    samples: dict[str, int]
    mismatch: bool

    def message(self) -> str:
        fam = ", ".join(f"{role}: {'/'.join(f) or OTHER}" for role, f in sorted(self.families.items()))
        return (f"inputs and labels are partitioned differently ({fam}): labels land away from their inputs and "
                "are counted 'unknown'. Use one Kafka client family for both, or set librdkafka's "
                "partitioner=murmur2_random so it matches the Java client (README: operating the worker)")


@dataclass
class PartitionerCheck:
    """Counts, per topic role, how many sampled keyed records each partitioner explains.

    A role is consistent with a partitioner that explains at least ``share`` of its samples.
    ``observe`` returns a verdict once both roles have ``min_records`` samples, and again only
    when it changes; ``mismatch`` when no partitioner is consistent with both roles.
    Memory: a few counters per role (bounded).
    """

    min_records: int = 20
    share: float = 0.95
    counts: dict[str, Counter] = field(default_factory=dict)
    _last: PartitionerVerdict | None = None

    def observe(self, role: str, key: bytes | None, partition: int, n: int) -> PartitionerVerdict | None:
        if not key or n <= 1:
            return None
        c = self.counts.setdefault(role, Counter())
        c["n"] += 1
        for f in families(key, partition, n):
            c[f] += 1
        return self._verdict()

    def _verdict(self) -> PartitionerVerdict | None:
        if len(self.counts) < 2 or any(c["n"] < self.min_records for c in self.counts.values()):
            return None
        fams = {role: tuple(f for f in (MURMUR2, CRC32) if c[f] >= self.share * c["n"])
                for role, c in self.counts.items()}
        common = set.intersection(*(set(f) for f in fams.values()))
        v = PartitionerVerdict(fams, {r: c["n"] for r, c in self.counts.items()}, not common)
        if self._last is not None and (self._last.families, self._last.mismatch) == (v.families, v.mismatch):
            return None
        self._last = v
        return v


__all__ = ["PartitionerCheck", "PartitionerVerdict", "murmur2_partition", "crc32_partition", "families",
           "MURMUR2", "CRC32", "OTHER"]
