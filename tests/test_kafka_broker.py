"""The local broker launcher (infra/kafka/launcher.py) against a real JVM, in its own state folder.

The broker here is separate from the session broker of tests/fixtures_kafka.py and runs on free
ports, so it never meets a broker the user or another test started.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from infra.kafka import launcher
from infra.kafka.launcher import KafkaError, LocalKafka, new_cluster_id
from streams.config import KafkaSettings, kafka_settings
from streams.adapters.kafka_admin import ensure_topics, list_user_topics
from tests.fixtures_kafka import free_ports

pytestmark = pytest.mark.kafka

CLEAN_SHUTDOWN_MARKER = ".kafka_cleanshutdown"  # written by the broker on clean shutdown, removed at start


def _settings(**kw) -> KafkaSettings:
    port, controller_port = free_ports(2)
    base = dict(bootstrap_servers=f"127.0.0.1:{port}", external=False, port=port,
                controller_port=controller_port, start_timeout_s=120.0, heap="256m")
    base.update(kw)
    return KafkaSettings(**base)


def kafka_cli(*argv: str) -> int:
    """``driftloop kafka ARGV`` in this process (only the kafka command, as streams/cli/main.py wires it)."""
    parser = argparse.ArgumentParser(prog="driftloop kafka")
    parser.add_argument("--config")
    parser.add_argument("-v", "--verbose", action="store_true")
    launcher.add_arguments(parser)
    return launcher.run(parser.parse_args(list(argv)))


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # exited, only not reaped yet


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A broker state folder; whatever broker still runs there is stopped afterwards (failed tests too)."""
    path = tmp_path / "kafka"
    yield path
    LocalKafka(KafkaSettings(external=False), path).stop(timeout_s=30)


def test_start_status_stop_twice(state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    settings = _settings()
    kafka = LocalKafka(settings, state_dir)
    topic = "launcher.kept"

    # Round 1: from nothing (storage gets formatted), through the Python API.
    first = kafka.start_detailed()
    assert first.formatted and not first.already_running and first.pid
    assert first.bootstrap == f"127.0.0.1:{settings.port}"
    assert kafka.is_running()
    assert kafka.status().running and kafka.status().pid == first.pid
    assert not (kafka.data_dir / CLEAN_SHUTDOWN_MARKER).exists()
    again = kafka.start_detailed()  # second start is harmless
    assert again.already_running and again.pid == first.pid
    ensure_topics(first.bootstrap, [topic], partitions=2)
    assert kafka.stop() is True
    assert _gone(first.pid)
    assert (kafka.data_dir / CLEAN_SHUTDOWN_MARKER).is_file()  # Kafka writes it only after a clean shutdown
    assert not kafka.is_running() and not kafka.status().running
    assert kafka.stop() is False  # stopping a stopped broker is harmless too

    # A stale pid file (a live process that is not this broker) must not block the next start.
    (state_dir / "kafka.pid").write_text(f"{os.getpid()}\n")
    assert not kafka.is_running()

    # Round 2: through the command line, as a user would (a fresh object each time, as a new process).
    state = ["--state-dir", str(state_dir), "--port", str(settings.port),
             "--controller-port", str(settings.controller_port), "--timeout", "120"]
    capsys.readouterr()
    assert kafka_cli("start", *state) == 0
    out = capsys.readouterr().out
    assert "removed stale pid file" in out and "started at" in out and "warm start" in out
    assert kafka_cli("start", *state) == 0
    assert "already running" in capsys.readouterr().out
    assert kafka_cli("status", *state) == 0
    out = capsys.readouterr().out
    assert "running" in out and "topics 1" in out  # the topic of round 1 survived the restart
    assert list_user_topics(first.bootstrap) == [topic]
    pid = LocalKafka(settings, state_dir).running_pid()
    assert pid is not None and pid != first.pid
    # Pointing KAFKA_BOOTSTRAP_SERVERS at this broker (as other commands need) makes it "external":
    # start only checks it, and stop still stops the local broker of this state folder.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", first.bootstrap)
    assert kafka_cli("start", *state) == 0
    assert "external Kafka cluster" in capsys.readouterr().out
    assert kafka_cli("stop", *state) == 0
    assert "Kafka stopped" in capsys.readouterr().out
    assert _gone(pid)
    assert (kafka.data_dir / CLEAN_SHUTDOWN_MARKER).is_file()
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    assert kafka_cli("status", *state) == 3
    assert "not running" in capsys.readouterr().out
    assert not (state_dir / "kafka.pid").exists()


def test_stale_pid_of_dead_process_is_cleared(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    kafka = LocalKafka(_settings(), tmp_path)
    kafka.pid_file.write_text(f"{dead.pid}\n")
    assert kafka.running_pid() is None
    assert not kafka.status().running
    assert kafka.stop() is False
    assert not kafka.pid_file.exists()


def test_garbage_pid_file_is_cleared(tmp_path: Path) -> None:
    kafka = LocalKafka(_settings(), tmp_path)
    kafka.pid_file.write_text("not a pid\n")
    assert not kafka.is_running()
    assert kafka.stop() is False
    assert not kafka.pid_file.exists()


def test_busy_port_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        kafka = LocalKafka(_settings(port=port), tmp_path)
        with pytest.raises(KafkaError, match=rf"127\.0\.0\.1:{port} is in use.*--port"):
            kafka.start()
    assert kafka.running_pid() is None


def test_cluster_id_format() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert set(cid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_external_cluster_is_used_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, capsys
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    settings = kafka_settings({})
    assert settings.external
    kafka = LocalKafka(settings)
    assert kafka.start_detailed().external
    assert kafka.start() == kafka_bootstrap
    assert kafka.is_running() and kafka.status().running
    assert kafka.stop() is False
    assert not (tmp_path / "home").exists()  # nothing formatted, no pid, no logs

    assert kafka_cli("start") == 0
    assert "external Kafka cluster" in capsys.readouterr().out
    assert kafka_cli("stop") == 0
    assert "nothing to stop" in capsys.readouterr().out
    assert kafka_cli("status") == 0
    assert not (tmp_path / "home").exists()


def test_external_cluster_that_does_not_answer_is_an_error(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", external=True, start_timeout_s=2.0)
    with pytest.raises(KafkaError, match="does not answer"):
        LocalKafka(settings, tmp_path / "k").start()
    assert not (tmp_path / "k").exists()
