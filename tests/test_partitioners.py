"""Which partitioner placed a keyed record, and the inputs/labels agreement check (pure)."""

from __future__ import annotations

import zlib

from streams.worker.partitioners import CRC32, MURMUR2, PartitionerCheck, crc32_partition, murmur2_partition


# murmur2 of these keys in the Java client (org.apache.kafka.common.utils.UtilsTest), as signed ints
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536, b"abc": 479470107}


def test_murmur2_matches_the_java_client_and_crc32_matches_librdkafka_consistent():
    for key, h in JAVA_MURMUR2.items():
        for n in (2, 3, 4, 12):
            assert murmur2_partition(key, n) == (h & 0x7FFFFFFF) % n
    for i in range(100):
        key = f"e-{i}".encode()
        assert crc32_partition(key, 6) == zlib.crc32(key) % 6


def _feed(check, role, partition_fn, n=4, count=40, start=0):
    verdict = None
    for i in range(start, start + count):
        key = f"e-{i}".encode()
        verdict = check.observe(role, key, partition_fn(key, n), n) or verdict
    return verdict


def test_same_client_family_on_both_topics_is_no_mismatch():
    for fn in (murmur2_partition, crc32_partition):
        chk = PartitionerCheck()
        _feed(chk, "inputs", fn)
        v = _feed(chk, "labels", fn)
        assert v is not None and not v.mismatch


def test_java_inputs_with_librdkafka_labels_is_a_mismatch_even_on_two_partitions():
    chk = PartitionerCheck()
    _feed(chk, "inputs", murmur2_partition, n=2)
    v = _feed(chk, "labels", crc32_partition, n=2)
    assert v is not None and v.mismatch
    assert v.families == {"inputs": (MURMUR2,), "labels": (CRC32,)}
    assert "partitioner=murmur2_random" in v.message()
    assert _feed(chk, "labels", crc32_partition, n=2, start=100) is None  # said once, not on every batch


def test_explicit_partitions_are_other():
    chk = PartitionerCheck()
    _feed(chk, "inputs", murmur2_partition)
    v = _feed(chk, "labels", lambda key, n: 0)
    assert v is not None and v.mismatch


def test_unkeyed_records_and_single_partitions_say_nothing():
    chk = PartitionerCheck(min_records=1)
    assert chk.observe("inputs", None, 0, 4) is None
    assert chk.observe("inputs", b"k", 0, 1) is None
    assert chk.counts == {}


def test_our_murmur2_is_kafka_pythons_on_random_keys():
    import random

    from kafka.partitioner.default import murmur2 as kafka_python_murmur2

    from streams.worker.partitioners import murmur2

    rng = random.Random(1)
    for _ in range(5000):
        key = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        assert murmur2(key) == kafka_python_murmur2(key), key


def test_cardinality_guard_keeps_its_admitted_set_through_its_state():
    from streams.worker.cardinality import CardinalityGuard

    g = CardinalityGuard(max_models=2, max_versions_per_model=2)
    assert [g.admit("a", "1"), g.admit("a", "2"), g.admit("a", "3"), g.admit("b", "1"), g.admit("c", "1")] == \
        [None, None, "versions", None, "models"]
    again = CardinalityGuard(2, 2, g.to_dict())
    assert again.tracked("a", "2") and not again.tracked("a", "3") and again.admit("c", "1") == "models"
