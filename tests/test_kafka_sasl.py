"""SASL_SSL (SCRAM-SHA-512) end to end against driftloop's own broker: produce -> worker -> alerts.

One broker for the module, started with ``kafka.security_protocol: SASL_SSL`` (its CA, certificate and SCRAM users made
by infra/kafka/security.py), a canary password in a 0600 file.  The commands run as subprocesses with a config file
that names that file, as a user would write it.  Then every output channel is searched for the canary: the
commands' output, the worker's log and /metrics, the broker's logs and properties.  A client with a wrong password
is refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from streams.cli.sample import Drift, SampleTraffic
from tests.fixtures_kafka import free_ports

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]
CANARY = "canary-Sc7am-" + uuid.uuid4().hex[:8]
USER = "driftloop-app"


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from infra.kafka.launcher import LocalKafka
    from streams.adapters.kafka_clients import write_secret_file
    from streams.config import KafkaSettings

    tmp = tmp_path_factory.mktemp("sasl")
    pw = write_secret_file(tmp / "kafka-password", CANARY + "\n")
    port, cport = free_ports(2)
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", port=port, controller_port=cport,
                             start_timeout_s=150.0, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username=USER, sasl_password_file=str(pw))
    kafka = LocalKafka(settings, tmp / "broker")
    kafka.start()
    try:
        conn = kafka.connection
        yield {"kafka": kafka, "conn": conn, "tmp": tmp,
               "section": {"bootstrap_servers": conn.bootstrap, "security_protocol": "SASL_SSL",
                           "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": USER,
                           "sasl_password_file": str(pw), "ssl_cafile": conn.cafile}}
    finally:
        kafka.stop()


def _env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "DRIFTLOOP_HOME": str(tmp / "home")}
    for k in ("KAFKA_BOOTSTRAP_SERVERS", "DRIFTLOOP_KAFKA_PASSWORD", "DRIFTLOOP_CONFIG"):
        env.pop(k, None)
    return env


def _cli(config: Path, *args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "--config", str(config), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_produce_worker_alerts_over_sasl_ssl_and_the_password_shows_nowhere(sasl_kafka: dict) -> None:
    tmp = sasl_kafka["tmp"] / "e2e"
    tmp.mkdir()
    tag = uuid.uuid4().hex[:8]
    topics = {"inputs": f"test.sasl.{tag}.inputs", "labels": f"test.sasl.{tag}.labels",
              "alerts": f"test.sasl.{tag}.alerts", "labelled": f"test.sasl.{tag}.labelled",
              "retrain_requests": f"test.sasl.{tag}.rr", "partitions": 2}
    metrics_port = free_ports(1)[0]
    config = tmp / "driftloop.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": sasl_kafka["section"], "topics": topics,
        "drift": {"window_seconds": 10, "min_samples": 200},
        "worker": {"app_id": f"test-sasl-{tag}", "reference_dir": str(tmp / "refs"), "batch_size": 500,
                   "batch_within_s": 0.2, "reference_bootstrap_n": 2000, "label_join": False},
    }))
    traffic = SampleTraffic(seed=7)
    traffic.drifts.append(Drift("amount", traffic.start_ts + 80.0, scale=3.0))
    events = tmp / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in traffic.events(8000)))  # 160 s of event time
    env = _env(tmp)

    produced = _cli(config, "produce", str(events), "--topic", "inputs", "--quiet", env=env)
    assert produced.returncode == 0, produced.stderr[-2000:]

    log = tmp / "worker.log"
    with open(log, "ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "--config", str(config), "worker",
                                   "--metrics-port", str(metrics_port), "--data-dir", str(tmp / "data")],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        alerts = _cli(config, "alerts", "--from-beginning", "--json", "--max", "1", "--timeout", "200", env=env,
                      timeout=300)
        assert worker.poll() is None, log.read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    assert alerts.returncode == 0, alerts.stderr[-2000:]
    found = [json.loads(line) for line in alerts.stdout.splitlines() if line.strip()]
    assert found and found[0]["model"] == "fraud" and found[0]["feature"] == "amount", (alerts.stdout, log.read_text()[-3000:])
    assert "driftloop_events_total" in metrics

    kafka = sasl_kafka["kafka"]
    channels = {
        "produce output": produced.stdout + produced.stderr,
        "alerts output": alerts.stdout + alerts.stderr,
        "worker log": log.read_text(errors="replace"),
        "worker /metrics": metrics,
        "broker server.log": kafka.server_log.read_text(errors="replace"),
        "broker console.log": kafka.console_log.read_text(errors="replace"),
        "broker server.properties": kafka.properties_file.read_text(),
    }
    leaked = [name for name, text in channels.items() if CANARY in text]
    assert leaked == [], f"the password appeared in: {leaked}"
    assert "SASL_SSL://127.0.0.1" in channels["broker server.properties"]
    assert "PLAINTEXT://" not in channels["broker server.properties"].split("listeners=", 1)[1].splitlines()[0]


def test_a_client_with_a_wrong_password_is_refused(sasl_kafka: dict) -> None:
    import dataclasses

    from kafka import KafkaProducer

    bad = dataclasses.replace(sasl_kafka["conn"], password="wrong-" + CANARY[::-1])
    with pytest.raises(Exception):  # refused within the client's own bounds (max_block_ms, get's timeout)
        producer = KafkaProducer(**bad.kafka_python(), acks="all", max_block_ms=8000)
        try:
            producer.send("test.sasl.refused", b"must not land").get(timeout=8)
        finally:
            producer.close(timeout=2)
    server_log = sasl_kafka["kafka"].server_log.read_text(errors="replace")
    assert "Failed authentication" in server_log and "invalid credentials" in server_log
    # the same through a command: the error names the address, never either password
    tmp = sasl_kafka["tmp"] / "refused"
    tmp.mkdir()
    config = tmp / "driftloop.yaml"
    config.write_text(yaml.safe_dump({"kafka": sasl_kafka["section"]}))
    env = {**_env(tmp), "DRIFTLOOP_KAFKA_PASSWORD": "wrong-" + CANARY[::-1]}
    r = _cli(config, "alerts", "--from-beginning", "--timeout", "5", env=env, timeout=120)
    assert r.returncode != 0 and "SASL_SSL" in r.stderr and "DRIFTLOOP_KAFKA_PASSWORD" in r.stderr, r.stderr
    assert CANARY not in r.stdout + r.stderr and CANARY[::-1] not in r.stdout + r.stderr


def test_a_plaintext_client_gets_nothing_from_the_sasl_ssl_listener(sasl_kafka: dict) -> None:
    from streams.adapters.kafka_admin import BrokerUnavailable, wait_for_broker

    with pytest.raises(BrokerUnavailable):
        wait_for_broker(sasl_kafka["conn"].bootstrap, timeout_s=4)
    assert wait_for_broker(sasl_kafka["conn"], timeout_s=30)["brokers"]


def test_aiokafka_reads_back_over_sasl_ssl_as_the_label_join_does(sasl_kafka: dict) -> None:
    """The worker's own aiokafka reader (label-join rebuild after a restart) with the same connection."""
    import asyncio

    from kafka import KafkaProducer

    from streams.adapters.faust_agents import read_partition
    from streams.adapters.kafka_admin import ensure_topics

    conn = sasl_kafka["conn"]
    topic = f"test.sasl.{uuid.uuid4().hex[:8]}.aio"
    ensure_topics(conn, [topic], partitions=1)
    producer = KafkaProducer(**conn.kafka_python(), acks="all")
    for i in range(3):
        producer.send(topic, f"r{i}".encode(), partition=0)
    producer.flush()
    producer.close()
    got = asyncio.run(read_partition(conn, topic, 0, 0, 2))
    assert [v for _, v in got] == [b"r0", b"r1", b"r2"]
