"""Fixtures for the real Kafka broker.

``kafka_bootstrap`` (session): the address of a real broker.  With ``KAFKA_BOOTSTRAP_SERVERS``
set, that cluster is used as is; otherwise driftloop's own broker (infra/kafka/launcher.py) is
started on free ports with its state in a temporary folder, and stopped at the end of the
session.  The broker starts only when a test asks for it.

``kafka_cluster`` (session): driftloop's own three-node cluster (``driftloop kafka start --nodes 3``) on free
ports, for the replication and fault tests (tests/test_faults.py); started only when a test asks for it,
always our own (never ``KAFKA_BOOTSTRAP_SERVERS``: the fault tests kill and pause its brokers).

``unique_topic`` / ``kafka_topic_factory`` (function): topic names that never collide between
tests or runs.  ``kafka_env`` (function): ``KAFKA_BOOTSTRAP_SERVERS`` set for code that reads
its address from the configuration (CLI commands, ``streams.config.kafka_settings``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import uuid
from typing import Callable, Iterator

import pytest


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        socks = []
        for _ in range(n):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]


def topic_name(hint: str = "t") -> str:
    """A unique, valid Kafka topic name starting with ``test.`` and the (sanitised) hint."""
    clean = re.sub(r"[^a-zA-Z0-9._-]+", "-", hint).strip("-.")[:80] or "t"
    return f"test.{clean}.{uuid.uuid4().hex[:10]}"


@dataclasses.dataclass(frozen=True)
class KafkaSession:
    bootstrap: str
    external: bool  # True: the user's cluster from KAFKA_BOOTSTRAP_SERVERS; False: our own broker


@pytest.fixture(scope="session")
def kafka_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSession]:
    """The session's Kafka cluster: the user's (``KAFKA_BOOTSTRAP_SERVERS``) or our own broker."""
    from streams.adapters.kafka_admin import wait_for_broker

    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        wait_for_broker(external, timeout_s=60)
        yield KafkaSession(external, True)
        return

    from infra.kafka.launcher import LocalKafka
    from streams.config import KafkaSettings

    port, controller_port = free_ports(2)
    settings = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{port}", external=False,
        port=port, controller_port=controller_port, start_timeout_s=120.0, heap="512m",
    )
    kafka = LocalKafka(settings, tmp_path_factory.mktemp("kafka-session"))
    bootstrap = kafka.start()
    try:
        yield KafkaSession(bootstrap, False)
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running three-node ``infra.kafka.launcher.LocalKafkaCluster`` (every node restarted between tests
    that stop one: use :func:`heal_cluster`)."""
    from infra.kafka.launcher import ClusterLayout, LocalKafkaCluster
    from streams.config import KafkaSettings

    ports = free_ports(6)
    layout = ClusterLayout(tuple((ports[2 * i], ports[2 * i + 1]) for i in range(3)))
    settings = KafkaSettings(external=False, start_timeout_s=180.0, heap="384m")
    cluster = LocalKafkaCluster(settings, tmp_path_factory.mktemp("kafka-cluster"), layout=layout)
    cluster.start()
    try:
        yield cluster
    finally:
        heal_cluster(cluster)
        cluster.stop()


def heal_cluster(cluster) -> None:
    """Every node of ``cluster`` running and not paused (after a fault test, passed or failed)."""
    import signal

    for node in cluster.nodes:
        pid = node.running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    if any(n.running_pid() is None for n in cluster.nodes):
        cluster.start()  # starts the stopped nodes together (a lone node waits for a quorum); running ones stay


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_session: KafkaSession) -> str:
    """Bootstrap address of a real Kafka broker for this test session."""
    return kafka_session.bootstrap


@pytest.fixture
def kafka_env(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Sets ``KAFKA_BOOTSTRAP_SERVERS`` to the session broker for this test; returns the address."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    return kafka_bootstrap


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name unique to this test call (not created; auto-create or ``ensure_topics`` does that)."""
    return topic_name(request.node.name)


@pytest.fixture
def kafka_topic_factory(kafka_session: KafkaSession, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """``make(hint="", partitions=1) -> name``: creates a fresh topic and waits until metadata shows it.

    On an external cluster the topics made are deleted after the test.
    """
    from streams.adapters.kafka_admin import admin_client, ensure_topics

    made: list[str] = []

    def make(hint: str = "", partitions: int = 1) -> str:
        name = topic_name(f"{request.node.name}.{hint}" if hint else request.node.name)
        ensure_topics(kafka_session.bootstrap, [name], partitions=partitions)
        made.append(name)
        return name

    yield make
    if made and kafka_session.external:
        with contextlib.suppress(Exception), admin_client(kafka_session.bootstrap) as admin:
            admin.delete_topics(made)
