"""The Faust app of the drift worker: ``make_app(config) -> faust.App``.

Run it with ``driftloop worker`` or ``faust -A streams.adapters.faust_app worker -l info`` (the module-level
``app`` is built from ``$DRIFTLOOP_CONFIG`` / embedded defaults, lazily on first access).

What it wires (logic lives in :mod:`streams.worker.state`, agents in :mod:`streams.adapters.faust_agents`):

* topics from :func:`streams.config.topics` (values read as raw bytes, so a record that is not
  even UTF-8 still reaches ``<topic>.dlq`` unchanged), the internal partials topic
  ``worker.partials_topic`` (default ``<app_id>.partials``);
* one plain Faust table ``state`` (memory store, changelog topic ``<app_id>-state-changelog``)
  holding per-partition source state, label-join state, watermarks and per-model aggregator
  state; and one table ``joinstore`` with one key per stored input (label join).  No windowed
  tables: windows are closed by the worker's own event-time watermark;
* the Prometheus registry (:class:`streams.adapters.metrics.WorkerMetrics`) served on ``worker.metrics_host``:``worker.metrics_port``
  (127.0.0.1 by default);
* with ``worker.delivery: batch`` (the default), :mod:`streams.adapters.batch_delivery` under Faust's consumer:
  each fetched batch of the inputs and labels topics goes to one call of the worker (their agents
  stay subscribed so that Faust assigns and commits them), ~7x the events/s of Faust's per-message
  path (bench/results/worker_throughput.tuning.md).

Partition counts: the inputs and labels topics, the internal topic and the tables' changelogs
must have the same number of partitions (``topics.partitions``), so that Faust's assignor gives
a worker partition *i* of all of them (label *i* meets input *i*; state *i* is recovered where
partition *i* is processed).  Producers must key inputs and labels by ``event_id``.

Parity hook (the Feast parity checker, :mod:`streams.adapters.parity_step`): ``make_app(parity_step=...)``
takes any object with

* ``async check(events: list[InferenceEvent]) -> list[Alert]`` — called with every accepted
  micro-batch of inputs (never raises for store trouble); returned alerts go to the alerts topic;
* ``explain(alerts: list[Alert]) -> list[Alert]`` — called by the aggregator on every judged
  window's alerts: drift on features with an open parity alert comes back ``explained_by`` it
  (see :func:`streams.alerts.parity.explain`);
* optionally ``open_parity_features(model, version) -> set[str]`` — passed to the retrain policy,
  which never requests a retrain for drift that parity explains.

When no step is passed and the config file says ``parity: {enabled: true}``, the app builds one
with :func:`streams.adapters.parity_step.from_config` (its metrics join the worker's registry).  The
parity checker's own window state is in memory only (a restart re-learns it).

Processing guarantee: ``worker.processing_guarantee`` (default ``at_least_once``).  State is
exact either way (offsets are stored inside the state records, see :mod:`streams.worker.state`),
and alerts have deterministic ids, so a crash can at most re-send an identical alert, which
consumers (``driftloop alerts``) drop by ``alert_id``.  ``exactly_once`` (Kafka transactions) was
measured with faust-streaming 0.15.3 + aiokafka 0.14 on Kafka 4.1 (stream delivery): one worker
runs, survives SIGKILL with the same alerts and no re-sent alert records; but with two workers in
one group both agents crash at the first rebalance (``ProducerSendError: No transaction producer
found``, faust-streaming issues #323/#517 describe the same family), so it is not the default.
With batch delivery one exactly_once worker runs at about the same rate (bench/worker_throughput.py
--eos); its SIGKILL behaviour was not re-tested.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from streams import config as cfg
from streams.worker.state import WorkerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker reads from the config file, resolved."""

    worker: WorkerConfig
    bootstrap: str
    topics: cfg.Topics
    drift: Any  # streams.judge.engine.DriftConfig
    data_dir: Path
    reference_dir: Path
    partitions: int
    partials_topic: str
    kafka: Any = None  # streams.adapters.kafka_clients.KafkaConnection: address and security of every client
    slo: Any = None  # streams.judge.slo.SloConfig (the ``slo`` section)

    @property
    def connection(self) -> Any:
        from streams.adapters.kafka_clients import resolve

        return self.kafka if self.kafka is not None else resolve(self.bootstrap)


def load_settings(raw: Mapping[str, Any] | None = None) -> WorkerSettings:
    raw = dict(raw or {})
    cfg.check_sections(raw)
    worker = cfg.section(WorkerConfig, raw.get("worker"), "worker")
    topics = cfg.topics(raw)
    kafka = cfg.kafka_settings(raw)
    from streams.judge.drift_config import DriftConfig

    drift = _drift_config(DriftConfig, raw.get("drift"))
    home = cfg.home()
    data_dir = Path(worker.data_dir) if worker.data_dir else home / "worker" / worker.app_id
    ref_dir = Path(worker.reference_dir) if worker.reference_dir else home / "references"
    parts = worker.source_partitions or topics.partitions
    if worker.internal_partitions and worker.internal_partitions != parts:
        raise cfg.ConfigError(
            f"worker.internal_partitions ({worker.internal_partitions}) must equal the inputs topic's partitions ({parts}); "
            "Faust co-partitions the internal topic and the tables with the source topics"
        )
    if worker.delivery not in ("batch", "stream"):
        raise cfg.ConfigError("worker.delivery must be batch (whole fetched batches, the fast path) or stream (Faust's per-message path)")
    if worker.processing_guarantee not in ("at_least_once", "exactly_once"):
        raise cfg.ConfigError("worker.processing_guarantee must be at_least_once or exactly_once")
    from streams.adapters.kafka_clients import from_settings
    from streams.judge.slo import SloConfig

    slo = cfg.section(SloConfig, raw.get("slo"), "slo")
    return WorkerSettings(worker, kafka.bootstrap_servers, topics, drift, data_dir, ref_dir, parts,
                          worker.partials_topic or f"{worker.app_id}.partials", from_settings(kafka), slo)


def _drift_config(cls: type, raw: Any) -> Any:
    from_mapping = getattr(cls, "from_mapping", None)
    if from_mapping is not None:
        return from_mapping(raw or {})
    return cfg.section(cls, raw, "drift")


def idempotent_producer_class() -> type:
    """Faust's aiokafka producer with ``acks=all`` and idempotence always on (Faust turns idempotence on only
    inside transactions): a retried send after a broker failure is never written twice."""
    from faust.transport.drivers import aiokafka as drv

    class IdempotentProducer(drv.Producer):
        def _settings_extra(self) -> Mapping[str, Any]:
            return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    return IdempotentProducer


def _durability(bootstrap: Any) -> Any:
    """The cluster's :class:`streams.adapters.kafka_admin.Durability`; one broker's when it cannot be asked."""
    from streams.adapters.kafka_admin import Durability, cluster_durability

    try:
        return cluster_durability(bootstrap)
    except Exception as exc:  # the worker starts anyway; Faust waits for the broker itself
        log.warning("could not count the brokers at %s (%s); internal topics get replication factor 1", bootstrap, exc)
        return Durability()


def make_app(raw_config: Mapping[str, Any] | None = None, *, parity_step: Any = None, metrics: Any = None,
             durability: Any = None):
    """Build the Faust app (agents registered, nothing started).

    ``durability`` (:class:`streams.adapters.kafka_admin.Durability`): replication of the internal topics
    and changelogs; by default asked from the cluster (RF min(3, brokers), min ISR 2 from three brokers).
    """
    import faust

    from streams.adapters.faust_agents import register
    from streams.adapters.metrics import WorkerMetrics

    s = load_settings(raw_config)
    durability = durability or _durability(s.connection)
    w = s.worker
    s.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        w.app_id,
        **s.connection.faust(),  # broker URLs and, with SASL_SSL, broker_credentials
        datadir=str(s.data_dir),
        store="memory://",
        topic_partitions=s.partitions,
        topic_replication_factor=durability.replication,
        processing_guarantee=w.processing_guarantee,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=bool(w.web_port),
        web_port=w.web_port or 6066,
        web_bind=w.metrics_host,  # Faust's default is every interface
        producer_linger_ms=w.producer_linger_ms,
        producer_max_request_size=4_000_000,
        consumer_max_fetch_size=w.fetch_max_bytes,
        # batch delivery: one handler call per fetched batch, so the batch size is the poll size
        broker_max_poll_records=w.batch_size if w.delivery == "batch" else None,
        broker_commit_every=10_000,
        broker_session_timeout=w.session_timeout_s,
        broker_heartbeat_interval=max(1.0, w.session_timeout_s / 4),
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4096, 2 * w.batch_size),
        autodiscover=False,
    )
    delivery = None
    if w.delivery == "batch":
        from streams.adapters.batch_delivery import BatchDelivery, install

        delivery = BatchDelivery(fetch_max_wait_ms=w.fetch_max_wait_ms)
        install(app, delivery)
    app.transport.Producer = idempotent_producer_class()  # acks=all + idempotence for every record the worker sends
    app.driftloop_topic_configs = durability.topic_configs()  # min.insync.replicas of internal topics
    metrics = metrics or WorkerMetrics()
    if parity_step is None and ((raw_config or {}).get("parity") or {}).get("enabled") is True:
        from streams.adapters.parity_step import from_config

        parity_step = from_config(dict(raw_config or {}), metrics.registry)
    register(app, s, metrics, parity_step=parity_step, delivery=delivery)
    return app


def _default_app():
    return make_app(cfg.load_file(os.environ.get("DRIFTLOOP_CONFIG") or None))


def __getattr__(name: str):  # module-level ``app`` for ``faust -A streams.adapters.faust_app worker``
    if name == "app":
        a = _default_app()
        globals()["app"] = a
        return a
    raise AttributeError(name)
