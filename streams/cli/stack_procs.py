"""The thin process side of the local stack: detached children, pid files, signals and health probes.

Every child runs in its own session (its pid is its process group), with stdout and stderr in
a log file and its pid in a pid file; a pid is only trusted while ``/proc/<pid>/cmdline`` still
shows the command that was started (a recycled pid is never signalled).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence


def spawn(argv: Sequence[str], *, env: dict[str, str], log: Path, pid_file: Path, cwd: str | None = None
          ) -> subprocess.Popen:
    """Start ``argv`` detached (own session, stdin closed, output appended to ``log``) and write its pid file."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, start_new_session=True, close_fds=True)
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(f"{proc.pid}\n")
    tmp.replace(pid_file)
    return proc


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def owns(pid: int, markers: Sequence[str]) -> bool:
    """Whether ``pid`` is alive (not a zombie) and its command line holds every one of ``markers``."""
    _reap(pid)
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return all(m in args for m in markers)


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (an in-process caller such as the demo)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pid: int, markers: Sequence[str], timeout_s: float) -> bool:
    """SIGTERM ``pid``, then SIGKILL its process group after ``timeout_s``. True when it ended on SIGTERM."""
    if not owns(pid, markers):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not owns(pid, markers):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:  # the session spawn() created: only this child and its own children
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and owns(pid, markers):
        time.sleep(0.1)
    return False


def http_ok(url: str, timeout_s: float = 2.0) -> tuple[bool, str]:
    """(answered with 2xx, what went wrong otherwise)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return 200 <= r.status < 300, "" if 200 <= r.status < 300 else f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, str(getattr(reason, "strerror", None) or reason)


def tcp_ok(address: str, timeout_s: float = 2.0) -> tuple[bool, str]:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True, ""
    except (OSError, ValueError) as exc:
        return False, str(getattr(exc, "strerror", None) or exc)


def broker_ok(bootstrap: Any, timeout_s: float = 3.0) -> tuple[bool, str]:
    from streams.adapters.kafka_admin import BrokerUnavailable, wait_for_broker

    try:
        wait_for_broker(bootstrap, timeout_s)
        return True, ""
    except BrokerUnavailable:
        return False, f"no answer within {timeout_s:.0f} s"


from infra.kafka.launcher import port_free, tail  # noqa: E402,F401  (one implementation each, used by stack.py)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


