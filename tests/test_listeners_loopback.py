"""Every listener driftloop starts binds 127.0.0.1 unless configured otherwise (issue 15, locked-down defaults)."""

from __future__ import annotations

import os
import urllib.request

import pytest

from tests.listeners import exposed, listeners


def _serve_and_check(metrics, host: str | None = None) -> None:
    server, thread = metrics.serve(0) if host is None else metrics.serve(0, host)
    try:
        port = server.server_address[1]
        mine = [x for x in listeners(os.getpid(), children=False) if x.port == port]
        assert mine and all(x.ip == (host or "127.0.0.1") for x in mine), mine
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_worker_metrics_bind_loopback_by_default() -> None:
    from streams.adapters.metrics import WorkerMetrics
    from streams.worker.state import WorkerConfig

    assert WorkerConfig().metrics_host == "127.0.0.1"
    _serve_and_check(WorkerMetrics())


def test_worker_metrics_host_is_configurable() -> None:
    from streams import config as C
    from streams.adapters.metrics import WorkerMetrics
    from streams.worker.state import WorkerConfig

    w = C.section(WorkerConfig, {"metrics_host": "0.0.0.0"}, "worker")
    _serve_and_check(WorkerMetrics(), w.metrics_host)


def test_dispatcher_metrics_bind_loopback_by_default() -> None:
    from trainers.dispatch.ledger import DispatcherConfig
    from trainers.dispatch.metrics import DispatcherMetrics

    assert DispatcherConfig().metrics_host == "127.0.0.1"
    _serve_and_check(DispatcherMetrics())


def test_faust_web_server_binds_the_metrics_host(tmp_path, monkeypatch) -> None:
    from streams.adapters.faust_app import make_app

    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path))
    app = make_app({"worker": {"web_port": 6099}})
    assert app.conf.web_bind == "127.0.0.1"


def _listening_pid(port: int) -> int:
    import psutil

    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid:
            return c.pid
    raise AssertionError(f"no process of ours listens on port {port}")


@pytest.mark.kafka
def test_local_kafka_broker_listens_on_loopback_only(tmp_path) -> None:
    """A broker the launcher starts (its own, whatever cluster the session uses) listens on loopback only."""
    from infra.kafka.launcher import LocalKafka
    from streams.config import KafkaSettings
    from tests.fixtures_kafka import free_ports

    port, controller_port = free_ports(2)
    kafka = LocalKafka(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", external=False, port=port,
                                     controller_port=controller_port, start_timeout_s=120.0, heap="256m"), tmp_path)
    kafka.start()
    try:
        pid = _listening_pid(port)
        assert listeners(pid, children=False), "the broker listens nowhere?"
        assert exposed(pid, children=False) == []
    finally:
        kafka.stop()


@pytest.mark.ray
def test_local_ray_cluster_listens_on_loopback_only(ray_cluster) -> None:
    found = listeners(ray_cluster.pid)
    assert len(found) >= 3, found  # gcs, dashboard, raylet at least
    assert exposed(ray_cluster.pid) == [], "Ray processes listening beyond loopback: " + ", ".join(
        f"{x.name}({x.pid}) {x.ip}:{x.port}" for x in exposed(ray_cluster.pid))
