"""Commands fail with one or two lines that say what to do, never a traceback (real subprocesses, no broker)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.errors import BrokerUnreachable, MissingFile, UserError

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    from tests.fixtures_kafka import free_ports

    return free_ports(1)[0]


def _cli(tmp_path: Path, *argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str, float]:
    full = dict(os.environ, DRIFTLOOP_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), **(env or {}))
    full.pop("DRIFTLOOP_CONFIG", None)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "streams.cli", *argv], env=full, capture_output=True, text=True,
                       timeout=timeout, cwd=tmp_path)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def test_user_errors_carry_a_fix_and_an_exit_code():
    e = BrokerUnreachable("127.0.0.1:1", 5)
    assert e.exit_code == 3 and "127.0.0.1:1" in e.lines()[0] and "driftloop up" in e.lines()[1]
    assert MissingFile("x.jsonl").exit_code == 2
    assert UserError("plain").lines() == ["plain"]


@pytest.mark.parametrize("argv", [
    ["produce", "{file}", "--topic", "inputs"],
    ["alerts"],
    ["produce-sample", "--n", "10"],
    ["worker"],
    ["dispatcher"],
    ["demo"],  # with a cluster of yours configured: checked first, not after 90 s of waiting
], ids=lambda a: a[0])
def test_a_missing_broker_fails_fast_with_the_address_and_the_fix(tmp_path, argv):
    events = tmp_path / "in.jsonl"
    events.write_text('{"event_id": "e-1"}\n')
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    rc, out, err, took = _cli(tmp_path, *[a.format(file=events) for a in argv],
                              env={"KAFKA_BOOTSTRAP_SERVERS": address})
    assert rc == 3, out + err
    assert "(tried for 5 s)" in err  # a bounded check (no timing assertion: _cli's timeout catches a hang)
    assert "Traceback" not in err and "ECONNREFUSED" not in err  # no client noise either
    assert f"no Kafka broker answers at {address}" in err
    assert "driftloop up" in err and "driftloop kafka start" in err
    assert len(err.strip().splitlines()) == 2


def test_a_missing_file_is_named_before_the_broker_is_asked(tmp_path):
    rc, _, err, took = _cli(tmp_path, "produce", "nope.jsonl", "--topic", "inputs",
                            env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}"})
    assert rc == 2
    assert err.startswith("driftloop produce: events file nope.jsonl does not exist") and "fix:" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("text, says", [
    ("kafka: [\n", "is not valid YAML at line 2"),
    ("workers:\n  metrics_port: 1\n", "did you mean 'worker'?"),
    ("worker:\n  metrics_port: lots\n", "worker.metrics_port: expected an integer"),
    ("worker:\n  metrics_port: 99999\n", "worker.metrics_port must be a TCP port, 0 to 65535"),
], ids=["yaml", "section", "type", "range"])
def test_a_bad_config_says_where(tmp_path, text, says):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    rc, _, err, _ = _cli(tmp_path, "--config", str(cfg), "status")
    assert rc == 2 and says in err and err.startswith("driftloop status: bad configuration:")
    assert "Traceback" not in err


def test_a_missing_config_file(tmp_path):
    rc, _, err, _ = _cli(tmp_path, "--config", "nowhere.yaml", "up")
    assert rc == 2 and "config file nowhere.yaml does not exist" in err and "Traceback" not in err


def test_dashboard_without_a_stack(tmp_path):
    rc, _, err, _ = _cli(tmp_path, "dashboard")
    assert rc == 1 and "no local Ray cluster is running" in err and "fix: start the stack with `driftloop up`" in err
    assert "Traceback" not in err


def test_status_of_a_stack_that_never_ran(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"kafka:\n  port: {_free_port()}\n")
    rc, out, err, took = _cli(tmp_path, "--config", str(cfg), "status")
    assert rc == 3, err
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["kafka", "stopped"], ["worker", "stopped"], ["dispatcher", "stopped"], ["ray", "stopped"]]


def test_up_with_an_external_cluster_that_does_not_answer(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    rc, out, err, took = _cli(tmp_path, "up", env={"KAFKA_BOOTSTRAP_SERVERS": address})
    assert rc == 1, out + err
    assert f"the configured Kafka cluster at {address} does not answer" in err and "unset KAFKA_BOOTSTRAP_SERVERS" in err
    assert "Traceback" not in err and not (tmp_path / "home" / "stack" / "worker.pid").exists()
