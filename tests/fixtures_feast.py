"""Fixtures for the real Feast repository.

``feast_repo`` (session): a copy of ``feature_repo/`` in a temporary folder, with its
sources generated (seeded, small), applied and materialised into the SQLite online
store from scratch.  ``redis_server`` (session): a real ``redis-server`` on a free port,
started and stopped here; the test skips with a clear message when the binary is absent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("FEAST_USAGE", "False")

# Small enough to keep apply + materialise fast, big enough for min-sample gating.
N_CUSTOMERS = 300
N_MERCHANTS = 60
DAYS = 10
N_TRANSACTIONS = 3_000


@dataclass
class FeastRepo:
    path: Path
    end: datetime  # newest snapshot time
    materialized_to: datetime
    store: Any  # feast.FeatureStore (SQLite online store)

    def values(self) -> dict[str, dict[str, dict[str, Any]]]:
        from feature_repo.data_gen import latest_values

        return latest_values(self.path, self.materialized_to)


def copy_repo(dst: Path) -> Path:
    """Copy the repository definitions (not data/) to ``dst``."""
    from feature_repo import REPO_PATH

    shutil.copytree(REPO_PATH, dst, ignore=shutil.ignore_patterns("data", "__pycache__", "*.db"))
    return dst


def build_repo(path: Path, *, seed: int = 7, online: str = "sqlite", redis_connection: str | None = None) -> FeastRepo:
    from feature_repo import data_gen
    from feature_repo import store as st

    g = data_gen.generate(path, seed=seed, days=DAYS, n_customers=N_CUSTOMERS, n_merchants=N_MERCHANTS,
                          n_transactions=N_TRANSACTIONS)
    fs = st.open_store(path, online, redis_connection)
    st.apply(fs)
    done = st.materialize(fs, datetime.now(timezone.utc) + timedelta(seconds=1))
    return FeastRepo(path, g.end, done, fs)


@pytest.fixture(scope="session")
def feast_repo(tmp_path_factory: pytest.TempPathFactory) -> FeastRepo:
    path = copy_repo(tmp_path_factory.mktemp("feast") / "repo")
    return build_repo(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """``HOST:PORT`` of a redis-server started for this session (no persistence)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `make setup` (infra/bootstrap.sh) installs it "
                    "(Debian: apt-get install -y redis-server). The Redis online-store test needs a real server")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited with code {proc.returncode} before answering on port {port}")
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer PING on port {port} within 20 s")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
