"""``driftloop up | down | status | dashboard``: the local stack, in the background.

:class:`LocalStack` starts the Kafka broker (``infra/kafka/launcher.py``; a cluster named by
``KAFKA_BOOTSTRAP_SERVERS`` or ``kafka.bootstrap_servers`` is used, never started), the drift
worker (``driftloop worker``) and the retrain dispatcher (``driftloop dispatcher``, which starts
or reuses the local Ray cluster), as detached processes with pid files and logs under
``$DRIFTLOOP_HOME/stack/``, and waits until each one is healthy.  ``up`` twice starts nothing
twice; ``down`` stops them in reverse order (SIGTERM, SIGKILL after a timeout), a broker only
when ``up`` started it.  What the components are and what "healthy" means is in
:mod:`streams.cli.stack_model`; the process handling in :mod:`streams.cli.stack_procs`.

From Python (the demo)::

    stack = LocalStack(raw_config, home, config_path)
    info = stack.up()              # StackInfo: every address and log
    stack.status()                 # [ComponentStatus, ...]
    stack.down()
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from streams.cli import stack_procs as procs
from streams.cli.stack_model import (
    COMPONENTS, RUNNING, STOP_ORDER, ComponentStatus, Observation, StackInfo, StackPaths, action_for, exit_code, format_status,
    judge,
)
from streams.errors import StackError

ROOT = Path(__file__).resolve().parents[2]  # the repository (streams/cli/stack.py)
MARKERS = {"worker": ("streams.cli", "worker"), "dispatcher": ("streams.cli", "dispatcher")}
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DashboardInfo:
    url: str
    auth_mode: str  # token | disabled | unknown (what the dashboard says of itself)
    token_path: str | None
    external: bool


class LocalStack:
    """The local stack of one ``$DRIFTLOOP_HOME`` and one configuration."""

    def __init__(self, raw: Mapping[str, Any], home: Path, config_path: str | None = None,
                 on_progress: Callable[[str, str], None] | None = None) -> None:
        from infra.kafka.launcher import LocalKafka
        from streams import config as C
        from streams.worker.state import WorkerConfig
        from trainers.dispatch.ledger import DispatcherConfig

        self.raw, self.home = dict(raw), Path(home).resolve()
        self.config_path = str(Path(config_path).resolve()) if config_path else None
        self.paths = StackPaths.under(self.home)
        self.kafka = LocalKafka(C.kafka_settings(raw), None if C.kafka_settings(raw).state_dir else self.home / "kafka")
        self.worker_cfg = C.section(WorkerConfig, raw.get("worker"), "worker")
        self.dispatcher_cfg = C.section(DispatcherConfig, raw.get("dispatcher"), "dispatcher")
        self.ray_state = Path(self.dispatcher_cfg.state_dir or self.home / "dispatcher") / "ray"
        self.on_progress = on_progress or (lambda name, msg: None)
        self._procs: dict[str, Any] = {}  # children started by this object (Popen)

    # observing --------------------------------------------------------------
    def observe(self, name: str) -> Observation:
        return getattr(self, f"_observe_{name}")()

    def status(self) -> list[ComponentStatus]:
        return [judge(name, self.observe(name)) for name in COMPONENTS]

    def _observe_kafka(self) -> Observation:
        k = self.kafka
        if k.external:
            ok, why = procs.broker_ok(k.connection)
            return Observation(None, False, ok, k.bootstrap, why, external=True)
        pid = k.running_pid()
        stale = procs.read_pid(k.pid_file) if pid is None else None
        if pid is None and procs.port_free(k.settings.port):
            return Observation(None, False, False, k.bootstrap, log=str(k.server_log), stale_pid=stale)
        ok, why = procs.broker_ok(k.connection)
        return Observation(pid, pid is not None, ok, k.bootstrap, why, log=str(k.server_log), stale_pid=stale)

    def _child(self, name: str) -> tuple[int | None, bool, int | None]:
        pid = procs.read_pid(self.paths.pid_file(name))
        alive = pid is not None and procs.owns(pid, MARKERS[name])
        return (pid if alive else None), alive, (pid if pid is not None and not alive else None)

    def _observe_worker(self) -> Observation:
        pid, alive, stale = self._child("worker")
        log = str(self.paths.log_file("worker"))
        state = self._worker_state()
        url = (state.get("metrics_url") or "") if state.get("pid") == pid or not alive else ""
        if not alive:
            return Observation(None, False, False, url, log=log, stale_pid=stale)
        if not url:
            return Observation(pid, True, False, "", "it has not announced its /metrics port yet", log=log)
        ok, why = procs.http_ok(url)
        return Observation(pid, True, ok, url, why, log=log)

    def _observe_dispatcher(self) -> Observation:
        pid, alive, stale = self._child("dispatcher")
        return Observation(pid, alive, alive, log=str(self.paths.log_file("dispatcher")), stale_pid=stale)

    def _observe_ray(self) -> Observation:
        from trainers.dispatch.ray_cluster import load_recorded_cluster

        if self.dispatcher_cfg.ray_address:
            ok, why = procs.http_ok(self.dispatcher_cfg.ray_address.rstrip("/") + "/api/gcs_healthz")
            return Observation(None, False, ok, self.dispatcher_cfg.ray_address, why, external=True)
        cluster = load_recorded_cluster(self.ray_state)
        if cluster is None:
            return Observation(None, False, False, log=str(self.ray_state / "ray-head.log"))
        address = f"{cluster.dashboard_url} (gcs {cluster.gcs_address})"
        ok, why = procs.http_ok(cluster.dashboard_url + "/api/gcs_healthz")
        if ok:
            ok, why = procs.tcp_ok(cluster.gcs_address)
            why = f"GCS {cluster.gcs_address}: {why}" if why else ""
        return Observation(cluster.pid, True, ok, address, why, log=cluster.log_file)

    def _worker_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.paths.worker_state.read_text())
        except (OSError, ValueError):
            return {}

    # starting ---------------------------------------------------------------
    def _argv(self, *command: str) -> list[str]:
        return [sys.executable, "-m", "streams.cli", *(["--config", self.config_path] if self.config_path else []),
                *command]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, DRIFTLOOP_HOME=str(self.home))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def up(self, timeout_s: float = START_TIMEOUT_S) -> StackInfo:
        """Start what is not running, in order, and wait until each component is healthy."""
        self.paths.root.mkdir(parents=True, exist_ok=True)
        for name in COMPONENTS:
            status = judge(name, self.observe(name))
            action = action_for(status)
            if action == "keep":
                started_now = name == "ray" and "dispatcher" in self._procs
                self.on_progress(name, "started by the dispatcher" if started_now else "already running")
                continue
            t0 = time.monotonic()
            if name == "kafka":
                self._start_kafka()
            elif name == "ray":
                pass  # the dispatcher starts (or reuses) it
            elif action == "start":
                self._start_child(name)
            self._wait_healthy(name, timeout_s, t0)
        return self.info()

    def _start_kafka(self) -> None:
        if self.kafka.external:  # the user's cluster: only waited for, briefly
            ok, why = procs.broker_ok(self.kafka.connection, timeout_s=10.0)
            if not ok:
                raise StackError(f"the configured Kafka cluster at {self.kafka.bootstrap} does not answer ({why})",
                                 "start that cluster, or unset KAFKA_BOOTSTRAP_SERVERS / kafka.bootstrap_servers "
                                 "to let `driftloop up` start its own broker")
            return
        self.on_progress("kafka", f"starting the broker at {self.kafka.bootstrap}")
        res = self.kafka.start_detailed()
        if not (res.external or res.already_running):
            self.paths.kafka_state.write_text(json.dumps({"bootstrap": res.bootstrap, "pid": res.pid,
                                                          "started_at": time.time()}))

    def _start_child(self, name: str) -> None:
        if name == "worker":
            port = self.worker_cfg.metrics_port or procs.free_port()
            if not procs.port_free(port):
                raise StackError(f"port {port} for the worker's /metrics (worker.metrics_port) is in use",
                                 "set worker.metrics_port to a free port, or to 0 to let `driftloop up` pick one")
            self.paths.worker_state.unlink(missing_ok=True)
            argv = self._argv("worker", "--metrics-port", str(port), "--state-file", str(self.paths.worker_state))
        else:
            argv = self._argv("dispatcher")
        self.on_progress(name, "starting")
        self._procs[name] = procs.spawn(argv, env=self._env(), log=self.paths.log_file(name),
                                        pid_file=self.paths.pid_file(name))

    def _wait_healthy(self, name: str, timeout_s: float, t0: float) -> None:
        names = ("dispatcher", "ray") if name == "dispatcher" else (name,)
        while True:
            statuses = {n: judge(n, self.observe(n)) for n in names}
            if all(s.state == RUNNING for s in statuses.values()):
                self.on_progress(name, f"healthy after {time.monotonic() - t0:.0f} s")
                return
            for n, s in statuses.items():
                proc = self._procs.get(n)
                if proc is not None and proc.poll() is not None:
                    raise StackError(f"the {n} exited while starting; its log ends with:\n"
                                     f"{procs.tail(self.paths.log_file(n), 8)}",
                                     f"see {self.paths.log_file(n)}; `driftloop down` cleans up")
            waiting = "; ".join(s.reason or f"{n} not up yet" for n, s in statuses.items() if s.state != RUNNING)
            if time.monotonic() - t0 > timeout_s:
                raise StackError(f"the {name} is not healthy after {timeout_s:.0f} s: {waiting}",
                                 f"see its log ({statuses[name].log or self.paths.log_file(name)}); "
                                 "`driftloop down` stops what started")
            self.on_progress(name, f"waiting ({time.monotonic() - t0:.0f} s): {waiting}")
            time.sleep(1.0)

    def info(self) -> StackInfo:
        from trainers.dispatch.ray_cluster import load_recorded_cluster

        cluster = None if self.dispatcher_cfg.ray_address else load_recorded_cluster(self.ray_state)
        logs = {"kafka": "" if self.kafka.external else str(self.kafka.server_log),
                "worker": str(self.paths.log_file("worker")), "dispatcher": str(self.paths.log_file("dispatcher")),
                "ray": cluster.log_file if cluster else ""}
        return StackInfo(self.kafka.bootstrap, self._worker_state().get("metrics_url") or "",
                         cluster.dashboard_url if cluster else self.dispatcher_cfg.ray_address,
                         cluster.gcs_address if cluster else "", cluster.token_path if cluster else None, logs)

    # stopping ---------------------------------------------------------------
    def down(self, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
        """Stop every component the stack started, in reverse order; returns one line per component."""
        from trainers.dispatch.ray_cluster import stop_local_cluster

        out = []
        for name in STOP_ORDER:
            if name in MARKERS:
                pid_file = self.paths.pid_file(name)
                pid = procs.read_pid(pid_file)
                if pid is not None and procs.owns(pid, MARKERS[name]):
                    clean = procs.terminate(pid, MARKERS[name], timeout_s)
                    out.append(f"{name}: stopped (pid {pid}{'' if clean else ', killed after ' + str(int(timeout_s)) + ' s'})")
                else:
                    out.append(f"{name}: not running" + (f" (removed stale pid file, pid {pid})" if pid else ""))
                pid_file.unlink(missing_ok=True)
                if name == "worker":
                    self.paths.worker_state.unlink(missing_ok=True)
            elif name == "ray":
                if self.dispatcher_cfg.ray_address:
                    out.append(f"ray: external cluster at {self.dispatcher_cfg.ray_address}, left running")
                else:
                    out.append("ray: stopped" if stop_local_cluster(self.ray_state, timeout_s) else "ray: not running")
            else:
                out.append(self._stop_kafka())
        return out

    def _stop_kafka(self) -> str:
        if self.kafka.external:
            return f"kafka: external cluster at {self.kafka.bootstrap}, left running"
        if not self.paths.kafka_state.exists():
            if self.kafka.running_pid() is not None:
                return "kafka: left running (it ran before `driftloop up`; stop it with `driftloop kafka stop`)"
            return "kafka: not running"
        stopped = self.kafka.stop()
        self.paths.kafka_state.unlink(missing_ok=True)
        return "kafka: stopped" if stopped else "kafka: not running"

    # the dashboard ----------------------------------------------------------
    def dashboard(self) -> DashboardInfo:
        from trainers.dispatch.ray_cluster import load_recorded_cluster

        external = bool(self.dispatcher_cfg.ray_address)
        cluster = None if external else load_recorded_cluster(self.ray_state)
        if cluster is None and not external:
            raise StackError(f"no local Ray cluster is running (state in {self.ray_state})",
                             "start the stack with `driftloop up` (the dispatcher starts the cluster)")
        url = (self.dispatcher_cfg.ray_address if external else cluster.dashboard_url).rstrip("/")
        try:
            import urllib.request

            with urllib.request.urlopen(url + "/api/authentication_mode", timeout=3.0) as r:
                mode = json.loads(r.read()).get("authentication_mode", "unknown")
        except (OSError, ValueError):
            mode = "unknown"
        return DashboardInfo(url, mode, None if external else cluster.token_path, external)


# --------------------------------------------------------------------------- commands


def _stack(args: argparse.Namespace, on_progress=None) -> LocalStack:
    from streams import config as C

    config_path = getattr(args, "config", None) or os.environ.get("DRIFTLOOP_CONFIG")
    return LocalStack(C.load_file(config_path), C.home(), config_path, on_progress)


class StackProgress:
    """One line per step; on a terminal the waiting line is rewritten in place."""

    def __init__(self, out=sys.stdout, every_s: float = 15.0, prefix: str = "") -> None:
        self.out, self.tty, self.open, self.prefix = out, out.isatty(), False, prefix
        self.every_s, self.last = every_s, time.monotonic()

    def __call__(self, name: str, msg: str) -> None:
        line = f"{self.prefix}  {name:<10} {msg}"
        if msg.startswith("waiting"):
            if self.tty:
                print("\r" + line[:110].ljust(110), end="", file=self.out, flush=True)
                self.open = True
            elif time.monotonic() - self.last >= self.every_s:  # a log file: a line now and then
                print(line, file=self.out, flush=True)
                self.last = time.monotonic()
            return
        if self.open:
            print(file=self.out)
            self.open = False
        print(line, file=self.out, flush=True)


@dataclass(frozen=True)
class _Command:
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _up_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds each component may take to be healthy")


def _up(args: argparse.Namespace) -> int:
    stack = _stack(args, StackProgress())
    print(f"driftloop stack in {stack.paths.root}")
    info = stack.up(args.timeout)
    print("\n".join(["", *info.lines(), "", "stop it with: driftloop down    check it with: driftloop status"]))
    return 0


def _down_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=STOP_TIMEOUT_S, help="seconds before SIGTERM becomes SIGKILL")


def _down(args: argparse.Namespace) -> int:
    print("\n".join(_stack(args).down(args.timeout)))
    return 0


def _status(args: argparse.Namespace) -> int:
    statuses = _stack(args).status()
    print("\n".join(format_status(statuses)))
    return exit_code(statuses)


def _dashboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show-token", action="store_true", help="print the token itself (it grants full cluster access)")


def _dashboard(args: argparse.Namespace) -> int:
    d = _stack(args).dashboard()
    port = d.url.rsplit(":", 1)[-1]
    print(d.url)
    if d.auth_mode == "token":
        print("Token authentication is on (RAY_AUTH_MODE=token): when the page asks for an \"Authentication Token\",")
        if d.token_path:
            print(f"paste the token from {d.token_path}" + ("" if args.show_token else
                  " (print it with `driftloop dashboard --show-token`)."))
            if args.show_token:
                print(Path(d.token_path).read_text().strip())
            print(f"Ray CLI / Jobs API: RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={d.token_path} "
                  f"ray job list --address {d.url}")
        else:
            print("paste the token of that cluster (its operator has it; `ray get-auth-token` on its head node).")
    elif d.auth_mode == "disabled":
        print("No authentication: anyone who can reach the dashboard can submit jobs (run code) on the cluster.")
    else:
        print("The dashboard did not say whether it needs a token (it may still be starting).")
    if not d.external:
        print(f"It binds 127.0.0.1 only: from another machine, tunnel it (ssh -L {port}:127.0.0.1:{port} THIS_HOST).")
    return 0


up = _Command(_up_args, _up)
down = _Command(_down_args, _down)
status = _Command(lambda p: None, _status)
dashboard = _Command(_dashboard_args, _dashboard)
