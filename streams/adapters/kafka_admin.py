"""Thin Kafka admin helpers on kafka-python: wait for a broker, ensure topics, read end offsets.

These are for setup code (CLI commands, tests, the demo), not hot paths: each call opens
and closes its own admin client.  ``bootstrap`` is an address (PLAINTEXT) or a
:class:`streams.adapters.kafka_clients.KafkaConnection` (SASL_SSL).

>>> wait_for_broker("127.0.0.1:9092", timeout_s=30)              # doctest: +SKIP
{'cluster_id': '...', 'controller_id': 1, 'brokers': [...]}
>>> ensure_topics("127.0.0.1:9092", ["driftloop.inputs"], partitions=4)  # doctest: +SKIP
['driftloop.inputs']
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from streams.adapters.kafka_clients import KafkaConnection

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


class BrokerUnavailable(TimeoutError):
    """No Kafka broker answered a metadata request in time."""

    def __init__(self, message: str, bootstrap: str = "", waited_s: float = 0.0) -> None:
        super().__init__(message)
        self.bootstrap, self.waited_s = bootstrap, waited_s


class TopicSetupError(RuntimeError):
    """The broker refused to create a topic (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Durability:
    """How the project's topics are replicated on a cluster of ``brokers`` brokers (pure).

    Replication factor min(3, brokers); ``min.insync.replicas`` 2 from three brokers on, so an
    ``acks=all`` write survives one broker failing and is refused (not lost) when two are down.

    >>> Durability.for_brokers(3)
    Durability(replication=3, min_isr=2)
    >>> Durability.for_brokers(1).topic_configs()
    {}
    """

    replication: int = 1
    min_isr: int = 1

    @classmethod
    def for_brokers(cls, brokers: int) -> "Durability":
        return cls(max(1, min(3, brokers)), 2 if brokers >= 3 else 1)

    def topic_configs(self) -> dict[str, str]:
        """Topic-level configs to create topics with (none beyond the broker defaults on one broker)."""
        return {"min.insync.replicas": str(self.min_isr)} if self.min_isr > 1 else {}


def cluster_durability(bootstrap: "str | KafkaConnection", timeout_s: float = 10.0) -> Durability:
    """:class:`Durability` for the cluster at ``bootstrap`` (its live broker count)."""
    with admin_client(bootstrap, timeout_s) as admin:
        return Durability.for_brokers(len(admin.describe_cluster().get("brokers") or []))


@contextlib.contextmanager
def admin_client(bootstrap: "str | KafkaConnection", timeout_s: float = 10.0, client_id: str = "driftloop-admin") -> Iterator[Any]:
    """A ``kafka.KafkaAdminClient`` that is closed on exit.

    Raises whatever kafka-python raises when no broker answers within ``timeout_s``.
    """
    from kafka import KafkaAdminClient

    from streams.adapters.kafka_clients import resolve

    ms = max(1, int(timeout_s * 1000))
    client = KafkaAdminClient(
        **resolve(bootstrap).kafka_python(),
        client_id=client_id,
        bootstrap_timeout_ms=ms,
        request_timeout_ms=ms,
        reconnect_backoff_max_ms=1000,
    )
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def _quiet_kafka_logs() -> Iterator[None]:
    """Silence kafka-python's connection-refused noise while probing a broker that is still starting."""
    logger = logging.getLogger("kafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def wait_for_broker(
    bootstrap: "str | KafkaConnection",
    timeout_s: float = 30.0,
    *,
    abort: Callable[[], str | None] | None = None,
    poll_s: float = 0.25,
) -> dict[str, Any]:
    """Block until a broker at ``bootstrap`` answers a metadata request listing at least one broker.

    Returns the cluster description (``cluster_id``, ``controller_id``, ``brokers``).
    ``abort`` is polled between attempts; when it returns a message, waiting stops with
    :class:`BrokerUnavailable` carrying that message (e.g. "the broker process exited").
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        if abort is not None:
            reason = abort()
            if reason:
                raise BrokerUnavailable(reason)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        attempt_s = max(0.5, min(5.0, remaining))
        try:
            with _quiet_kafka_logs(), admin_client(bootstrap, attempt_s, "driftloop-probe") as admin:
                cluster = admin.describe_cluster()
            if cluster.get("brokers"):
                return cluster
            last_error = RuntimeError("metadata response listed no brokers yet")
        except Exception as exc:  # kafka-python raises several types while the broker starts
            last_error = exc
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
    raise BrokerUnavailable(
        f"no Kafka broker answered a metadata request at {bootstrap} within {timeout_s:.0f} s"
        f" (last error: {last_error!r}); start one with `driftloop kafka start` or set KAFKA_BOOTSTRAP_SERVERS",
        bootstrap, timeout_s,
    )


#: How long a command waits for the broker before it says that none answers.
REQUIRE_BROKER_S = 5.0


def require_broker(bootstrap: "str | KafkaConnection", timeout_s: float = REQUIRE_BROKER_S) -> dict[str, Any]:
    """Like :func:`wait_for_broker`, but a broker that does not answer within ``timeout_s`` is the user's to fix:
    raises :class:`streams.errors.BrokerUnreachable` (the address tried and how to start one)."""
    from streams.errors import BrokerUnreachable

    from streams.adapters.kafka_clients import PASSWORD_ENV, resolve

    try:
        return wait_for_broker(bootstrap, timeout_s)
    except BrokerUnavailable:
        conn = resolve(bootstrap)
        detail = (f"over SASL_SSL as {conn.username!r}, a refused password or an untrusted certificate looks the same "
                  f"from here: check {PASSWORD_ENV} or kafka.sasl_password_file, and kafka.ssl_cafile") if conn.secure else ""
        raise BrokerUnreachable(str(bootstrap), timeout_s, detail) from None


def ensure_topics(
    bootstrap: "str | KafkaConnection",
    names: Iterable[str],
    partitions: int = 1,
    replication: int | None = None,
    *,
    configs: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics among ``names`` that do not exist yet; return the names created.

    Idempotent: existing topics are left as they are (their partition count is not changed).
    Returns once metadata shows every named topic with a leader for each partition.
    ``replication=None``: as :class:`Durability` says for the cluster's broker count (RF min(3, brokers),
    ``min.insync.replicas`` 2 from three brokers on; ``configs`` win over it).
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    with admin_client(bootstrap, timeout_s) as admin:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        created: list[str] = []
        if missing:
            if replication is None:
                durability = Durability.for_brokers(len(admin.describe_cluster().get("brokers") or []))
            else:
                durability = Durability(replication, 1)
            topic_configs = {**durability.topic_configs(), **(configs or {})}
            spec = {
                n: {"num_partitions": partitions, "replication_factor": durability.replication,
                    "configs": dict(topic_configs)}
                for n in missing
            }
            result = admin.create_topics(spec, timeout_ms=int(timeout_s * 1000), raise_errors=False)
            errors = []
            for topic in result["topics"]:
                code = topic.get("error_code", 0)
                if code == 0:
                    created.append(topic["name"])
                elif code != _TOPIC_ALREADY_EXISTS:  # lost a race with another creator: fine
                    errors.append(f"{topic['name']}: {topic.get('error_message') or f'error code {code}'}")
            if errors:
                raise TopicSetupError("could not create topic(s): " + "; ".join(errors))
        admin.wait_for_topics(wanted, timeout_ms=int(timeout_s * 1000))
    if created:
        log.info("created topic(s) %s with %d partition(s)", created, partitions)
    return created


def describe_topic(bootstrap: "str | KafkaConnection", topic: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """Metadata of one topic: ``{"name", "partitions": [{"partition_index", "leader_id", ...}], ...}``."""
    with admin_client(bootstrap, timeout_s) as admin:
        (meta,) = admin.describe_topics([topic])
    return meta


def topic_end_offsets(bootstrap: "str | KafkaConnection", topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """Next offset to be written, per partition of ``topic`` (the high watermark)."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    with admin_client(bootstrap, timeout_s) as admin:
        (meta,) = admin.describe_topics([topic])
        specs = {TopicPartition(topic, p["partition_index"]): OffsetSpec.LATEST for p in meta["partitions"]}
        offsets = admin.list_partition_offsets(specs)
    return {tp.partition: int(o.offset) for tp, o in sorted(offsets.items())}


def list_user_topics(bootstrap: "str | KafkaConnection", timeout_s: float = 10.0) -> list[str]:
    """Topic names of the cluster, without Kafka's internal ``__`` topics."""
    with admin_client(bootstrap, timeout_s) as admin:
        names = admin.list_topics()
    return sorted(n for n in names if not n.startswith("__"))
