"""Start or connect to a local Ray cluster, with token authentication on.

The local cluster is a ``ray start --head --block`` child process in its own session,
with every port chosen free on 127.0.0.1 and every Ray process listening on loopback only
(:data:`LOOPBACK_ENV`), its own temp dir (so it never collides with
another Ray on the machine) and ``RAY_AUTH_MODE=token`` with a token file under
driftloop's home.  It outlives the dispatcher that started it, so a restarted
dispatcher finds its running jobs again; :func:`stop_local_cluster` ends it by pid.

GPU use is never configured by hand: :func:`cluster_gpus` reads ``ray.cluster_resources()``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

AUTH_MODE_ENV = "RAY_AUTH_MODE"
#: A single-machine cluster on loopback only.  ``ray start --node-ip-address 127.0.0.1`` alone is not enough: Ray
#: swaps a loopback node address for the machine's own ("remotely reachable") one, and its GCS, raylet and agents
#: then listen on every interface.  Ray's single-machine mode (as on macOS/Windows) keeps every one on 127.0.0.1.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


@dataclass
class LocalCluster:
    """A local Ray head started by :func:`start_local_cluster`."""

    pid: int
    gcs_address: str
    dashboard_url: str
    temp_dir: str
    token_path: str | None
    started_at: float
    log_file: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def alive(self) -> bool:
        return _pid_alive(self.pid)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the head (and everything it started) and remove its temp dir (kept with DRIFTLOOP_KEEP_RAY_LOGS=1)."""
        stop_pid(self.pid, timeout_s)
        if Path(self.temp_dir).name.startswith("dlray-") and not os.environ.get("DRIFTLOOP_KEEP_RAY_LOGS"):
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ensure_token(path: str | os.PathLike) -> Path:
    """Create a random 256-bit token file (mode 0600) at ``path`` unless one exists."""
    p = Path(path)
    if p.is_file() and p.read_text().strip():
        return p
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return p


def auth_env(token_path: str | os.PathLike | None) -> dict[str, str]:
    """Environment that turns Ray token auth on with the given token file (or off for ``None``)."""
    if token_path is None:
        return {AUTH_MODE_ENV: "disabled"}
    return {AUTH_MODE_ENV: "token", AUTH_TOKEN_PATH_ENV: str(Path(token_path).resolve())}


def use_auth(token_path: str | os.PathLike | None) -> None:
    """Make this process (and its children) authenticate to the cluster with ``token_path``.

    Must run before the first Ray client call of the process: Ray caches the token.
    """
    os.environ.update(auth_env(token_path))
    if token_path is None:
        os.environ.pop(AUTH_TOKEN_PATH_ENV, None)


def start_local_cluster(
    state_dir: str | os.PathLike,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_mb: int = 200,
    dashboard_port: int = 0,
    token_auth: bool = True,
    timeout_s: float = 120.0,
    python: str | None = None,
    attempts: int = 3,
) -> LocalCluster:
    """Start ``ray start --head --block`` with the dashboard (Jobs API) on 127.0.0.1.

    Ports are picked free; the temp dir is short (Unix socket paths are limited to 107
    bytes) and private to this cluster.  Returns once the node is up and the Jobs API
    answers.  On a loaded machine the raylet can miss Ray's fixed 30 s registration
    deadline; the start is then retried (``attempts`` in all).
    """
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(state_dir, num_cpus=num_cpus, num_gpus=num_gpus, object_store_mb=object_store_mb,
                               dashboard_port=dashboard_port, token_auth=token_auth, timeout_s=timeout_s,
                               python=python)
        except _StartFailed as exc:
            if attempt == attempts:
                raise RuntimeError(str(exc)) from None
            log.warning("%s; retrying (%d/%d)", exc, attempt + 1, attempts)
    raise AssertionError("unreachable")


class _StartFailed(RuntimeError):
    pass


def _start_once(state_dir, *, num_cpus, num_gpus, object_store_mb, dashboard_port, token_auth, timeout_s,
                python) -> LocalCluster:
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    token_path = ensure_token(state / "auth_token") if token_auth else None
    temp_dir = Path("/tmp") / f"dlray-{os.getuid()}-{secrets.token_hex(3)}"
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard_port or free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
    }
    # the ray CLI through this interpreter: works without a `ray` script on PATH (pip --target installs)
    cmd = [python or sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--disable-usage-stats",
           "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
           "--include-dashboard", "true", "--temp-dir", str(temp_dir),
           "--object-store-memory", str(int(object_store_mb) * 1024 * 1024)]
    for k, v in ports.items():
        cmd += [k, str(v)]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    env = dict(os.environ)
    env.update(auth_env(token_path))
    if token_path is None:
        env.pop(AUTH_TOKEN_PATH_ENV, None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(LOOPBACK_ENV)
    env.pop("DRIFTLOOP_KAFKA_PASSWORD", None)  # the cluster outlives the dispatcher; jobs read a password file
    env.pop("RAY_ADDRESS", None)
    log_file = state / "ray-head.log"
    log_offset = log_file.stat().st_size if log_file.exists() else 0
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    cluster = LocalCluster(
        pid=proc.pid,
        gcs_address=f"127.0.0.1:{ports['--port']}",
        dashboard_url=f"http://127.0.0.1:{ports['--dashboard-port']}",
        temp_dir=str(temp_dir),
        token_path=str(token_path) if token_path else None,
        started_at=time.time(),
        log_file=str(log_file),
    )
    try:
        _wait_for_node(proc, log_file, log_offset, timeout_s)
        wait_for_jobs_api(cluster, timeout_s, proc)
    except BaseException as exc:
        cluster.stop()
        if isinstance(exc, (RuntimeError, TimeoutError)) and not isinstance(exc, _StartFailed):
            raise _StartFailed(str(exc)) from exc
        raise
    (state / "cluster.json").write_text(json.dumps(cluster.to_dict(), indent=2))
    log.info("local Ray cluster up: dashboard %s, gcs %s, token auth %s",
             cluster.dashboard_url, cluster.gcs_address, "on" if token_path else "off")
    return cluster


def _wait_for_node(proc: subprocess.Popen, log_file: Path, offset: int, timeout_s: float) -> None:
    """Wait for ``ray start`` to report "Ray runtime started" (or to die)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(log_file, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
        if "Ray runtime started" in text:
            return
        if proc.poll() is not None:
            tail = " | ".join(text.strip().splitlines()[-2:])
            raise _StartFailed(f"`ray start` exited with code {proc.returncode} before the node was up ({tail}); "
                               f"see {log_file}")
        time.sleep(0.3)
    raise _StartFailed(f"the local Ray node did not start within {timeout_s:.0f}s; see {log_file}")


def wait_for_jobs_api(cluster: LocalCluster, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Block until the cluster's Jobs API answers an authenticated request."""
    use_auth(cluster.token_path)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"`ray start` exited with code {proc.returncode} before the cluster was up; see {cluster.log_file}"
            )
        try:
            job_client(cluster.dashboard_url).list_jobs()
            return
        except Exception as exc:  # connection refused while the dashboard starts
            last = exc
            time.sleep(0.5)
    raise TimeoutError(
        f"the Ray Jobs API at {cluster.dashboard_url} did not answer within {timeout_s:.0f}s "
        f"(last error: {last!r}); see {cluster.log_file}"
    )


def load_recorded_cluster(state_dir: str | os.PathLike) -> LocalCluster | None:
    """The cluster recorded in ``state_dir/cluster.json`` if its head process still runs."""
    p = Path(state_dir) / "cluster.json"
    if not p.is_file():
        return None
    try:
        cluster = LocalCluster(**json.loads(p.read_text()))
    except (ValueError, TypeError):
        return None
    return cluster if cluster.alive() else None


def connect_or_start(state_dir: str | os.PathLike, **kwargs: Any) -> tuple[LocalCluster, bool]:
    """Reuse the recorded local cluster when it still answers, else start one. Returns (cluster, started)."""
    cluster = load_recorded_cluster(state_dir)
    if cluster is not None:
        try:
            wait_for_jobs_api(cluster, 10.0)
            return cluster, False
        except (TimeoutError, RuntimeError):
            log.warning("recorded Ray cluster (pid %d) does not answer; starting a new one", cluster.pid)
    return start_local_cluster(state_dir, **kwargs), True


def stop_local_cluster(state_dir: str | os.PathLike, timeout_s: float = 30.0) -> bool:
    """Stop the cluster recorded in ``state_dir`` (by its pid). Returns whether one was running."""
    p = Path(state_dir) / "cluster.json"
    cluster = load_recorded_cluster(state_dir)
    if cluster is None:
        return False
    cluster.stop(timeout_s)
    p.unlink(missing_ok=True)
    return True


def stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM the ``ray start --block`` process (it shuts its cluster down), SIGKILL its group if it lingers."""
    if not _pid_alive(pid):
        return
    with _suppress():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(pid):
        _reap(pid)
        time.sleep(0.2)
    with _suppress():
        os.killpg(pid, signal.SIGKILL)  # the session we created: ray's own children only
    _reap(pid)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.1)


def job_client(address: str):
    """A ``JobSubmissionClient`` for the dashboard at ``address`` (auth headers added by Ray)."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def cluster_gpus(resources: Mapping[str, float] | None = None) -> float:
    """GPUs in the cluster, from ``ray.cluster_resources()`` (the connected cluster) unless given."""
    if resources is None:
        import ray

        resources = ray.cluster_resources()
    return float(resources.get("GPU", 0.0))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _reap(pid: int) -> None:
    with _suppress():
        os.waitpid(pid, os.WNOHANG)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is not None and issubclass(exc_type, (ProcessLookupError, ChildProcessError, PermissionError))
