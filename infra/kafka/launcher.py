"""driftloop's own single-node Apache Kafka broker (KRaft, broker and controller in one JVM).

No Docker: the broker jars are resolved once by Maven (``infra/kafka/pom.xml``) into a cache
folder, the storage is formatted with ``kafka.tools.StorageTool`` and ``kafka.Kafka`` runs
detached, bound to 127.0.0.1.  Data, logs, pid and the generated ``server.properties`` live
under one state folder (``$DRIFTLOOP_HOME/kafka`` unless ``kafka.state_dir`` says otherwise).

When the configuration points at a cluster of the user's own (``KAFKA_BOOTSTRAP_SERVERS`` or
``kafka.bootstrap_servers``, see :func:`streams.config.kafka_settings`), nothing is started:
``start`` only checks that the cluster answers.

Environment: ``DRIFTLOOP_KAFKA_LIBS`` (jar folder, default ``~/.cache/driftloop/kafka-<version>/libs``,
shared by every clone on the machine), ``DRIFTLOOP_KAFKA_JVM_OPTS`` (extra broker JVM flags),
``JAVA_HOME``; Maven honours ``MAVEN_OPTS`` (e.g. ``-Dmaven.repo.local=...``).

A local cluster of three combined controller+broker nodes (``--nodes 3`` / ``kafka.nodes: 3``)
uses the same launcher per node: node *i* listens on ``port + 2(i-1)`` and ``controller_port + 2(i-1)``,
keeps its state under ``<state dir>/node-<i>``, and the nodes form a static KRaft quorum
(``controller.quorum.voters``).  Topics get replication factor 3 and ``min.insync.replicas`` 2 there.

Command line: ``driftloop kafka start|stop|status|fetch [--nodes N]``.  From Python::

    kafka = LocalKafka(streams.config.kafka_settings({}), Path("/tmp/k"))
    bootstrap = kafka.start()      # "127.0.0.1:9092"
    ...
    kafka.stop()
    cluster = LocalKafkaCluster(dataclasses.replace(settings, nodes=3), Path("/tmp/k3"))
    cluster.start()                # "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    cluster.nodes[1].kill()        # one broker SIGKILLed (fault tests); cluster.nodes[1].start() again
    cluster.stop()
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Callable, Iterator, Sequence

from streams.config import KafkaSettings

KAFKA_VERSION = "4.1.1"  # must match <kafka.version> in pom.xml
HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG_CONFIG = HERE / "log4j2.yaml"
NODE_ID = 1
STOP_TIMEOUT_S = 60.0
#: seconds a cluster node still stopping is given once the nodes still running are no majority of the voters
QUORUM_GRACE_S = 5.0
# C1-only JIT: on this project's 2-core machines the broker answers ~1.3x (idle) to ~1.8x (loaded)
# sooner than with the default tiered C2 compiler; a development broker is I/O-bound, not JIT-bound.
# Set DRIFTLOOP_KAFKA_JVM_OPTS (even to "") to replace these flags.
DEFAULT_BROKER_JVM_OPTS = ("-XX:TieredStopAtLevel=1",)
_COMPLETE_MARKER = ".driftloop-complete"


#: seconds a configured (external) cluster gets to answer `kafka start`
EXTERNAL_CHECK_S = 10.0

class KafkaError(RuntimeError):
    """The local broker could not be fetched, started or stopped (the message says what to do)."""


# --------------------------------------------------------------------------- jars


def libs_dir() -> Path:
    """Folder of the broker jars: ``$DRIFTLOOP_KAFKA_LIBS``, else ``~/.cache/driftloop/kafka-<version>/libs``."""
    override = os.environ.get("DRIFTLOOP_KAFKA_LIBS")
    if override:
        return Path(override).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "driftloop" / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def libs_ready(libs: Path) -> bool:
    """True when ``libs`` holds a resolved jar set: ours (marker matches the pom) or a Kafka distribution's."""
    marker = libs / _COMPLETE_MARKER
    if marker.is_file():
        return marker.read_text().strip() == _pom_digest()
    # A folder the user pointed us at (e.g. the libs/ of a Kafka distribution).
    return "DRIFTLOOP_KAFKA_LIBS" in os.environ and any(libs.glob("kafka_2.13-*.jar"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_libs(libs: Path | None = None) -> float:
    """Resolve the broker jars with Maven unless already cached; return the seconds spent (0.0 if cached).

    Safe to call from several processes at once: one resolves, the others wait and reuse.
    """
    libs = libs or libs_dir()
    if libs_ready(libs):
        return 0.0
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaError(
            "Maven (mvn) is needed once to fetch the Kafka broker jars and was not found on PATH; "
            "install it (e.g. `apt-get install maven`) or set DRIFTLOOP_KAFKA_LIBS to the libs/ folder "
            "of a Kafka 4.x distribution"
        )
    t0 = time.monotonic()
    with _file_lock(libs.parent / ".fetch.lock"):
        if libs_ready(libs):  # another process fetched while we waited
            return time.monotonic() - t0
        tmp = libs.parent / f".{libs.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
            shutil.rmtree(tmp, ignore_errors=True)
            out = (proc.stdout + proc.stderr).strip()[-3000:]
            raise KafkaError(
                f"Maven could not resolve the Kafka {KAFKA_VERSION} jars (exit {proc.returncode}).\n"
                f"command: {' '.join(cmd)}\n{out}\n"
                "Check that Maven Central is reachable (or ~/.m2/settings.xml names a mirror)."
            )
        (tmp / _COMPLETE_MARKER).write_text(_pom_digest() + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
    return time.monotonic() - t0


def new_cluster_id() -> str:
    """A KRaft cluster id as ``kafka-storage random-uuid`` makes it (saves starting a JVM).

    Kafka's ``Uuid.randomUuid()``: 16 random bytes, URL-safe base64 without padding, never
    starting with '-' (it would read as a command line flag) and never the all-zero id.
    """
    while True:
        raw = bytearray(secrets.token_bytes(16))
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4, as java.util.UUID.randomUUID()
        raw[8] = (raw[8] & 0x3F) | 0x80  # IETF variant
        text = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH (Kafka 4.x needs Java 17 or newer)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise KafkaError(
            "no `java` found on PATH or in $JAVA_HOME; Kafka 4.x needs Java 17+ "
            "(e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    return found


# --------------------------------------------------------------------------- cluster layout


MAX_NODES = 9


@dataclasses.dataclass(frozen=True)
class NodeRole:
    """One node's place in a local cluster: its id, the static quorum and the cluster's size and id."""

    node_id: int = NODE_ID
    voters: str = ""  # "1@127.0.0.1:9093,2@..."; empty: a single node with a dynamic (standalone) quorum
    cluster_size: int = 1
    cluster_id: str = ""  # shared by every node of a cluster; empty: a new one at format time

    @property
    def replication(self) -> int:
        """Replication factor of every topic on this cluster: min(3, nodes)."""
        return min(3, self.cluster_size)

    @property
    def min_isr(self) -> int:
        """``min.insync.replicas``: 2 from three nodes on (one broker may fail without losing acks=all writes)."""
        return 2 if self.cluster_size >= 3 else 1


@dataclasses.dataclass(frozen=True)
class ClusterLayout:
    """Ports of the nodes of a local cluster (pure): node i gets ``port + 2(i-1)``, ``controller_port + 2(i-1)``."""

    ports: tuple[tuple[int, int], ...]  # (client, controller) per node, node ids 1..n

    @classmethod
    def from_settings(cls, settings: KafkaSettings) -> "ClusterLayout":
        n = int(settings.nodes)
        if not 1 <= n <= MAX_NODES:
            raise KafkaError(f"kafka.nodes must be between 1 and {MAX_NODES} (got {n}); 3 is the usual cluster")
        ports = tuple((settings.port + 2 * i, settings.controller_port + 2 * i) for i in range(n))
        flat = [p for pair in ports for p in pair]
        if len(set(flat)) != len(flat):
            raise KafkaError(
                f"with {n} nodes the client ports {[c for c, _ in ports]} and controller ports "
                f"{[c for _, c in ports]} overlap; choose --controller-port outside them (e.g. port + 1, the default)"
            )
        return cls(ports)

    @property
    def size(self) -> int:
        return len(self.ports)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{c}" for c, _ in self.ports)

    @property
    def voters(self) -> str:
        return ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(self.ports, start=1))


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class StopResult:
    """What ``stop`` did: whether anything ran, and the nodes of a cluster that were killed because the quorum
    had stopped before their controlled shutdown was approved (their logs are recovered at the next start)."""

    was_running: bool
    killed_without_quorum: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class StartResult:
    """What ``start`` did, with the time each step took (seconds)."""

    bootstrap: str
    pid: int | None
    already_running: bool = False
    external: bool = False
    formatted: bool = False
    fetch_s: float = 0.0
    format_s: float = 0.0
    broker_s: float = 0.0
    total_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class Status:
    running: bool
    bootstrap: str
    pid: int | None = None
    external: bool = False
    state_dir: Path | None = None
    topics: int | None = None  # user topics (without Kafka's internal "__" topics)
    error: str | None = None


# --------------------------------------------------------------------------- the broker


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP port can be bound on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path | str, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (read from its last 64 KiB); "" when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class LocalKafka:
    """One single-node KRaft broker whose state lives in ``state_dir``.

    ``settings.port`` is the client port (PLAINTEXT, or SASL_SSL with SCRAM users when
    ``kafka.security_protocol`` says so: :mod:`infra.kafka.security`), ``settings.controller_port`` the KRaft
    controller port, both on 127.0.0.1.  :attr:`connection` is how clients reach it.  With ``settings.external`` nothing is started or
    stopped; :meth:`start` only waits for the configured cluster to answer.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        state_dir: Path | str | None = None,
        libs: Path | None = None,
        jvm_opts: Sequence[str] | None = None,
        role: NodeRole | None = None,
    ):
        self.settings = settings
        self.role = role or NodeRole()
        # Extra JVM flags for the broker: the argument, else $DRIFTLOOP_KAFKA_JVM_OPTS (even empty), else the default.
        env_opts = os.environ.get("DRIFTLOOP_KAFKA_JVM_OPTS")
        if jvm_opts is not None:
            self.jvm_opts = list(jvm_opts)
        elif env_opts is not None:
            self.jvm_opts = shlex.split(env_opts)
        else:
            self.jvm_opts = list(DEFAULT_BROKER_JVM_OPTS)
        if state_dir is None:
            from streams.config import home

            state_dir = Path(settings.state_dir) if settings.state_dir else home() / "kafka"
        self.state_dir = Path(state_dir).resolve()
        self.libs = libs or libs_dir()
        self._proc: subprocess.Popen[bytes] | None = None

    # paths ----------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def properties_file(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "kafka.pid"

    @property
    def meta_file(self) -> Path:
        return self.state_dir / "driftloop-kafka.json"

    @property
    def console_log(self) -> Path:
        return self.logs_dir / "console.log"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def bootstrap(self) -> str:
        if self.settings.external:
            return self.settings.bootstrap_servers
        return f"127.0.0.1:{self.settings.port}"

    # security (infra/kafka/security.py) ---------------------------------------
    @functools.cached_property
    def security(self):
        """SASL_SSL of the client listener (``infra.kafka.security.BrokerSecurity``), None for PLAINTEXT."""
        from infra.kafka.security import BrokerSecurity

        return None if self.external else BrokerSecurity.for_broker(self.settings, self.state_dir)

    @property
    def connection(self):
        """How driftloop's clients reach this broker (``streams.adapters.kafka_clients.KafkaConnection``)."""
        from streams.adapters.kafka_clients import from_settings

        conn = self.security.client if self.security is not None else from_settings(self.settings)
        return dataclasses.replace(conn, bootstrap=self.bootstrap)

    # configuration ----------------------------------------------------------
    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties`` (broker + controller; RF min(3, nodes), min ISR 2 from 3 nodes)."""
        port, cport = self.settings.port, self.settings.controller_port
        role = self.role
        rf, isr = str(role.replication), str(role.min_isr)
        quorum = ({"controller.quorum.voters": role.voters} if role.voters
                  else {"controller.quorum.bootstrap.servers": f"127.0.0.1:{cport}"})
        return {
            "process.roles": "broker,controller",
            "node.id": str(role.node_id),
            **quorum,
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            # Internal topics: as the user topics (one broker: RF 1, min ISR 1; Faust exactly-once needs this).
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            # Fewer internal partitions than the production default of 50: faster first group join.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.num.partitions": "10",
            # A consumer group starts consuming at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            # Small machine: fewer threads than the defaults.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.hours": "168",
            **(self.security.properties(port, cport) if self.security is not None else {}),
        }

    def _write_properties(self) -> None:
        lines = [f"# generated by driftloop (infra/kafka/launcher.py) for Kafka {KAFKA_VERSION}; edits are overwritten"]
        lines += [f"{k}={v}" for k, v in self.properties().items()]
        from streams.adapters.kafka_clients import write_secret_file

        write_secret_file(self.properties_file, "\n".join(lines) + "\n")  # 0600: it may hold the broker's passwords

    def _java_cmd(self, main: str, *args: str, tool: bool = False) -> list[str]:
        if tool:  # short-lived command line tool: C1 only and the serial GC start ~1.5x faster
            jvm = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        else:  # the broker, with the GC settings of Kafka's own start scripts
            jvm = [f"-Xmx{self.settings.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                   "-XX:+ExitOnOutOfMemoryError", *self.jvm_opts]
        return [
            java_executable(),
            *jvm,
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={LOG_CONFIG}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    # process bookkeeping ----------------------------------------------------
    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _owns(self, pid: int) -> tuple[bool, str]:
        """Whether ``pid`` is a live (non-zombie) kafka.Kafka process started on our properties file."""
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return False, f"pid {pid} has exited (code {self._proc.returncode})"
        proc_dir = Path(f"/proc/{pid}")
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")
            stat = (proc_dir / "stat").read_text()
        except OSError:
            return False, f"no process with pid {pid}"
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False, f"pid {pid} is a zombie (exited, not yet reaped)"
        args = [a.decode("utf-8", "replace") for a in cmdline]
        if "kafka.Kafka" not in args or str(self.properties_file) not in args:
            return False, f"pid {pid} is not this broker: {' '.join(args)[:120]!r}"
        return True, ""

    def running_pid(self) -> int | None:
        """The broker's pid when it runs, else None (a stale pid file is left for start/stop to clear)."""
        pid = self._read_pid()
        if pid is None:
            return None
        ok, _ = self._owns(pid)
        return pid if ok else None

    def is_running(self) -> bool:
        return self.external or self.running_pid() is not None

    @property
    def external(self) -> bool:
        return bool(self.settings.external)

    def _clear_stale_pid(self) -> str | None:
        pid = self._read_pid()
        if pid is None and not self.pid_file.exists():
            return None
        ok, why = self._owns(pid) if pid is not None else (False, "unreadable pid file")
        if ok:
            return None
        self.pid_file.unlink(missing_ok=True)
        return f"removed stale pid file {self.pid_file} ({why})"

    # storage ----------------------------------------------------------------
    def _meta(self) -> dict:
        try:
            return json.loads(self.meta_file.read_text())
        except (OSError, ValueError):
            return {}

    def is_formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def _format_if_needed(self) -> bool:
        """Format KRaft storage once (``StorageTool random-uuid`` + ``format --standalone``; a cluster's
        nodes share one cluster id and the static voters of their properties)."""
        if self.is_formatted():
            formatted_port = self._meta().get("controller_port")
            if formatted_port is not None and formatted_port != self.settings.controller_port:
                raise KafkaError(
                    f"the broker storage in {self.state_dir} was formatted for controller port {formatted_port}, "
                    f"not {self.settings.controller_port}: use --controller-port {formatted_port}, "
                    f"or delete {self.state_dir} to start afresh (its topics are lost)"
                )
            missing = sorted(set(self.security.users()) - set(self._meta().get("scram_users", []))) if self.security else []
            if missing:
                raise KafkaError(
                    f"the broker storage in {self.state_dir} was formatted without the SCRAM user(s) {missing} that "
                    f"kafka.security_protocol SASL_SSL needs: delete {self.state_dir} to start afresh (its topics are "
                    "lost), or use another kafka.state_dir"
                )
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        uuid = self.role.cluster_id or new_cluster_id()
        standalone = () if self.role.voters else ("--standalone",)
        scram = self.security.format_args() if self.security is not None else []
        self._run_tool("format", "-t", uuid, "-c", str(self.properties_file), *standalone, *scram)
        self.meta_file.write_text(
            json.dumps(
                {"cluster_id": uuid, "kafka_version": KAFKA_VERSION, "controller_port": self.settings.controller_port,
                 "formatted_at": time.time(), "scram_users": self.security.users() if self.security else []},
                indent=2,
            )
        )
        return True

    def _run_tool(self, *args: str) -> str:
        cmd = self._java_cmd("kafka.tools.StorageTool", *args, tool=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.state_dir)
        if proc.returncode != 0:
            text = f"kafka-storage {' '.join(args)} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr).strip()[-3000:]}"
            raise KafkaError(self.security.redact(text) if self.security is not None else text)
        return proc.stdout

    # lifecycle --------------------------------------------------------------
    def start(self) -> str:
        """Start the broker (or check the external cluster); return its bootstrap address."""
        return self.start_detailed().bootstrap

    def start_detailed(self, note: IO[str] | None = None) -> StartResult:
        """Like :meth:`start`, returning what was done and how long each step took."""
        from streams.adapters.kafka_admin import BrokerUnavailable, wait_for_broker

        t0 = time.monotonic()
        timeout = float(self.settings.start_timeout_s)
        if self.external:
            try:  # a cluster of yours is not starting here: it answers within seconds or it is not there
                wait_for_broker(self.connection, min(timeout, EXTERNAL_CHECK_S))
            except BrokerUnavailable as exc:
                raise KafkaError(
                    f"the configured external Kafka cluster at {self.bootstrap} does not answer: {exc}. "
                    "Unset KAFKA_BOOTSTRAP_SERVERS / kafka.bootstrap_servers to let driftloop start its own broker."
                ) from exc
            return StartResult(self.bootstrap, None, external=True, total_s=time.monotonic() - t0)

        self.state_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.state_dir / ".lock"):
            pid = self.running_pid()
            if pid is not None:
                try:
                    wait_for_broker(self.connection, timeout)
                except BrokerUnavailable as exc:
                    raise KafkaError(
                        f"the broker (pid {pid}) runs but does not answer at {self.bootstrap}: {exc}\n"
                        f"log tail ({self.server_log}):\n{tail(self.server_log)}\n"
                        "Stop it with `driftloop kafka stop` and start again."
                    ) from exc
                return StartResult(self.bootstrap, pid, already_running=True, total_s=time.monotonic() - t0)
            stale = self._clear_stale_pid()
            if stale and note:
                print(stale, file=note)
            for what, port in (("client", self.settings.port), ("controller", self.settings.controller_port)):
                if not port_free(port):
                    raise KafkaError(
                        f"the {what} port 127.0.0.1:{port} is in use by another process; "
                        f"choose another with --{'port' if what == 'client' else 'controller-port'} "
                        f"(or kafka.{'port' if what == 'client' else 'controller_port'} in the config), "
                        "or point KAFKA_BOOTSTRAP_SERVERS at a running cluster"
                    )

            fetch_s = ensure_libs(self.libs)
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self._write_properties()
            t_format = time.monotonic()
            formatted = self._format_if_needed()
            format_s = time.monotonic() - t_format if formatted else 0.0

            t_broker = time.monotonic()
            cmd = self._java_cmd("kafka.Kafka", str(self.properties_file))
            with open(self.console_log, "ab") as out:
                out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
                out.flush()
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.state_dir, start_new_session=True, close_fds=True,
                )
            self.pid_file.write_text(f"{self._proc.pid}\n")
            proc = self._proc

            def died() -> str | None:
                code = proc.poll()
                return None if code is None else f"the broker process (pid {proc.pid}) exited with code {code}"

            try:
                wait_for_broker(self.connection, timeout, abort=died)
            except BrokerUnavailable as exc:
                exited = proc.poll() is not None
                self._terminate(proc.pid, timeout_s=15.0)
                self.pid_file.unlink(missing_ok=True)
                hint = ("The broker exited: the logs above say why." if exited
                        else "Raise kafka.start_timeout_s (or --timeout) if the machine is slow.")
                raise KafkaError(
                    f"the local Kafka broker did not come up at {self.bootstrap}: {exc}\n"
                    f"--- {self.console_log} (tail)\n{tail(self.console_log, 20)}\n"
                    f"--- {self.server_log} (tail)\n{tail(self.server_log)}\n"
                    f"{hint} State folder: {self.state_dir}"
                ) from exc
            broker_s = time.monotonic() - t_broker
        return StartResult(
            self.bootstrap, proc.pid, formatted=formatted, fetch_s=fetch_s, format_s=format_s,
            broker_s=broker_s, total_s=time.monotonic() - t0,
        )

    def _wait_gone(self, pid: int, timeout_s: float, give_up: Callable[[], bool] = lambda: False) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not give_up():
            if self._proc is not None and self._proc.pid == pid:
                try:
                    self._proc.wait(timeout=0.1)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not self._owns(pid)[0]:
                return True
            time.sleep(0.1)
        return False

    def _terminate(self, pid: int, timeout_s: float, quorum_gone: Callable[[], bool] | None) -> str:
        """SIGTERM (Kafka's controlled shutdown), SIGKILL after ``timeout_s``, or ``QUORUM_GRACE_S`` after
        ``quorum_gone()`` turns true (a controlled shutdown no controller is left to approve never ends).
        Returns ``"clean"``, ``"killed"`` (timed out) or ``"orphaned"`` (killed after the quorum stopped)."""
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return "clean"
        gone = quorum_gone or (lambda: False)
        if self._wait_gone(pid, timeout_s, gone):
            return "clean"
        orphaned = gone()
        if orphaned and self._wait_gone(pid, QUORUM_GRACE_S):
            return "clean"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid, 10.0)
        return "orphaned" if orphaned else "killed"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker with a clean shutdown; return True if one was running.

        Never touches an external cluster; a local broker left running in the state folder is
        stopped even when the configuration now names an external cluster (for instance
        ``KAFKA_BOOTSTRAP_SERVERS`` pointing at this very broker).  Raises KafkaError when the broker
        did not stop within ``timeout_s`` (it was killed).
        """
        return self._stop(timeout_s, None) != "none"

    def _stop(self, timeout_s: float, quorum_gone: Callable[[], bool] | None) -> str:
        """``"none"`` (nothing ran), ``"clean"`` or ``"orphaned"`` (:meth:`_terminate`); raises when killed."""
        if not self.state_dir.is_dir():
            return "none"
        with _file_lock(self.state_dir / ".lock"):
            pid = self.running_pid()
            if pid is None:
                self._clear_stale_pid()
                return "none"
            outcome = self._terminate(pid, timeout_s, quorum_gone)
            self.pid_file.unlink(missing_ok=True)
            self._proc = None
        if outcome == "killed":
            raise KafkaError(
                f"the broker (pid {pid}) did not shut down within {timeout_s:.0f} s and was killed; "
                f"see {self.server_log}"
            )
        return outcome

    def status(self) -> Status:
        """Whether the broker runs (or the external cluster answers), its pid and its user topic count."""
        from streams.adapters.kafka_admin import list_user_topics

        pid = None if self.external else self.running_pid()
        if not self.external and pid is None:
            return Status(False, self.bootstrap, state_dir=self.state_dir)
        try:
            topics = len(list_user_topics(self.connection, timeout_s=5.0))
            error = None
        except Exception as exc:  # the process exists but does not answer (yet)
            topics, error = None, f"does not answer a metadata request: {exc!r}"
        return Status(
            error is None or pid is not None, self.bootstrap, pid=pid, external=self.external,
            state_dir=None if self.external else self.state_dir, topics=topics, error=error,
        )


    def send_signal(self, sig: int) -> int:
        """Send ``sig`` to the running broker (fault tests: SIGSTOP/SIGCONT); returns its pid."""
        pid = self.running_pid()
        if pid is None:
            raise KafkaError(f"no broker runs in {self.state_dir}; start it first")
        os.kill(pid, sig)
        return pid

    def kill(self) -> int:
        """SIGKILL the broker (a crash, for fault tests) and wait until it is gone; returns its pid."""
        pid = self.send_signal(signal.SIGKILL)
        self._wait_gone(pid, 30.0)
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        return pid


class LocalKafkaCluster:
    """``settings.nodes`` local KRaft nodes (combined controller+broker) started, stopped and asked together.

    One node is exactly :class:`LocalKafka` in ``state_dir``; more nodes live in ``state_dir/node-<i>``
    with a shared cluster id recorded in ``state_dir/cluster.json``, which also lets ``stop`` and
    ``status`` find every node of a cluster without ``--nodes``.
    """

    def __init__(self, settings: KafkaSettings, state_dir: Path | str | None = None, libs: Path | None = None,
                 jvm_opts: Sequence[str] | None = None, layout: ClusterLayout | None = None):
        """``layout``: the nodes' ports when not derived from ``settings`` (tests: free ports)."""
        if layout is not None:
            settings = dataclasses.replace(settings, nodes=layout.size, port=layout.ports[0][0],
                                           controller_port=layout.ports[0][1])
        single = LocalKafka(dataclasses.replace(settings, nodes=1), state_dir, libs, jvm_opts)
        self.settings, self.state_dir = settings, single.state_dir
        recorded = self._recorded()
        nodes = int(settings.nodes)
        if recorded and nodes == 1 and not settings.external:  # stop/status of a cluster started with --nodes N
            nodes = int(recorded["nodes"])
        if recorded and nodes != int(recorded["nodes"]):
            raise KafkaError(
                f"the Kafka state in {self.state_dir} belongs to a {recorded['nodes']}-node cluster, not {nodes}: "
                f"use --nodes {recorded['nodes']}, or delete {self.state_dir} to start afresh (its topics are lost)"
            )
        if nodes > 1 and not settings.external and settings.security_protocol.upper() != "PLAINTEXT":
            raise KafkaError(
                f"a local cluster of {nodes} nodes runs PLAINTEXT only (kafka.security_protocol is "
                f"{settings.security_protocol}): use kafka.nodes 1 for the SASL_SSL broker, or a cluster of yours"
            )
        if nodes == 1 or settings.external:
            self.nodes = [single]
            self.layout = ClusterLayout(((settings.port, settings.controller_port),))
            return
        self.layout = layout or ClusterLayout.from_settings(dataclasses.replace(settings, nodes=nodes))
        cluster_id = recorded["cluster_id"] if recorded else ""
        self.nodes = [
            LocalKafka(dataclasses.replace(settings, port=port, controller_port=cport, nodes=1),
                       self.state_dir / f"node-{i}", libs, jvm_opts,
                       role=NodeRole(i, self.layout.voters, self.layout.size, cluster_id))
            for i, (port, cport) in enumerate(self.layout.ports, start=1)
        ]

    @property
    def cluster_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def _recorded(self) -> dict | None:
        try:
            return json.loads(self.cluster_file.read_text())
        except (OSError, ValueError):
            return None

    @property
    def external(self) -> bool:
        return bool(self.settings.external)

    @property
    def bootstrap(self) -> str:
        return self.nodes[0].bootstrap if len(self.nodes) == 1 else self.layout.bootstrap

    @property
    def server_log(self) -> Path:
        return self.nodes[0].server_log

    @property
    def security(self):
        """The single node's SASL_SSL (``infra.kafka.security.BrokerSecurity``); None for a cluster (PLAINTEXT)."""
        return self.nodes[0].security if len(self.nodes) == 1 else None

    @property
    def connection(self):
        """How driftloop's clients reach the cluster (every node's address)."""
        return dataclasses.replace(self.nodes[0].connection, bootstrap=self.bootstrap)

    def start(self) -> str:
        return self.start_detailed().bootstrap

    def start_detailed(self, note: IO[str] | None = None) -> StartResult:
        """Start every node at once (a static quorum answers only once a majority runs); all or none."""
        if len(self.nodes) == 1:
            return self.nodes[0].start_detailed(note)
        t0 = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.cluster_file.exists():
            cluster_id = new_cluster_id()
            self.cluster_file.write_text(json.dumps({"cluster_id": cluster_id, "nodes": len(self.nodes),
                                                     "ports": [list(p) for p in self.layout.ports]}, indent=2))
            for node in self.nodes:
                node.role = dataclasses.replace(node.role, cluster_id=cluster_id)
        from streams.adapters.kafka_admin import _quiet_kafka_logs

        ensure_libs(self.nodes[0].libs)  # once, before the nodes race for it
        # one quiet span for all nodes (each node's probe restoring the log level would let the others' noise out)
        with _quiet_kafka_logs(), ThreadPoolExecutor(len(self.nodes)) as pool:
            futures = [pool.submit(n.start_detailed, note) for n in self.nodes]
            outcomes: list[StartResult | BaseException] = []
            for f in futures:
                try:
                    outcomes.append(f.result())
                except BaseException as exc:  # noqa: BLE001 - reported below, after the others are stopped
                    outcomes.append(exc)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            for node in self.nodes:
                with contextlib.suppress(Exception):
                    node.stop(timeout_s=15.0)
            raise KafkaError(f"{len(failed)} of {len(self.nodes)} nodes did not start: {failed[0]}")
        results = [o for o in outcomes if isinstance(o, StartResult)]
        return StartResult(
            self.bootstrap, results[0].pid, already_running=all(r.already_running for r in results),
            formatted=any(r.formatted for r in results), fetch_s=max(r.fetch_s for r in results),
            format_s=max(r.format_s for r in results), broker_s=max(r.broker_s for r in results),
            total_s=time.monotonic() - t0,
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop every node; True if any ran.  See :meth:`stop_detailed`."""
        return self.stop_detailed(timeout_s).was_running

    def stop_detailed(self, timeout_s: float = STOP_TIMEOUT_S) -> StopResult:
        """Stop every node at once (a node alone cannot finish a controlled shutdown without a quorum).

        A node's controlled shutdown needs a controller to approve it; once the nodes still running are no majority
        of the voters, none is left, so such a node is killed after ``QUORUM_GRACE_S`` (its logs are recovered at the
        next start) and reported in ``killed_without_quorum``, not as an error.  Raises KafkaError when a node
        did not stop within ``timeout_s`` while the quorum stood.
        """
        if len(self.nodes) == 1:
            return StopResult(self.nodes[0].stop(timeout_s))
        lost = len(self.nodes) - len(self.nodes) // 2  # exited voters at which the rest are no majority
        exited: list[int] = []  # node indexes, appended by the pool's threads (list.append is atomic)

        def stop_node(i: int, node: LocalKafka) -> str:
            try:
                return node._stop(timeout_s, quorum_gone=lambda: len(exited) >= lost)
            finally:
                exited.append(i)

        with ThreadPoolExecutor(len(self.nodes)) as pool:
            futures = [pool.submit(stop_node, i, n) for i, n in enumerate(self.nodes)]
        errors, outcomes = [], []
        for f in futures:
            try:
                outcomes.append(f.result())
            except KafkaError as exc:
                errors.append(str(exc))
                outcomes.append("killed")
        if errors:
            raise KafkaError("; ".join(errors))
        return StopResult(any(o != "none" for o in outcomes),
                          tuple(i + 1 for i, o in enumerate(outcomes) if o == "orphaned"))

    def status(self) -> list[Status]:
        """One :class:`Status` per node."""
        return [n.status() for n in self.nodes]


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", choices=["start", "stop", "status", "fetch"],
        help="start: fetch jars if needed, format storage once, start the broker and wait until it answers; "
        "stop: clean shutdown; status: running or not, pid, address, topic count (exit 3 when not running); "
        "fetch: only resolve the broker jars with Maven",
    )
    parser.add_argument("--port", type=int, help="client port on 127.0.0.1 (default: kafka.port, 9092)")
    parser.add_argument("--controller-port", type=int,
                        help="KRaft controller port (default: kafka.controller_port, 9093)")
    parser.add_argument("--state-dir",
                        help="data, logs and pid folder (default: kafka.state_dir or $DRIFTLOOP_HOME/kafka)")
    parser.add_argument("--timeout", type=float,
                        help="seconds to wait for the broker to answer (default: kafka.start_timeout_s)")
    parser.add_argument("--nodes", type=int,
                        help="local cluster size: 3 starts three controller+broker nodes on port, port+2, port+4 "
                        "(default: kafka.nodes, 1; stop and status find a cluster's nodes by themselves)")


def settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    from streams.config import kafka_settings, load_file

    settings = kafka_settings(load_file(getattr(args, "config", None)))
    changes: dict[str, object] = {}
    if getattr(args, "port", None):
        changes["port"] = args.port
    if getattr(args, "controller_port", None):
        changes["controller_port"] = args.controller_port
    if getattr(args, "state_dir", None):
        changes["state_dir"] = args.state_dir
    if getattr(args, "timeout", None):
        changes["start_timeout_s"] = args.timeout
    if getattr(args, "nodes", None):
        changes["nodes"] = args.nodes
    return dataclasses.replace(settings, **changes)


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's per-connection INFO lines
    settings = settings_from_args(args)
    try:
        kafka = LocalKafkaCluster(settings)
        if args.action == "fetch":
            libs = libs_dir()
            took = ensure_libs(libs)
            jars = len(list(libs.glob("*.jar")))
            how = f"resolved in {took:.1f} s" if took else "already cached"
            print(f"Kafka {KAFKA_VERSION} jars: {jars} in {libs} ({how})")
            return 0
        if args.action == "start":
            r = kafka.start_detailed(note=sys.stdout)
            if r.external:
                print(f"Using the external Kafka cluster at {r.bootstrap}: it answers; no local broker started.")
            elif r.already_running:
                print(f"Kafka is already running at {r.bootstrap} (pid {r.pid}); state in {kafka.state_dir}")
            else:
                if r.fetch_s:
                    kind = "cold start: jars fetched, storage formatted" if r.formatted else "jars fetched"
                else:
                    kind = "first start in this state folder: storage formatted" if r.formatted else "warm start"
                print(
                    f"Kafka {KAFKA_VERSION} started at {r.bootstrap} (pid {r.pid}) in {r.total_s:.1f} s, {kind} "
                    f"[jar fetch {r.fetch_s:.1f} s, storage format {r.format_s:.1f} s, broker up {r.broker_s:.1f} s]\n"
                    f"state: {kafka.state_dir}  log: {kafka.server_log}\nstop it with: driftloop kafka stop"
                )
            if kafka.security is not None:
                print(kafka.security.describe())
            return 0
        if args.action == "stop":
            t0 = time.monotonic()
            stopped = kafka.stop_detailed()
            if stopped.was_running:
                took = time.monotonic() - t0
                if stopped.killed_without_quorum:
                    nodes = ", ".join(map(str, stopped.killed_without_quorum))
                    print(f"Kafka stopped in {took:.1f} s; node {nodes} killed: the other nodes (the quorum) stopped "
                          "before its controlled shutdown was approved (its logs are recovered at the next start); "
                          f"data kept in {kafka.state_dir}")
                else:
                    print(f"Kafka stopped (clean shutdown in {took:.1f} s); data kept in {kafka.state_dir}")
            elif kafka.external:
                print(f"An external Kafka cluster is configured ({kafka.bootstrap}); nothing to stop.")
            else:
                print(f"Kafka is not running (state: {kafka.state_dir})")
            return 0
        statuses = kafka.status()
        if len(statuses) > 1:
            return _print_cluster_status(statuses)
        st = statuses[0]
        if st.external:
            state = "answers" if st.error is None else f"does NOT answer ({st.error})"
            print(f"external cluster {st.bootstrap}: {state}; topics: {st.topics if st.topics is not None else '?'}")
            return 0 if st.error is None else 3
        if not st.running:
            print(f"Kafka: not running (bootstrap {st.bootstrap}, state {st.state_dir})")
            return 3
        topics = st.topics if st.topics is not None else "?"
        extra = f"; {st.error}" if st.error else ""
        print(f"Kafka: running, pid {st.pid}, bootstrap {st.bootstrap}, topics {topics}, state {st.state_dir}{extra}")
        return 0
    except KafkaError as exc:
        print(f"driftloop kafka {args.action}: {exc}", file=sys.stderr)
        return 1


def _print_cluster_status(statuses: list[Status]) -> int:
    """One line per node; exit 0 when every node runs, 3 otherwise."""
    up = [s for s in statuses if s.running]
    for i, st in enumerate(statuses, start=1):
        if st.running:
            extra = f"; {st.error}" if st.error else ""
            print(f"Kafka node {i}: running, pid {st.pid}, {st.bootstrap}, topics "
                  f"{st.topics if st.topics is not None else '?'}, state {st.state_dir}{extra}")
        else:
            print(f"Kafka node {i}: not running ({st.bootstrap}, state {st.state_dir})")
    print(f"{len(up)} of {len(statuses)} nodes running")
    return 0 if len(up) == len(statuses) else 3
