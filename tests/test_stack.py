"""The local stack: what healthy means (pure), its files without processes, and one real up/status/down (slow)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from streams.cli.stack_model import (
    COMPONENTS, RUNNING, STOP_ORDER, STOPPED, UNHEALTHY, ComponentStatus, Observation, StackInfo, StackPaths,
    action_for, exit_code, format_status, judge,
)

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- pure


def test_a_live_process_whose_endpoint_answers_is_running():
    s = judge("worker", Observation(12, True, True, "http://127.0.0.1:9108/metrics"))
    assert (s.state, s.pid, s.reason) == (RUNNING, 12, "")


def test_a_live_process_that_does_not_answer_is_unhealthy_and_says_why():
    s = judge("worker", Observation(123, True, False, "http://127.0.0.1:9108/metrics", "connection refused"))
    assert s.state == UNHEALTHY
    assert s.reason == "pid 123 alive but /metrics does not answer at http://127.0.0.1:9108/metrics (connection refused)"
    ray = judge("ray", Observation(7, True, False, "http://127.0.0.1:8265", "HTTP 503"))
    assert ray.state == UNHEALTHY and "Ray dashboard/GCS does not answer" in ray.reason


def test_the_dispatcher_is_running_while_its_process_lives():
    assert judge("dispatcher", Observation(5, True, True)).state == RUNNING
    assert judge("dispatcher", Observation(None, False, False)).state == STOPPED


def test_stopped_components_name_what_was_tried():
    kafka = judge("kafka", Observation(None, False, False, "127.0.0.1:9092"))
    assert (kafka.state, kafka.reason) == (STOPPED, "broker not reachable at 127.0.0.1:9092")
    stale = judge("worker", Observation(None, False, False, stale_pid=99))
    assert (stale.state, stale.reason, stale.pid) == (STOPPED, "stale pid file: pid 99 is not running the worker", None)


def test_external_clusters_are_judged_by_their_answer_only():
    ok = judge("kafka", Observation(None, False, True, "broker:9092", external=True))
    assert ok.state == RUNNING and ok.external and "external" in ok.reason
    down = judge("kafka", Observation(None, False, False, "broker:9092", "no answer within 3 s", external=True))
    assert down.state == UNHEALTHY and down.reason == "external the broker not reachable at broker:9092 (no answer within 3 s)"


def test_an_address_answering_without_our_process_is_unhealthy():
    s = judge("kafka", Observation(None, False, True, "127.0.0.1:9092"))
    assert s.state == UNHEALTHY and "another process holds the address" in s.reason


def test_up_keeps_running_waits_for_live_and_starts_stopped_components():
    assert action_for(ComponentStatus("worker", RUNNING, 1)) == "keep"
    assert action_for(ComponentStatus("worker", UNHEALTHY, 1)) == "wait"  # never a second copy
    assert action_for(ComponentStatus("worker", STOPPED)) == "start"
    assert action_for(ComponentStatus("kafka", UNHEALTHY, external=True)) == "wait"


def test_exit_code_and_lines():
    up = [ComponentStatus(n, RUNNING, 10 + i, f"addr-{n}") for i, n in enumerate(COMPONENTS)]
    assert exit_code(up) == 0
    assert exit_code([ComponentStatus(n, STOPPED) for n in COMPONENTS]) == 3
    sick = up[:1] + [ComponentStatus("worker", UNHEALTHY, 11, "u", "pid 11 alive but ...")] + up[2:]
    assert exit_code(sick) == 1
    assert exit_code(up[:1] + [ComponentStatus(n, STOPPED) for n in COMPONENTS[1:]]) == 1  # half a stack
    lines = format_status(sick)
    assert len(lines) == 4 and lines[1].split()[:4] == ["worker", "unhealthy", "pid", "11"]
    assert lines[1].endswith("(pid 11 alive but ...)")


def test_stop_order_stops_the_dispatcher_before_its_cluster():
    assert set(STOP_ORDER) == set(COMPONENTS)
    assert STOP_ORDER.index("dispatcher") < STOP_ORDER.index("ray") < STOP_ORDER.index("kafka")


def test_paths_and_addresses():
    p = StackPaths.under(Path("/h"))
    assert p.pid_file("worker") == Path("/h/stack/worker.pid") and p.log_file("dispatcher") == Path("/h/stack/dispatcher.log")
    info = StackInfo("127.0.0.1:9092", "http://127.0.0.1:9108/metrics", "http://127.0.0.1:8265", "127.0.0.1:6379",
                     "/h/dispatcher/ray/auth_token", {"worker": "/h/stack/worker.log", "ray": ""})
    text = "\n".join(info.lines())
    for part in ("127.0.0.1:9092", "/metrics", "8265", "127.0.0.1:6379", "auth_token", "/h/stack/worker.log"):
        assert part in text


# --------------------------------------------------------------------------- files, no processes


def _free_port() -> int:
    from tests.fixtures_kafka import free_ports

    return free_ports(1)[0]


def test_an_empty_home_is_a_stopped_stack(tmp_path):
    from streams.cli.stack import LocalStack

    stack = LocalStack({"kafka": {"port": _free_port()}}, tmp_path)
    statuses = stack.status()
    assert [s.name for s in statuses] == list(COMPONENTS)
    assert all(s.state == STOPPED for s in statuses) and exit_code(statuses) == 3


def test_stale_pid_files_are_reported_and_removed_by_down(tmp_path):
    from streams.cli.stack import LocalStack

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stack = LocalStack({"kafka": {"port": _free_port()}}, tmp_path)
    stack.paths.root.mkdir(parents=True)
    for name in ("worker", "dispatcher"):
        stack.paths.pid_file(name).write_text(f"{dead.pid}\n")
    stack.paths.pid_file("worker").write_text(f"{os.getpid()}\n")  # alive, but not a worker: never trusted
    st = {s.name: s for s in stack.status()}
    assert st["worker"].state == STOPPED and st["worker"].reason.endswith(f"pid {os.getpid()} is not running the worker")
    assert st["dispatcher"].reason == f"stale pid file: pid {dead.pid} is not running the dispatcher"
    lines = stack.down(timeout_s=1)
    assert lines[0] == f"dispatcher: not running (removed stale pid file, pid {dead.pid})"
    assert not stack.paths.pid_file("worker").exists() and not stack.paths.pid_file("dispatcher").exists()
    assert any(line == "kafka: not running" for line in lines)


def test_dashboard_without_a_cluster_says_how_to_start_one(tmp_path):
    from streams.cli.stack import LocalStack
    from streams.errors import StackError

    with pytest.raises(StackError) as err:
        LocalStack({}, tmp_path).dashboard()
    assert "driftloop up" in err.value.fix


# --------------------------------------------------------------------------- the real stack


def _cli(home: Path, config: Path, *argv: str, timeout: float = 420) -> subprocess.CompletedProcess:
    env = dict(os.environ, DRIFTLOOP_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "streams.cli", "--config", str(config), *argv], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=home)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.ray
def test_up_status_down_on_the_test_broker(kafka_env, tmp_path):
    run = uuid.uuid4().hex[:8]
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "driftloop.yaml"
    topics = {k: f"test.stack-{run}.{k}" for k in ("inputs", "labels", "alerts", "retrain_requests",
                                                    "retrain_results", "labelled", "model_updates")}
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": kafka_env}, "topics": {**topics, "partitions": 1},
        "worker": {"app_id": f"test-stack-{run}", "metrics_port": 0},
        "dispatcher": {"group_id": f"test-stack-dispatcher-{run}", "local_num_cpus": 1},
    }))
    try:
        up = _cli(home, config, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        for part in (f"Kafka bootstrap servers  {kafka_env}", "worker /metrics          http://127.0.0.1:",
                     "Ray dashboard            http://127.0.0.1:", "Ray GCS address          127.0.0.1:"):
            assert part in up.stdout
        status = _cli(home, config, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        lines = {line.split()[0]: line for line in status.stdout.splitlines()}
        assert set(lines) == set(COMPONENTS) and all(line.split()[1] == "running" for line in lines.values())
        pids = {n: (home / "stack" / f"{n}.pid").read_text() for n in ("worker", "dispatcher")}
        again = _cli(home, config, "up")  # idempotent: nothing starts twice
        assert again.returncode == 0 and "starting" not in again.stdout
        assert again.stdout.count("already running") == 4
        assert pids == {n: (home / "stack" / f"{n}.pid").read_text() for n in ("worker", "dispatcher")}
        dash = _cli(home, config, "dashboard")
        assert dash.returncode == 0 and "Token authentication is on" in dash.stdout
    finally:
        down = _cli(home, config, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "dispatcher: stopped" in down.stdout and "ray: stopped" in down.stdout and "worker: stopped" in down.stdout
    assert "kafka: external cluster" in down.stdout  # the test broker is not the stack's to stop
    after = _cli(home, config, "status")
    states = {line.split()[0]: line.split()[1] for line in after.stdout.splitlines()}
    assert states == {"kafka": "running", "worker": "stopped", "dispatcher": "stopped", "ray": "stopped"}
    assert not list((home / "stack").glob("*.pid"))
