"""The local stack on paper: its components, their files, and what "healthy" means (pure).

``driftloop up`` starts, in this order, the Kafka broker, the drift worker and the retrain
dispatcher, which starts (or reuses) the local Ray cluster; ``down`` stops them in reverse
order.  Each component is judged from an :class:`Observation` that the process adapters
(:mod:`streams.cli.stack_procs`) make: is its process alive, does its endpoint answer.

>>> judge("worker", Observation(pid=12, alive=True, answers=False, address="http://127.0.0.1:9108/metrics",
...                             problem="connection refused")).reason
'pid 12 alive but /metrics does not answer at http://127.0.0.1:9108/metrics (connection refused)'
>>> judge("kafka", Observation(pid=None, alive=False, answers=False, address="127.0.0.1:9092")).state
'stopped'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: Start order.  ``ray`` is started by the dispatcher and outlives it.
COMPONENTS = ("kafka", "worker", "dispatcher", "ray")
#: ``down``'s order: the reverse, except that the dispatcher stops before the cluster it uses.
STOP_ORDER = ("dispatcher", "ray", "worker", "kafka")
RUNNING, STOPPED, UNHEALTHY = "running", "stopped", "unhealthy"

#: What answers for each component, as the status line names it.
ENDPOINT = {"kafka": "the broker", "worker": "/metrics", "dispatcher": "", "ray": "the Ray dashboard/GCS"}


@dataclass(frozen=True)
class StackPaths:
    """Files of the stack under ``$DRIFTLOOP_HOME/stack``: ``<name>.pid``, ``<name>.log`` and small state files."""

    root: Path

    @classmethod
    def under(cls, home: Path) -> "StackPaths":
        return cls(Path(home) / "stack")

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.root / f"{name}.log"

    @property
    def worker_state(self) -> Path:
        """Written by ``driftloop worker --state-file`` once /metrics answers (pid, port, URL)."""
        return self.root / "worker.json"

    @property
    def kafka_state(self) -> Path:
        """Present when ``up`` started the broker itself (``down`` stops only a broker it started)."""
        return self.root / "kafka.json"


@dataclass(frozen=True)
class Observation:
    """What the adapters saw of one component."""

    pid: int | None  # from its pid file (None: no pid file, or not ours to track, e.g. an external cluster)
    alive: bool  # that pid runs and is this component (not a zombie, not a recycled pid)
    answers: bool  # its endpoint answered (for the dispatcher: nothing to ask, its process is enough)
    address: str = ""
    problem: str = ""  # what the probe saw when it failed
    external: bool = False  # the user's own cluster: not started or stopped by the stack
    log: str = ""
    stale_pid: int | None = None  # a pid file named this dead pid


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # running | stopped | unhealthy
    pid: int | None = None
    address: str = ""
    reason: str = ""
    log: str = ""
    external: bool = False

    @property
    def healthy(self) -> bool:
        return self.state == RUNNING


def judge(name: str, obs: Observation) -> ComponentStatus:
    """The state of a component from what was seen of it, with the reason when it is not healthy."""
    base = dict(name=name, pid=obs.pid if obs.alive else None, address=obs.address, log=obs.log, external=obs.external)
    why = f" ({obs.problem})" if obs.problem else ""
    at = f" at {obs.address}" if obs.address else ""
    what = ENDPOINT.get(name, "")
    if obs.external:
        if obs.answers:
            return ComponentStatus(state=RUNNING, reason="external, not managed by the stack", **base)
        return ComponentStatus(state=UNHEALTHY, reason=f"external {what or name} not reachable{at}{why}", **base)
    if obs.alive:
        if obs.answers or not what:
            return ComponentStatus(state=RUNNING, **base)
        return ComponentStatus(state=UNHEALTHY, reason=f"pid {obs.pid} alive but {what} does not answer{at}{why}",
                               **base)
    if obs.answers:  # the endpoint answers but not from the process the stack started
        return ComponentStatus(state=UNHEALTHY, reason=f"no {name} process of this stack, yet {what}{at} answers: "
                               "another process holds the address", **base)
    if name == "kafka" and obs.pid is None and not obs.stale_pid:
        return ComponentStatus(state=STOPPED, reason=f"broker not reachable{at}", **base)
    stale = f"stale pid file: pid {obs.stale_pid} is not running the {name}" if obs.stale_pid else ""
    return ComponentStatus(state=STOPPED, reason=stale, **base)


def action_for(status: ComponentStatus) -> str:
    """What ``up`` does with a component: ``keep`` a running one, ``wait`` for one whose process lives but does
    not answer yet (never a second copy), ``start`` a stopped one."""
    if status.state == RUNNING:
        return "keep"
    if status.pid is not None or status.external:
        return "wait"
    return "start"


def exit_code(statuses: Iterable[ComponentStatus]) -> int:
    """``status``'s exit code: 0 every component healthy, 3 the stack is down (nothing runs), 1 otherwise."""
    states = [s.state for s in statuses]
    if all(s == RUNNING for s in states):
        return 0
    if all(s == STOPPED for s in states):
        return 3
    return 1


def format_status(statuses: Iterable[ComponentStatus]) -> list[str]:
    """One line per component: name, state, pid, address, and the reason when it is not running."""
    out = []
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid else ("external" if s.external else "-")
        line = f"{s.name:<10} {s.state:<9} {pid:<11} {s.address or '-'}"
        if s.reason:
            line += f"  ({s.reason})"
        out.append(line.rstrip())
    return out


@dataclass(frozen=True)
class StackInfo:
    """Every address of a running stack, for the operator."""

    bootstrap: str
    metrics_url: str
    dashboard_url: str
    gcs_address: str
    token_path: str | None
    logs: dict[str, str]

    def lines(self) -> list[str]:
        out = [f"Kafka bootstrap servers  {self.bootstrap}",
               f"worker /metrics          {self.metrics_url or '-'}",
               f"Ray dashboard            {self.dashboard_url or '-'}",
               f"Ray GCS address          {self.gcs_address or '-'}"]
        if self.token_path:
            out.append(f"Ray auth token file      {self.token_path}  (`driftloop dashboard` says how to log in)")
        out += [f"log: {name:<17}{path}" for name, path in self.logs.items() if path]
        return out


__all__ = ["COMPONENTS", "STOP_ORDER", "RUNNING", "STOPPED", "UNHEALTHY", "StackPaths", "Observation", "ComponentStatus", "judge",
           "action_for", "exit_code", "format_status", "StackInfo"]
